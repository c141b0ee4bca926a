"""The imager's customization loop: ``buildgraph imager`` against the same tools run bare.

Why this exists: the imager's promise is that a customization rebuilds only what reads it.
Adding a system extension to a built ISO should cost the extension's squashfs, its cpio,
the initramfs concatenation and the ISO, not the kernel, init or rootfs; and a build whose
inputs equal another front end's (doit) should be a cache hit there. This script measures
both, in one run, against a shell script doing the same work.

Set-up, not timed:

* the checkout's files (tracked and new, not ignored) are copied to ``_work/imager/clone``
  (``boot.clone_checkout``); the imager and doit run there and import that copy of
  buildgraph/, and so does this script;
* ``hello.tar`` in the clone: ``tar -C targets/extensions/hello -cf hello.tar manifest.yaml
  rootfs``, given to the imager by its absolute path and to doit as ``hello.tar``, relative,
  as typed in the clone: one file, so one key (1d6f4e3);
* a warm-up ``doit iso`` into ``_work/boot/seed``, the seed bench/boot.py keeps, fills the
  steps' own caches (the package images in the embedded OCI store, the Go build cache), so
  no download is measured;
* the variables that would come from git or the host are fixed (``boot.VARS``); amd64.

1. Warm customization, ``--repeat`` rounds, alternating which peer goes first. Before each
   round: a fresh cache, ``_work/imager/cache``, with a copy of the seed's ``steps/``
   (without the memo of extensions already checked, so the extension is new to it), no
   ``_out/``; then ``buildgraph imager iso --arch amd64``, which builds the base ISO, and
   ``sync``, so that neither peer pays for writing the set-up's files back.

   * imager: ``buildgraph imager iso --arch amd64 --system-extension-image $PWD/hello.tar``,
     timed by wall clock; it must build exactly ``extensions``, ``initramfs`` and ``iso``,
     each node's seconds from its JSON ``node`` event;
   * raw: one ``sh -eu`` script per node, run in ``_work/imager/raw``, reading the base
     assets from the clone's ``_out/``: ``tar -x`` of the extension, ``mksquashfs`` with
     the step's reproducible flags, a sorted newc ``cpio`` and ``xz --check=crc32 -6``;
     ``cat`` of initramfs-base and that; and the iso: bench/boot.py's raw iso script
     (grub-mkimage, mkfs.vfat/mmd/mcopy, xorriso; ``common.iso_script``).

   After the rounds, untimed: the two extension cpios must hold the same entries (GNU cpio
   numbers inodes otherwise), both initramfs must start with the same initramfs-base, and
   the raw iso script run on the imager's initramfs must make the imager's iso, byte for
   byte (so the raw peer does the same work, not less).

2. Cache hits across front ends, ``--repeat`` rounds after (1), each: the imager command of
   (1) again; ``doit iso PLATFORM=linux/amd64 SYSTEM_EXTENSIONS=hello.tar`` (the same
   variables through doit, the tarball spelled otherwise, after the imager); the same doit
   again (a plain no-op: doit after doit). Each must report every node of its goal
   ``cached``, or the script fails, with ``buildgraph explain``'s account.

3. META change (``--meta-rounds``, default ``--repeat``; 0 skips it): before each round
   ``buildgraph imager metal --meta 0xa=0`` and ``sync`` (untimed), then ``--meta
   0xa=<n>``, a new n each round, with ``ZSTD_LEVEL=3`` in the environment (the default 18
   would make this a zstd benchmark); it must build exactly ``disk-metal`` and
   ``image-metal``. Against bench/disk.py's raw disk-metal and image-metal scripts
   (``common.disk_image_scripts``), whose ``dd`` places the META partition's bytes (made
   untimed for ``0xa=<n>`` by ``common.meta_file``, as the step writes them), on the same
   inputs.

Usage::

    python bench/imager.py [--repeat 3] [--meta-rounds N] [--write]

``--write`` puts the results in BENCHMARKS.md, between the ``imager`` markers.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import yaml
from boot import SEED, VARS, DoitRun, clone_checkout, cpio_entries, doit, doit_env, run_raw
from common import (
    WORK,
    ColdRounds,
    disk_image_scripts,
    doit_path,
    exclusive,
    host,
    iso_script,
    meta_file,
    revision,
    say,
    sh,
    write_section,
)

IMAGER = WORK / "imager"
CLONE = IMAGER / "clone"
CACHE = IMAGER / "cache"
RAW_OUT = IMAGER / "raw"
MARKERS = ("<!-- imager:begin -->", "<!-- imager:end -->")
ARCH = "amd64"
PLATFORM = f"linux/{ARCH}"
EXTENSION = "targets/extensions/hello"
TARBALL = CLONE / "hello.tar"
SHOWN = "$PWD/hello.tar"
"""How the report spells TARBALL, the imager's path."""
CUSTOMIZE = ("--system-extension-image", str(TARBALL))
CUSTOMIZED = ("extensions", "initramfs", "iso")
"""What adding the extension rebuilds, in the order the raw peer runs them."""
META_NODES = ("disk-metal", "image-metal")
META_ENV = {"ZSTD_LEVEL": "3"}


def out(name: str) -> Path:
    return CLONE / "_out" / name


def imager(profile: str, *flags: str, env: dict[str, str] | None = None) -> DoitRun:
    """``buildgraph imager <profile> --arch amd64 <flags>`` in the clone, timed by wall
    clock; its nodes from the JSON log."""
    argv = [str(Path(sys.executable).with_name("buildgraph")), "imager", profile,
            "--arch", ARCH, *flags]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(
        argv, cwd=CLONE, env={**doit_env(CACHE, CLONE), **(env or {})},
        capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(argv[1:])} failed:\n{done.stdout}{done.stderr[-3000:]}")
    events = (json.loads(line) for line in done.stderr.splitlines() if line.startswith("{"))
    nodes = {e["node"]: (e["status"], e["seconds"]) for e in events if e.get("event") == "node"}
    return DoitRun(wall, nodes)


def labels(*targets: str) -> set[str]:
    return {f"{target}:{ARCH}" for target in targets}


def fresh_cache() -> None:
    """An empty cache but for a copy of the seed's ``steps/``, without the memo of the
    extensions already checked; no ``_out/``, no raw outputs."""
    shutil.rmtree(CACHE, ignore_errors=True)
    skip = shutil.ignore_patterns("sysext-checked-*")
    shutil.copytree(SEED / "steps", CACHE / "steps", symlinks=True, ignore=skip)
    for directory in (CLONE / "_out", RAW_OUT):
        shutil.rmtree(directory, ignore_errors=True)
    RAW_OUT.mkdir(parents=True)


def base() -> None:
    """Untimed: the base ISO, built by the imager into the fresh cache."""
    run = imager("iso")
    if not labels("iso") <= run.built() or run.built() & labels("extensions"):
        raise SystemExit(f"the base imager build built {sorted(run.built())}")


# -- the raw peer --------------------------------------------------------------------


class Raw:
    """Per node, the tools its step runs, as an ``sh`` script run in ``RAW_OUT``, which
    reads the base assets from the clone's ``_out/``; ``W`` is its scratch."""

    def __init__(self) -> None:
        from buildgraph.engine.session import Session
        from buildgraph.formats import sysext
        from buildgraph.steps.extensions import _one_line

        variables = {**VARS, "PLATFORM": PLATFORM, "SYSTEM_EXTENSIONS": str(TARBALL)}
        session = Session(CLONE, ["iso"], variables, {}, SEED)
        self.nodes = {node.target: node for node in session.nodes}
        self.out = {target: node.outputs[0] for target, node in self.nodes.items()}
        self.epoch = int(self.nodes["extensions"].params["epoch"])
        metadata = sysext.check_tar(TARBALL, TARBALL.name).metadata
        self.squashfs = f"000-{metadata['name']}.sqsh"
        layers = [{"image": self.squashfs, "metadata": _one_line(metadata)}]
        # the listing, as the step writes it: what the script's author would type
        self.listing = yaml.safe_dump({"layers": layers}, sort_keys=False, width=1 << 16)

    def input(self, target: str) -> str:
        return shlex.quote(str(out(self.out[target])))

    def scripts(self, initramfs: str | None = None) -> dict[str, str]:
        """node -> its script; the iso takes ``initramfs`` (default: the raw one)."""
        q, epoch, o = shlex.quote, self.epoch, self.out
        cpio = f"W/{o['extensions'].removesuffix('.xz')}"
        extensions = "\n".join([
            "rm -rf W && mkdir -p W/tree W/cpio/extensions",
            f"tar -xf {q(str(TARBALL))} -C W/tree",
            f"mksquashfs W/tree/rootfs W/cpio/extensions/{self.squashfs} -noappend -quiet"
            f" -no-progress -reproducible -all-root -no-xattrs -mkfs-time {epoch}"
            f" -all-time {epoch}",
            f"printf %s {q(self.listing)} > W/cpio/extensions.yaml",
            f"find W/cpio -exec touch -h -d @{epoch} {{}} +",
            "(cd W/cpio && find . -mindepth 1 -printf '%P\\n' | sort |"
            f" cpio -o -H newc -R 0:0 --reproducible --quiet) > {cpio}",
            f"xz --check=crc32 --threads=1 -6 -f {cpio}",
            f"mv {cpio}.xz {o['extensions']}",
            "rm -rf W",
        ])  # fmt: skip
        concat = f"cat {self.input('initramfs-base')} {o['extensions']} > {o['initramfs']}"
        iso_out = {
            "pkg-grub": str(out(o["pkg-grub"])),
            "kernel": str(out(o["kernel"])),
            "initramfs": initramfs or o["initramfs"],
            "iso": o["iso"],
        }
        cmdline = out(o["iso-cmdline"]).read_text()
        iso = iso_script(self.nodes["iso"].params, iso_out, cmdline)
        return {"extensions": extensions, "initramfs": concat, "iso": iso}


def check_same(raw: Raw) -> list[str]:
    """Untimed, after the last round: what the raw peer made holds what the imager's does;
    the findings, for the report."""
    o = raw.out
    ours, theirs = out(o["extensions"]), RAW_OUT / o["extensions"]
    if cpio_entries(ours) != cpio_entries(theirs):
        raise SystemExit("the raw extensions cpio holds other entries than the imager's")
    base_size = out(o["initramfs-base"]).stat().st_size
    with out(o["initramfs"]).open("rb") as a, (RAW_OUT / o["initramfs"]).open("rb") as b:
        if a.read(base_size) != b.read(base_size):
            raise SystemExit("the two initramfs do not start with the same initramfs-base")
    check = RAW_OUT / "check"
    shutil.rmtree(check, ignore_errors=True)
    check.mkdir()
    run_raw(check, {"iso": raw.scripts(str(out(o["initramfs"])))["iso"]}, ["iso"])
    if not filecmp.cmp(out(o["iso"]), check / o["iso"], shallow=False):
        raise SystemExit("the raw iso script, on the imager's initramfs, makes another iso")
    shutil.rmtree(check)
    same = filecmp.cmp(ours, theirs, shallow=False)
    return [
        "the two extension cpios hold the same entries (names, modes, owners, mtimes, "
        "bytes: the squashfs and extensions.yaml are identical)"
        + ("; they are even the same bytes" if same else
           "; GNU cpio numbers the inodes otherwise, so the bytes differ, and so do the "
           "initramfs and the iso after them"),
        "both initramfs start with the same initramfs-base bytes",
        "the raw iso script run on the imager's initramfs makes the imager's iso, byte for "
        "byte",
    ]  # fmt: skip


# -- measuring -----------------------------------------------------------------------


@dataclass
class Result:
    customize: ColdRounds = field(default_factory=ColdRounds)
    meta: ColdRounds = field(default_factory=ColdRounds)
    hits: dict[str, list[float]] = field(default_factory=dict)
    """Cache-hit run -> its walls."""
    statuses: dict[str, str] = field(default_factory=dict)
    """Cache-hit run -> its nodes' statuses, e.g. ``10 cached``."""
    same: list[str] = field(default_factory=list)


def node_seconds(run: DoitRun, expected: set[str]) -> dict[str, float]:
    if run.built() != expected:
        raise SystemExit(f"built {sorted(run.built())}, not {sorted(expected)}")
    return {label.split(":")[0]: seconds for label, (_, seconds) in run.nodes.items()
            if label in expected}  # fmt: skip


def customize(result: Result, rounds: int) -> None:
    raw = None
    for round_ in range(rounds):
        fresh_cache()
        base()
        os.sync()  # neither peer pays for writing back the set-up's files
        raw = raw or Raw()
        for peer in ("raw", "imager") if round_ % 2 == 0 else ("imager", "raw"):
            if peer == "raw":
                result.customize.raws.append(run_raw(RAW_OUT, raw.scripts(), CUSTOMIZED))
                say(f"  customize raw    {result.customize.raw_walls[-1]:7.2f}s")
                continue
            run = imager("iso", *CUSTOMIZE)
            result.customize.steps.append(node_seconds(run, labels(*CUSTOMIZED)))
            result.customize.walls.append(run.wall)
            nodes = sum(result.customize.steps[-1].values())
            say(f"  customize imager {run.wall:7.2f}s, nodes {nodes:.2f}s")
    assert raw is not None
    result.same = check_same(raw)


HITS = {
    "imager": f"`buildgraph imager iso --arch {ARCH} --system-extension-image {SHOWN}` again",
    "doit": f"`doit iso PLATFORM={PLATFORM} SYSTEM_EXTENSIONS={TARBALL.name}`, after the imager",
    "noop": "the same `doit` again (plain no-op, doit after doit)",
}
DOIT_EXTENSIONS = f"SYSTEM_EXTENSIONS={TARBALL.name}"
"""The tarball through doit, relative, as typed in the clone; the imager gets its absolute
path: one file, so one key (1d6f4e3)."""


def cache_hits(result: Result, rounds: int) -> None:
    for _ in range(rounds):
        for what in HITS:
            if what == "imager":
                run = imager("iso", *CUSTOMIZE)
            else:
                run = doit(CACHE, PLATFORM, DOIT_EXTENSIONS, clone=CLONE)
            statuses = sorted({status for status, _ in run.nodes.values()})
            if statuses != ["cached"] or not labels(*CUSTOMIZED) <= set(run.nodes):
                detail = {label: status for label, (status, _) in run.nodes.items()}
                raise SystemExit(f"{HITS[what]}: not all cached: {detail}\n{explain()}")
            result.statuses[what] = f"{len(run.nodes)} cached"
            result.hits.setdefault(what, []).append(run.wall)
            say(f"  hit {what:6s} {run.wall:7.3f}s, {result.statuses[what]}")


def explain() -> str:
    """``buildgraph explain iso`` with doit's spelling of the tarball, for a failure."""
    argv = [str(Path(sys.executable).with_name("buildgraph")), "explain", "iso",
            f"PLATFORM={PLATFORM}", DOIT_EXTENSIONS]  # fmt: skip
    env = {**doit_env(CACHE, CLONE), "BUILDGRAPH_LOG": ""}
    done = subprocess.run(argv, cwd=CLONE, env=env, capture_output=True, text=True)
    return f"{shlex.join(argv[1:])}:\n{done.stdout}{done.stderr}"


def meta_change(result: Result, rounds: int) -> None:
    from buildgraph.engine.session import Session

    variables = {**VARS, "PLATFORM": PLATFORM, "META": "0xa=1", **META_ENV}
    nodes = Session(CLONE, ["image-metal"], variables, {}, SEED).nodes
    params = {node.target: node.params for node in nodes}
    o = {node.target: node.outputs[0] for node in nodes}
    for n in range(1, rounds + 1):
        fresh_cache()
        imager("metal", "--meta", "0xa=0", env=META_ENV)
        meta = meta_file(f"0xa={n}", IMAGER / "meta")
        os.sync()
        for peer in ("raw", "imager") if n % 2 else ("imager", "raw"):
            if peer == "raw":
                scripts = disk_image_scripts(params, o, CLONE / "_out", "metal", meta)
                result.meta.raws.append(run_raw(RAW_OUT, scripts, META_NODES))
                say(f"  meta raw    {result.meta.raw_walls[-1]:7.2f}s")
                continue
            run = imager("metal", "--meta", f"0xa={n}", env=META_ENV)
            result.meta.steps.append(node_seconds(run, labels(*META_NODES)))
            result.meta.walls.append(run.wall)
            say(f"  meta imager {run.wall:7.2f}s, nodes {sum(result.meta.steps[-1].values()):.2f}s")
        for target in META_NODES:
            if not filecmp.cmp(out(o[target]), RAW_OUT / o[target], shallow=False):
                raise SystemExit(f"the raw {target} script made other bytes than the imager")


# -- reporting -----------------------------------------------------------------------


def tool_versions() -> str:
    doit_version = sh(f"{shlex.quote(doit_path())} --version").split()[0]
    squashfs = sh("mksquashfs -version").split()[2]
    cpio = sh("cpio --version").splitlines()[0].split()[-1]
    xz = sh("xz --version").split()[3]
    xorriso = sh("xorriso -version 2>/dev/null").split()[1]
    return (f"doit {doit_version}, mksquashfs {squashfs}, GNU cpio {cpio}, xz {xz}, "
            f"xorriso {xorriso}")  # fmt: skip


def n_rounds(n: int) -> str:
    return f"{n} round{'s' if n > 1 else ''}"


def summary(rounds: ColdRounds, what: str) -> str:
    wall, raw, raw_walls = rounds.wall, rounds.raw, rounds.raw_walls
    return (
        f"- {what}: {wall:.2f} s against the raw tools' {raw:.2f} s, {wall / raw:.2f}x "
        f"({wall - raw:+.2f} s). Runs: {min(rounds.walls):.2f}-{max(rounds.walls):.2f} s, raw "
        f"{min(raw_walls):.2f}-{max(raw_walls):.2f} s. Outside any node (start-up, "
        f"profile, planning): {rounds.outside:.2f} s."
    )


def report(r: Result, argv: Sequence[str], where: str, repeat: int) -> str:
    hits = ["| run | nodes | median (s) | min (s) | max (s) |", "|---|---|---:|---:|---:|"]
    hits += [f"| {HITS[w]} | {r.statuses[w]} | {median(r.hits[w]):.3f} | {min(r.hits[w]):.3f} "
             f"| {max(r.hits[w]):.3f} |" for w in HITS]  # fmt: skip
    noop = median(r.hits["noop"])
    lines = [
        f"Command: `{' '.join(['python', 'bench/imager.py', *argv])}`",
        "",
        f"Machine: {where}.",
        "",
        f"amd64, {n_rounds(repeat)}, medians. Package images from the embedded store, where a "
        "warm-up put them (no download is measured). **Warm customization**: before each "
        "round, a fresh cache and, untimed, `buildgraph imager iso --arch amd64` (the base "
        "ISO) and `sync`; then `buildgraph imager iso --arch amd64 --system-extension-image "
        f"{SHOWN}` "
        f"(`tar -C {EXTENSION} -cf hello.tar manifest.yaml rootfs` in the clone), which "
        "builds extensions, initramfs and iso, against one `sh` script per node on the same "
        "inputs: `tar -x`, mksquashfs with the step's reproducible flags, a sorted newc "
        "`cpio` + `xz --check=crc32 -6`; `cat` onto initramfs-base; the raw iso script "
        "bench/boot.py runs too (grub-mkimage, mkfs.vfat/mmd/mcopy, xorriso). Peers "
        "alternate which goes first. A node's imager seconds include its engine work "
        "(scratch directory, inputs linked, outputs hashed into the cache, links into "
        "`_out/`). **Cache hits**, after "
        "that, each round: the imager command again, the same variables through doit (the "
        "tarball spelled `hello.tar`, relative to the clone, where the imager had its "
        "absolute path), and that doit again; every node must be cached.",
        "",
        *r.customize.table(CUSTOMIZED, "imager"),
        "",
        *hits,
        "",
    ]
    if r.meta.walls:
        lines += [
            f"**META change**, {n_rounds(len(r.meta.walls))}: before each, a fresh cache "
            "and, untimed, `buildgraph imager metal --meta 0xa=0` and `sync`; then "
            "`buildgraph imager metal --meta 0xa=<n>`, a new n each round, with "
            "`ZSTD_LEVEL=3` in the environment (the metal profile's `.raw.zst` at the "
            "default level 18 would make this a zstd benchmark), which builds disk-metal and "
            "image-metal, against bench/disk.py's raw disk-metal and image-metal scripts (the "
            "disk's places the META partition's bytes, made untimed, with `dd`); both peers "
            "make the same bytes (checked every round).",
            "",
            *r.meta.table(META_NODES, "imager"),
            "",
        ]
    lines += [
        summary(r.customize, "warm customization, imager"),
        f"- cache hits: the imager again {median(r.hits['imager']):.3f} s, doit after the "
        f"imager {median(r.hits['doit']):.3f} s (`{DOIT_EXTENSIONS}`, relative, where the "
        f"imager had `{SHOWN}`), against a plain doit no-op's {noop:.3f} s; every node of "
        "every run cached.",
    ]
    if r.meta.walls:
        lines.append(summary(r.meta, "META change, imager"))
    lines += [f"- outputs: {finding}." for finding in r.same]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each part")
    parser.add_argument("--meta-rounds", type=int, help="META rounds (default --repeat; 0: none)")
    parser.add_argument("--write", action="store_true", help="put the results in BENCHMARKS.md")
    args = parser.parse_args(argv)
    meta_rounds = args.repeat if args.meta_rounds is None else args.meta_rounds
    if args.repeat < 1 or meta_rounds < 0:
        parser.error("--repeat must be at least 1, --meta-rounds at least 0")
    with exclusive():
        IMAGER.mkdir(exist_ok=True)
        engine = revision("buildgraph", "targets", "init")
        where = f"{host()}, {tool_versions()}, buildgraph at {engine}"
        clone_checkout(CLONE)
        sh(f"tar -C {shlex.quote(str(CLONE / EXTENSION))} -cf {shlex.quote(str(TARBALL))}"
           " manifest.yaml rootfs")  # fmt: skip
        say(f"warm-up build into {SEED} (downloads the package images the first time)")
        doit(SEED, PLATFORM, clone=CLONE)
        load = os.getloadavg()[0]
        result = Result()
        customize(result, args.repeat)
        cache_hits(result, args.repeat)
        if meta_rounds:
            meta_change(result, meta_rounds)
    where += f"; 1-minute load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    argv = argv if argv is not None else sys.argv[1:]
    section = report(result, argv, where, args.repeat)
    print(section)
    if args.write:
        write_section(*MARKERS, section)


if __name__ == "__main__":
    main()
