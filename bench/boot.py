"""Engine overhead on the real boot graph: ``doit iso`` against its tools run bare.

Why this exists: buildgraph wraps a few slow tools (go build, mksquashfs, xz,
grub-mkimage, xorriso) in keys, a content-addressed cache and doit. This script measures
what the wrapping costs on the graph buildgraph exists for, against the same tools run
on the same inputs as a shell script would run them, in the same run.

Set-up, not timed:

* the checkout's files (tracked and new, not ignored) are copied to ``_work/boot/clone``;
  doit runs there and imports that copy of buildgraph/, and so does this script, so edits
  made to the checkout meanwhile do not reach the measurement;
* a warm-up build into ``_work/boot/seed`` (kept between runs) fills the steps' own caches
  (``steps/``): the embedded OCI store with the package images made from the pinned .debs
  (only a first run downloads them), apt's lists and the Go build cache;
* the variables that would come from git or the host are fixed (``VARS``);
* the raw scripts are written from the nodes' params as the engine resolves them (its
  compiled plan), and from what the warm-up made (``Known``).

Cold, per arch, ``--cold`` rounds, alternating which of the two goes first:

* buildgraph: ``doit iso PLATFORM=linux/<arch>`` with an empty cache except ``steps/``, a
  copy of the seed's: the ``pkg-*`` nodes find the images of the current pins in the
  embedded store and flatten them, without the network; Go's build cache is warm, or
  empty with ``--go-cache cold``.
  Timed by wall clock; each node's own ``seconds`` come from its JSON ``node`` event;
* raw: one ``sh -eu`` script per node, timed by wall clock, running the node's tools on the
  same inputs with the same flags (``Raw``), with a copy of the same seed's Go build
  cache (or an empty one): Go is warm, or cold, for both. A package node is
  ``sha256sum`` and ``cp`` of the image's one layer, which is the flattened tar; the
  initramfs (initramfs-base with no extensions) and iso-cmdline (cmdline-metal with no
  META) are a ``cp``; the iso script is ``common.iso_script``. The script checks that
  both peers made the same bytes, except for the initramfs (GNU cpio's archive holds the
  same entries in another order) and the iso that carries it.

Warm, per arch, ``--repeat`` times each:

* no-op: ``doit iso`` again with nothing to do;
* one change: ``IMAGER_ARGS=--extra-kernel-arg=x=<n>`` rebuilds ``cmdline-metal``,
  ``iso-cmdline`` and ``iso``; against their raw scripts with the same command line.

Usage::

    python bench/boot.py [--arch amd64 arm64] [--cold 5] [--repeat 10] [--write]

``--write`` puts the results in BENCHMARKS.md, between the ``boot`` markers.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import lzma
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from checkout import copy_checkout
from common import (
    CLEAN_ENV,
    WORK,
    ColdRounds,
    doit_path,
    exclusive,
    host,
    iso_script,
    revision,
    say,
    sh,
    write_section,
)

BOOT = WORK / "boot"
CLONE = BOOT / "clone"
SEED = BOOT / "seed"


def markers(go_cache: str) -> tuple[str, str]:
    """Each Go cache mode has its own section in BENCHMARKS.md."""
    name = "boot" if go_cache == "warm" else f"boot-go-{go_cache}"
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


VARS = {"TAG": "v1.0.0", "SOURCE_DATE_EPOCH": "1700000000", "GOAMD64": "v2"}
"""Fixed for both peers: the clone has no git history to take TAG and the epoch from."""
NODES = ("pkg-kernel", "pkg-base", "pkg-grub", "kernel", "init", "rootfs", "initramfs-base",
         "initramfs", "cmdline-metal", "iso-cmdline", "iso")  # fmt: skip
"""The targets ``iso`` needs, in the order the raw peer runs them (a topological one)."""
PACKAGES = ("pkg-kernel", "pkg-base", "pkg-grub")
CPIOS = ("initramfs-base", "initramfs")
"""GNU cpio's archives: the same entries as buildgraph's, not the same bytes."""
CHANGED = ("cmdline-metal", "iso-cmdline", "iso")
"""What a change of the kernel arguments rebuilds, in the order the raw peer runs them."""
COLD_GOAL = 0.05
NOOP_GOAL_SECONDS = 0.3

# -- buildgraph ----------------------------------------------------------------------


@dataclass(frozen=True)
class DoitRun:
    wall: float
    nodes: dict[str, tuple[str, float]]
    """Node label (``iso:amd64``) -> (built | cached, its seconds), from the JSON log."""

    def built(self) -> set[str]:
        return {label for label, (status, _) in self.nodes.items() if status == "built"}


def doit_env(cache: Path, clone: Path = CLONE) -> dict[str, str]:
    return {
        **CLEAN_ENV,
        "HOME": str(BOOT / "home"),
        "PYTHONPATH": str(clone),
        "BUILDGRAPH_CACHE": str(cache),
        "BUILDGRAPH_LOG": "json",
        **VARS,
    }


def doit(
    cache: Path,
    platforms: str,
    *variables: str,
    targets: Sequence[str] = ("iso",),
    clone: Path = CLONE,
) -> DoitRun:
    """``doit <targets> PLATFORM=<platforms>`` in the clone, timed by wall clock."""
    argv = [doit_path(), *targets, f"PLATFORM={platforms}", *variables]
    started = time.perf_counter()
    done = subprocess.run(
        argv, cwd=clone, env=doit_env(cache, clone), capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(argv[1:])} failed:\n{done.stdout}{done.stderr[-3000:]}")
    nodes = {}
    for line in done.stderr.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == "node":
                nodes[event["node"]] = (event["status"], event["seconds"])
    return DoitRun(wall, nodes)


def clone_checkout(clone: Path = CLONE) -> None:
    """The checkout's files, tracked and new (not ignored), as the boot tests build."""
    shutil.rmtree(clone, ignore_errors=True)
    copy_checkout(clone)
    probe = subprocess.run(
        [sys.executable, "-c", "import buildgraph; print(buildgraph.__file__)"],
        cwd=clone.parent, env=doit_env(SEED, clone), capture_output=True, text=True, check=True,
    )  # fmt: skip
    if Path(probe.stdout.strip()).parent != clone / "buildgraph":
        raise SystemExit(f"doit would import {probe.stdout.strip()}, not the clone's buildgraph")
    sys.path.insert(0, str(clone))  # this script's own imports of buildgraph, from now on


def fresh_cache(path: Path, go_cache: str, clone: Path = CLONE) -> None:
    """An empty cache but for ``steps/``, a copy of the seed's (without Go's build cache
    when ``go_cache`` is cold); no ``_out/`` in the clone."""
    shutil.rmtree(path, ignore_errors=True)
    skip = shutil.ignore_patterns("go-build") if go_cache == "cold" else None
    shutil.copytree(SEED / "steps", path / "steps", symlinks=True, ignore=skip)
    shutil.rmtree(clone / "_out", ignore_errors=True)


# -- the raw peer --------------------------------------------------------------------


def plan(
    arch: str,
    goal: Sequence[str] = ("iso",),
    expected: Sequence[str] = NODES,
    clone: Path = CLONE,
) -> dict[str, Any]:
    """target -> its node for ``arch`` (params resolved, outputs named), as doit's run
    compiles them: the clone's engine, the same goal and variables."""
    from buildgraph.engine.session import Session

    session = Session(clone, list(goal), {**VARS, "PLATFORM": f"linux/{arch}"}, {}, SEED)
    nodes = {node.target: node for node in session.nodes}
    if set(nodes) != set(expected):
        raise SystemExit(f"{' '.join(goal)} needs {sorted(nodes)} now, not {sorted(expected)}")
    return nodes


@dataclass(frozen=True)
class Known:
    """What the author of a shell script knows before writing it, taken (untimed) from the
    warm-up's outputs: which module files go into the initramfs, their load order, and the
    kernel command lines."""

    modules: list[str]
    load_list: str
    cmdlines: dict[str, str]

    @classmethod
    def from_outputs(cls, outputs: dict[str, str]) -> Known:
        initramfs = shlex.quote(str(CLONE / "_out" / outputs["initramfs-base"]))
        unpack = f"xz -dc {initramfs} | cpio -i"
        listing = sh(f"{unpack} -t --quiet").split()
        load_list = sh(f"{unpack} --to-stdout --quiet lib/modules/load.list")
        modules = [name for name in listing if name.endswith(".ko")]
        return cls(modules, load_list, command_lines(outputs))


def command_lines(outputs: dict[str, str]) -> dict[str, str]:
    """cmdline-metal and iso-cmdline -> its text, as the clone's ``_out/`` holds it."""
    return {t: (CLONE / "_out" / outputs[t]).read_text() for t in ("cmdline-metal", "iso-cmdline")}


class Raw:
    """The raw peer of one arch: per node, the tools its step runs, as an ``sh`` script
    run in the output directory, writing the node's output under the same name; ``W`` is
    a node's scratch directory."""

    def __init__(self, arch: str) -> None:
        nodes = plan(arch)
        self.arch = arch
        self.params = {target: node.params for target, node in nodes.items()}
        self.out = {target: node.outputs[0] for target, node in nodes.items()}
        self.known = Known.from_outputs(self.out)

    def layer(self, node: str) -> tuple[str, Path]:
        """sha256 and path of the package image's layer, which must be one plain tar."""
        from buildgraph.oci.layout import Layout

        store = Layout(SEED / "steps" / "oci")
        ref = self.params[node]["ref"]
        manifest = store.manifest_for(ref, self.arch) or {}
        layers = manifest.get("layers") or []
        if len(layers) != 1:
            raise SystemExit(f"{ref} ({self.arch}): raw copies a one-layer image, not {layers}")
        path = store.blob_path(layers[0]["digest"])
        with open(path, "rb") as blob:
            blob.seek(257)
            if blob.read(5) != b"ustar":
                raise SystemExit(f"{ref} ({self.arch}): raw copies a plain tar layer")
        return layers[0]["digest"].removeprefix("sha256:"), path

    def scripts(self, gocache: Path, cmdlines: dict[str, str]) -> dict[str, str]:
        """node -> its script; ``cmdlines``: the command lines of cmdline-metal (to write)
        and iso-cmdline (for the ISO's grub.cfg), from ``command_lines``."""
        arch, out, q = self.arch, self.out, shlex.quote
        scripts = {}
        for node in PACKAGES:
            digest, blob = self.layer(node)
            scripts[node] = (
                f"echo {digest}'  '{q(str(blob))} | sha256sum --check --status\n"
                f"mkdir -p {q(str(Path(out[node]).parent))}\ncp {q(str(blob))} {out[node]}"
            )
        scripts["kernel"] = (
            f"tar -xOf {out['pkg-kernel']} --wildcards 'boot/vmlinuz*' > {out['kernel']}"
        )
        go = self.params["init"]
        goenv = {
            "HOME": gocache, "GOOS": "linux", "GOARCH": arch, "CGO_ENABLED": "0",
            "GOCACHE": gocache / "cache", "GOPATH": gocache / "gopath", "GOENV": "off",
            "GOWORK": "off", "GOPROXY": "off", "GOSUMDB": "off", "GO111MODULE": "on",
            "GOTOOLCHAIN": "local",
            **({"GOAMD64": go.get("goamd64", "v1")} if arch == "amd64" else {}),
        }  # fmt: skip
        scripts["init"] = (
            f"out=$PWD\ncd {q(str(CLONE / go['package']))}\n"
            + "".join(f"export {k}={q(str(v))}\n" for k, v in goenv.items())
            + "go build -trimpath -buildvcs=false -modcacherw -ldflags='-s -w -buildid='"
            f" -o $out/{out['init']} ."
        )
        rootfs = self.params["rootfs"]
        epoch = int(rootfs["epoch"])
        dirs = [str(entry).partition(":") for entry in rootfs["dirs"]]
        release = "".join(f'{k}="{v}"\n' for k, v in rootfs["os_release"].items())
        scripts["rootfs"] = (
            f"rm -rf W && mkdir -p W/tree\ntar -xf {out['pkg-base']} -C W/tree\ncd W/tree\n"
            + "".join(f"mkdir -p {q(path)} && chmod {mode or '755'} {q(path)}\n"
                      for path, _, mode in dirs)
            + f"for a in {' '.join(map(q, rootfs['applets']))}; do\n"
            '  [ -e "bin/$a" ] || ln -sf busybox "bin/$a"\ndone\n'
            f"printf %s {q(release)} > etc/os-release\n"
            f"cp -R {q(str(CLONE / rootfs['files']))}/. .\ncd ../..\n"
            f"mksquashfs W/tree {out['rootfs']} -noappend -quiet -no-progress -reproducible"
            f" -all-root -no-xattrs -mkfs-time {epoch} -all-time {epoch}\nrm -rf W"
        )  # fmt: skip
        epoch = int(self.params["initramfs-base"]["epoch"])
        cpio = f"{out['initramfs-base']}.cpio"
        scripts["initramfs-base"] = (
            "rm -rf W && mkdir -p W/dev W/lib/modules W/newroot W/proc W/sys\n"
            f"mknod -m 600 W/dev/console c 5 1\ncp {out['init']} W/init\n"
            f"tar -xf {out['pkg-kernel']} -C W {' '.join(map(q, self.known.modules))}\n"
            f"printf %s {q(self.known.load_list)} > W/lib/modules/load.list\n"
            f"cp {out['rootfs']} W/rootfs.sqsh\nfind W -exec touch -h -d @{epoch} {{}} +\n"
            "(cd W && find . -mindepth 1 -printf '%P\\n' | sort |"
            f" cpio -o -H newc -R 0:0 --reproducible --quiet) > {cpio}\n"
            f"xz --check=crc32 --threads=1 -6 -f {cpio}\nmv {cpio}.xz {out['initramfs-base']}"
            "\nrm -rf W"
        )
        scripts["initramfs"] = f"cp {out['initramfs-base']} {out['initramfs']}"
        metal = cmdlines["cmdline-metal"]
        scripts["cmdline-metal"] = f"printf %s {q(metal)} > {out['cmdline-metal']}"
        scripts["iso-cmdline"] = f"cp {out['cmdline-metal']} {out['iso-cmdline']}"
        scripts["iso"] = iso_script(self.params["iso"], out, cmdlines["iso-cmdline"])
        return scripts


def run_raw(out: Path, scripts: dict[str, str], nodes: Sequence[str]) -> dict[str, float]:
    """Run the scripts of ``nodes`` in ``out``, one ``sh`` each, with the umask the engine
    gives steps; node -> wall seconds."""
    seconds = {}
    for node in nodes:
        script = f"umask 022\n{scripts[node]}"
        started = time.perf_counter()
        done = subprocess.run(
            ["sh", "-euc", script], cwd=out, env=CLEAN_ENV, capture_output=True, text=True
        )
        seconds[node] = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"raw {node} failed in {out}:\n{done.stderr[-3000:]}")
    return seconds


# -- measuring -----------------------------------------------------------------------


@dataclass(kw_only=True)
class Result(ColdRounds):
    arch: str
    noops: list[float] = field(default_factory=list)
    changes: list[float] = field(default_factory=list)
    raw_changes: list[float] = field(default_factory=list)
    same: list[str] = field(default_factory=list)
    """Outputs whose bytes are the same in both peers."""


def cpio_entries(path: Path) -> dict[str, tuple]:
    """name -> (mode, uid, gid, mtime, rdev major, rdev minor, data) of an xz newc cpio."""
    data = lzma.decompress(path.read_bytes())
    entries: dict[str, tuple] = {}
    at = 0
    while True:
        fields = [int(data[at + 6 + 8 * i : at + 14 + 8 * i], 16) for i in range(13)]
        _ino, mode, uid, gid, _nlink, mtime, size, _, _, major, minor, name_size, _ = fields
        name = data[at + 110 : at + 109 + name_size].decode()
        at = (at + 110 + name_size + 3) & ~3
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, uid, gid, mtime, major, minor, data[at : at + size])
        at = (at + size + 3) & ~3


def compare(raw: Raw, raw_out: Path) -> list[str]:
    """The targets whose output has the same bytes in both peers. GNU cpio writes other
    bytes than buildgraph's writer (inode numbers, order), so the initramfs (initramfs-base
    and its copy, initramfs) must hold the same entries; every other output but the iso,
    which carries it, the same bytes."""
    same = [
        target
        for target in NODES
        if filecmp.cmp(CLONE / "_out" / raw.out[target], raw_out / raw.out[target], shallow=False)
    ]
    differ = sorted(set(NODES) - set(same) - {*CPIOS, "iso"})
    if differ:
        raise SystemExit(f"{raw.arch}: the raw peer made other bytes for {differ}")
    for target in CPIOS:
        initramfs = raw.out[target]
        if cpio_entries(CLONE / "_out" / initramfs) != cpio_entries(raw_out / initramfs):
            raise SystemExit(f"{raw.arch}: the raw {target} holds other entries than buildgraph's")
    return same


def measure(raw: Raw, rounds: int, repeat: int, go_cache: str) -> Result:
    arch = raw.arch
    result = Result(arch=arch)
    cache, raw_out, gocache = (BOOT / f"{what}-{arch}" for what in ("cache", "raw", "raw-go"))
    for round_ in range(rounds):
        fresh_cache(cache, go_cache)
        shutil.rmtree(raw_out, ignore_errors=True)
        raw_out.mkdir()
        shutil.rmtree(gocache, ignore_errors=True)
        if go_cache == "warm":
            shutil.copytree(SEED / "steps" / "go-build", gocache, symlinks=True)
        else:
            gocache.mkdir()
        for peer in ("raw", "buildgraph") if round_ % 2 == 0 else ("buildgraph", "raw"):
            if peer == "raw":
                scripts = raw.scripts(gocache, raw.known.cmdlines)
                result.raws.append(run_raw(raw_out, scripts, NODES))
                say(f"  {arch} cold raw        {sum(result.raws[-1].values()):8.2f}s")
                continue
            run = doit(cache, f"linux/{arch}")
            expected = {f"{target}:{arch}" for target in NODES}
            if run.built() != expected:
                raise SystemExit(f"a cold build built {sorted(run.built())}, not {expected}")
            result.walls.append(run.wall)
            result.steps.append({label.split(":")[0]: s for label, (_, s) in run.nodes.items()})
            nodes = sum(result.steps[-1].values())
            say(f"  {arch} cold buildgraph {run.wall:8.2f}s, nodes {nodes:.2f}s")
    result.same = compare(raw, raw_out)
    for _ in range(repeat):
        run = doit(cache, f"linux/{arch}")
        if run.built():
            raise SystemExit(f"a no-op built {sorted(run.built())}")
        result.noops.append(run.wall)
        say(f"  {arch} no-op           {run.wall:8.3f}s")
    for n in range(1, repeat + 1):
        run = doit(cache, f"linux/{arch}", f"IMAGER_ARGS=--extra-kernel-arg=x={n}")
        if run.built() != {f"{target}:{arch}" for target in CHANGED}:
            raise SystemExit(f"one change built {sorted(run.built())}, not {CHANGED}")
        changed = command_lines(raw.out)
        seconds = run_raw(raw_out, raw.scripts(gocache, changed), CHANGED)
        result.changes.append(run.wall)
        result.raw_changes.append(sum(seconds.values()))
        say(f"  {arch} one change      {run.wall:8.3f}s, raw {result.raw_changes[-1]:.3f}s")
    return result


# -- reporting -----------------------------------------------------------------------


def tool_versions() -> str:
    go = sh("go version").split()[2].removeprefix("go")
    doit_version = sh(f"{shlex.quote(doit_path())} --version").split()[0]
    return f"doit {doit_version}, Go {go}"


GO_CACHE = {
    "warm": "Go's build cache warm for both peers (a copy of the same warm-up's)",
    "cold": "Go's build cache empty for both peers, as in a first build",
}


def report(
    results: list[Result], argv: Sequence[str], where: str, repeat: int, go_cache: str
) -> str:
    head = "| node |" + "".join(f" {r.arch} buildgraph (s) | {r.arch} raw (s) |" for r in results)
    rows = [head, "|---|" + "---:|---:|" * len(results)]
    for target in NODES:
        rows.append(f"| {target} |" + "".join(
            f" {r.node(target):.2f} | {r.raw_node(target):.2f} |" for r in results))  # fmt: skip
    rows.append("| sum of steps |" + "".join(f" {r.step_sum:.2f} | {r.raw:.2f} |" for r in results))
    rows.append("| whole run |" + "".join(f" {r.wall:.2f} | {r.raw:.2f} |" for r in results))
    summary = [
        "| arch | cold `doit iso` (s) | its nodes (s) | raw tools (s) | over raw | engine's own "
        "share | no-op median (s) | no-op min (s) | one change (s) | raw cmdlines + iso (s) "
        "| over raw |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    met = {True: "met", False: "**not met**"}
    for r in results:
        over = (r.wall - r.raw) / r.raw
        own = r.outside / r.wall
        change, raw_change = statistics.median(r.changes), statistics.median(r.raw_changes)
        noop = statistics.median(r.noops)
        summary.append(
            f"| {r.arch} | {r.wall:.2f} | {r.step_sum:.2f} | {r.raw:.2f} | {over:+.1%} "
            f"| {own:.1%} | {noop:.3f} | {min(r.noops):.3f} | {change:.3f} | {raw_change:.3f} "
            f"| {(change - raw_change) / raw_change:+.0%} |"
        )
        differ = [t for t in NODES if t not in r.same]
        raws = [sum(round_.values()) for round_ in r.raws]
        verdicts += [
            f"- {r.arch}, cold: `doit iso` {r.wall:.2f} s against the raw tools' {r.raw:.2f} s, "
            f"{over:+.1%}, against a goal of under {COLD_GOAL:.0%}: {met[over < COLD_GOAL]}. "
            f"Rounds: `doit iso` {min(r.walls):.2f}-{max(r.walls):.2f} s, raw tools "
            f"{min(raws):.2f}-{max(raws):.2f} s. "
            f"Time outside any node (start-up, planning, doit): {r.outside:.2f} s, "
            f"{own:.1%} of the wall.",
            f"- {r.arch}, no-op: median {noop:.3f} s, min {min(r.noops):.3f} s, against a goal "
            f"of under {NOOP_GOAL_SECONDS} s: {met[noop < NOOP_GOAL_SECONDS]}.",
            f"- {r.arch}, outputs: the same bytes from both peers for {', '.join(r.same)}; "
            f"{', '.join(differ)} differ: GNU cpio orders and numbers the entries otherwise "
            "than buildgraph's writer, and the iso carries the initramfs. The two initramfs "
            "archives hold the same entries (names, modes, owners, mtimes, devices, bytes); "
            "the script checks it.",
        ]
    command = " ".join(["python", "bench/boot.py", *argv])
    return "\n".join([
        f"Command: `{command}`",
        "",
        f"Machine: {where}.",
        "",
        f"Cold: medians of the rounds, per node and in total; {GO_CACHE[go_cache]}; "
        "package images from the embedded store, where the warm-up put them (no download "
        "is measured). A node's buildgraph seconds include its own engine work (scratch "
        "directory, inputs linked in, outputs hashed into the cache, links into `_out/`); "
        "a raw script's, its "
        "`sh`. Over raw = (`doit iso` wall - raw tools) / raw tools; engine's own share = "
        "(`doit iso` wall - its nodes) / `doit iso` wall, per round. Warm: "
        f"{repeat} no-op runs, and {repeat} runs each changing `IMAGER_ARGS` (rebuilds "
        "cmdline-metal, iso-cmdline and iso), against their raw scripts; medians.",
        "",
        *rows,
        "",
        *summary,
        "",
        *verdicts,
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--arch", nargs="+", choices=("amd64", "arm64"),
                        default=["amd64", "arm64"], help="one row each")  # fmt: skip
    parser.add_argument("--cold", type=int, default=5, help="cold rounds per arch")
    parser.add_argument("--repeat", type=int, default=10, help="no-op and one-change runs")
    parser.add_argument("--go-cache", choices=("warm", "cold"), default="warm",
                        help="Go's build cache for both peers in the cold rounds")  # fmt: skip
    parser.add_argument("--write", action="store_true", help="put the results in BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.cold < 1 or args.repeat < 1:
        parser.error("--cold and --repeat must be at least 1")
    with exclusive():
        BOOT.mkdir(exist_ok=True)
        engine = revision("buildgraph", "targets", "init")
        where = f"{host()}, {tool_versions()}, buildgraph at {engine}"
        clone_checkout()
        say(f"warm-up build into {SEED} (downloads the package images the first time)")
        doit(SEED, ",".join(f"linux/{arch}" for arch in args.arch))
        raws = [Raw(arch) for arch in args.arch]
        load = os.getloadavg()[0]
        results = [measure(raw, args.cold, args.repeat, args.go_cache) for raw in raws]
    where += f"; 1-minute load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    argv = argv if argv is not None else sys.argv[1:]
    section = report(results, argv, where, args.repeat, args.go_cache)
    print(section)
    if args.write:
        write_section(*markers(args.go_cache), section)


if __name__ == "__main__":
    main()
