"""Engine overhead on disk images: ``doit image-metal image-aws`` against its tools run bare.

Why this exists: a disk image is the one output of the boot graph that is mostly holes (the
aws disk is 8 GiB and holds a few dozen MiB), and the engine hashes every output into its
content-addressed cache. This script measures, in one run, what building the disk and image
nodes through the engine costs against the same tools run as a shell script would run them,
what a no-op costs, and how much disk the sparse outputs really take.

Set-up, not timed:

* the checkout's files (tracked and new, not ignored) are copied to ``_work/disk/clone``
  (``boot.clone_checkout``); doit runs there and imports that copy of buildgraph/, and so
  does this script;
* a warm-up build into ``_work/boot/seed``, the seed bench/boot.py keeps, fills the steps'
  own caches (the package images in the embedded OCI store, the Go build cache), so no
  download is measured;
* the variables that would come from git or the host are fixed (``boot.VARS``);
  ``PLATFORM=linux/amd64``.

``--repeat`` cold runs of each peer, alternating, raw first; before each, the same set-up:

* a fresh cache, ``_work/disk/cache``, with a copy of the seed's ``steps/``, and no ``_out/``
  nor any earlier run's disks; then, untimed, ``doit iso cmdline-aws``: the kernel,
  initramfs, GRUB package and both command lines the disks read are built, cached and in
  ``_out/``;
* buildgraph: ``doit image-metal image-aws``, timed by wall clock, which must build exactly
  ``disk-metal``, ``image-metal``, ``disk-aws`` and ``image-aws``; each node's own seconds
  come from its JSON ``node`` event;
* raw: one ``sh -eu`` script per node, run in ``_work/disk/raw``, reading the same inputs
  from the clone's ``_out/``: grub-mkimage, mkfs.vfat, mmd and mcopy for the EFI system
  partition; mke2fs -d and debugfs for BOOT; truncate and sgdisk for the disk; each
  filesystem placed with ``dd conv=sparse,notrunc``; the META partition's bytes (made
  once, untimed, with ``buildgraph.formats.meta``: no tool writes that format) with ``dd
  conv=notrunc``; GRUB's BIOS boot code and core.img put in place with dd, as
  grub-bios-setup would; then ``zstd -T0 -<ZSTD_LEVEL>``. The scripts are
  ``common.disk_script`` and ``common.image_script``. Same flags, same environment
  (``SOURCE_DATE_EPOCH``, ``E2FSPROGS_FAKE_TIME``) as the steps;
* no-op, after each buildgraph run: ``doit image-metal image-aws`` again, which must build
  nothing; the raw peer's no-op is nothing at all (0 s).

Each cold run's user and system CPU (of the doit process or the scripts, and of all they
ran) is recorded too: reading the holes of a new sparse file makes the kernel fill the page
cache with zeroed pages, and that system time varied from about 1 s to over 10 s for the
same 8 GiB from one read to the next on the 2-core VM this was written on. zstd reads every
byte of each disk in both peers; the raw script's ``dd`` also reads the holes of the
filesystem images (1.1 GiB a disk), which the engine's copy skips (SEEK_DATA), as its
digest does since f60ee40. User CPU is the steadier comparison.

After the last run (a buildgraph one), the raw scripts run again beside it, untimed; then:
the bytes allocated (``st_blocks`` x 512) and apparent (``st_size``) of each output, of the
cache and of ``_out/``; whether both peers made the same bytes; and, untimed, how long the
engine's file digest (what ``Store.put_file`` runs on each output) takes over each raw disk:
on a fresh sparse copy, whose holes are not in the page cache yet (as a step's new output
is), and over the same copy again.

Usage::

    python bench/disk.py [--repeat 3] [--write]

``--write`` puts the results in BENCHMARKS.md, between the ``disk`` markers.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import resource
import shlex
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from boot import SEED, clone_checkout, doit, fresh_cache, plan, run_raw
from common import (
    MIB,
    WORK,
    ColdRounds,
    disk_image_scripts,
    doit_path,
    exclusive,
    host,
    meta_file,
    revision,
    say,
    sh,
    write_section,
)

DISK = WORK / "disk"
CLONE = DISK / "clone"
CACHE = DISK / "cache"
RAW_OUT = DISK / "raw"
MARKERS = ("<!-- disk:begin -->", "<!-- disk:end -->")
ARCH = "amd64"
PLATFORM = f"linux/{ARCH}"
GOAL = ("image-metal", "image-aws")
PREBUILD = ("iso", "cmdline-aws")
"""Built untimed before each cold run: iso brings kernel, initramfs, pkg-grub, cmdline-metal."""
PROFILES = ("metal", "aws")
NODES = ("disk-metal", "image-metal", "disk-aws", "image-aws")
"""The nodes a cold ``doit image-metal image-aws`` builds, in the order the raw peer runs."""
UPSTREAM = ("pkg-kernel", "pkg-base", "pkg-grub", "kernel", "init", "rootfs", "initramfs-base",
            "initramfs", "cmdline-metal", "cmdline-aws")  # fmt: skip
GIB = 1 << 30

# -- the raw peer --------------------------------------------------------------------


class Raw:
    """Per node, the tools its step runs (``common.disk_script``, ``common.image_script``),
    as an ``sh`` script run in the raw peer's output directory, reading its inputs from the
    clone's ``_out/``; ``W`` is its scratch. META's bytes are made here, untimed, into a
    file the disk script places with ``dd``."""

    def __init__(self) -> None:
        nodes = plan(ARCH, GOAL, (*UPSTREAM, *NODES), CLONE)
        self.params = {target: node.params for target, node in nodes.items()}
        self.out = {target: node.outputs[0] for target, node in nodes.items()}
        self.meta = {
            profile: meta_file(self.params[f"disk-{profile}"]["meta"], DISK / f"meta-{profile}")
            for profile in PROFILES
        }

    def scripts(self) -> dict[str, str]:
        scripts = {}
        for profile in PROFILES:
            meta = self.meta[profile]
            scripts |= disk_image_scripts(self.params, self.out, CLONE / "_out", profile, meta)
        return scripts


# -- disk space ----------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    allocated: int
    """st_blocks x 512: what the filesystem really holds."""
    apparent: int
    """st_size: what a reader sees."""

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.allocated - other.allocated, self.apparent - other.apparent)


def usage(*roots: Path) -> Usage:
    """Of the files under ``roots`` (or the files themselves), a hard link counted once."""
    seen: set[tuple[int, int]] = set()
    allocated = apparent = 0

    def add(path: str) -> None:
        nonlocal allocated, apparent
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            allocated += st.st_blocks * 512
            apparent += st.st_size

    for root in roots:
        if not root.is_dir():
            add(str(root))
            continue
        for directory, _dirs, files in os.walk(root):
            for name in files:
                add(os.path.join(directory, name))
    return Usage(allocated, apparent)


@dataclass
class Space:
    files: dict[str, tuple[Usage, Usage]]
    """Output name -> its usage in ``_out/`` and in the raw peer's directory."""
    cache: Usage
    steps: Usage
    added: Usage
    """What the timed build added to the cache (after - before)."""
    out: Usage
    both: Usage
    """The cache and ``_out/`` together, a hard link counted once."""
    raw: Usage


# -- measuring -----------------------------------------------------------------------


@dataclass(frozen=True)
class Digest:
    """Medians, in seconds: wall and system CPU of the engine's file digest over a fresh
    sparse copy, then over the same copy again."""

    fresh: float
    fresh_sys: float
    again: float
    again_sys: float


@dataclass
class Result(ColdRounds):
    noops: list[float] = field(default_factory=list)
    cpu: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: {"buildgraph": [], "raw": []}
    )
    """Peer -> per cold run, (user, system) CPU seconds of it and all it started."""
    same: list[str] = field(default_factory=list)
    """Outputs whose bytes are the same in both peers."""
    digests: dict[str, Digest] = field(default_factory=dict)
    """Raw disk -> the engine's file digest over a fresh copy of it, and over that again."""
    space: Space | None = None

    def cpu_median(self, peer: str, which: int) -> float:
        return statistics.median(times[which] for times in self.cpu[peer])

    def profile(self, rounds: list[dict[str, float]], profile: str) -> float:
        """Median over ``rounds`` (cold runs) of the seconds of a profile's disk and image
        nodes."""
        return statistics.median(
            round_[f"disk-{profile}"] + round_[f"image-{profile}"] for round_ in rounds
        )


def compare(raw: Raw) -> list[str]:
    """The outputs with the same bytes in both peers. Equal .zst files hold equal disks, so
    a disk is read in full (8 GiB, holes as zeros) only when its image differs."""
    same = []
    for profile in PROFILES:
        image, disk = raw.out[f"image-{profile}"], raw.out[f"disk-{profile}"]
        if filecmp.cmp(CLONE / "_out" / image, RAW_OUT / image, shallow=False):
            same += [f"disk-{profile}", f"image-{profile}"]
        elif filecmp.cmp(CLONE / "_out" / disk, RAW_OUT / disk, shallow=False):
            same.append(f"disk-{profile}")
    return same


def digest_seconds(path: Path, repeat: int) -> Digest:
    """The engine's file digest over a fresh sparse copy of ``path``, which has its data in
    the page cache but not its holes (a step's new output is like that: nothing has read it
    yet), then over the same copy again."""
    from buildgraph.engine import sparse
    from buildgraph.engine.hashing import digest_file

    fresh: list[tuple[float, float]] = []
    again: list[tuple[float, float]] = []
    copy = DISK / "digest.tmp"
    for _ in range(repeat):
        sparse.copy(path, copy)
        for runs in (fresh, again):
            started, cpu = time.perf_counter(), os.times()
            digest_file(copy)
            runs.append((time.perf_counter() - started, os.times().system - cpu.system))
        copy.unlink()
    return Digest(*(statistics.median(x[i] for x in runs) for runs in (fresh, again)
                    for i in (0, 1)))  # fmt: skip


def children_cpu(since: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float]:
    """User and system CPU seconds of the children waited for (and theirs) after ``since``,
    an earlier reading."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime - since[0], used.ru_stime - since[1]


def set_up(expected: set[str]) -> None:
    """The same state before every timed run: a fresh cache, then the upstream assets built
    into it and placed in ``_out/``; no disk of an earlier run left anywhere. (Every run
    gets one: when the two peers shared one, whichever went second was 3-21 s faster, in
    each of nine rounds, whichever peer it was.)"""
    fresh_cache(CACHE, "warm", CLONE)
    shutil.rmtree(RAW_OUT, ignore_errors=True)
    RAW_OUT.mkdir()
    built = doit(CACHE, PLATFORM, targets=PREBUILD, clone=CLONE).built()
    if built & expected:
        raise SystemExit(f"the untimed build of {PREBUILD} built {sorted(built & expected)}")


def measure(repeat: int) -> Result:
    result = Result()
    expected = {f"{target}:{ARCH}" for target in NODES}
    raw = None
    for run_ in range(2 * repeat):
        set_up(expected)
        raw = raw or Raw()
        cpu = children_cpu()
        if run_ % 2 == 0:
            result.raws.append(run_raw(RAW_OUT, raw.scripts(), NODES))
            user, system = children_cpu(cpu)
            result.cpu["raw"].append((user, system))
            say(f"  cold raw        {sum(result.raws[-1].values()):8.2f}s, "
                f"CPU {user:.2f}s user, {system:.2f}s system")  # fmt: skip
            continue
        before = usage(CACHE)
        run = doit(CACHE, PLATFORM, targets=GOAL, clone=CLONE)
        user, system = children_cpu(cpu)
        result.cpu["buildgraph"].append((user, system))
        if run.built() != expected:
            raise SystemExit(f"a cold build built {sorted(run.built())}, not {expected}")
        after = usage(CACHE)
        result.walls.append(run.wall)
        result.steps.append(
            {label.split(":")[0]: s for label, (_, s) in run.nodes.items() if label in expected}
        )
        nodes = sum(result.steps[-1].values())
        say(f"  cold buildgraph {run.wall:8.2f}s, nodes {nodes:.2f}s, "
            f"CPU {user:.2f}s user, {system:.2f}s system")  # fmt: skip
        run = doit(CACHE, PLATFORM, targets=GOAL, clone=CLONE)
        if run.built():
            raise SystemExit(f"a no-op built {sorted(run.built())}")
        result.noops.append(run.wall)
        say(f"  no-op           {run.wall:8.3f}s")
    assert raw is not None
    run_raw(RAW_OUT, raw.scripts(), NODES)  # untimed, beside the last cold build: to compare
    result.same = compare(raw)
    out = CLONE / "_out"
    result.space = Space(
        files={raw.out[t]: (usage(out / raw.out[t]), usage(RAW_OUT / raw.out[t])) for t in NODES},
        cache=usage(CACHE),
        steps=usage(CACHE / "steps"),
        added=after - before,
        out=usage(out),
        both=usage(CACHE, out),
        raw=usage(RAW_OUT),
    )
    for target in ("disk-metal", "disk-aws"):
        name = raw.out[target]
        result.digests[name] = digest_seconds(out / name, repeat)
        say(f"  digest of {name}: {result.digests[name].fresh:.2f}s fresh, "
            f"{result.digests[name].again:.2f}s again")  # fmt: skip
    return result


# -- reporting -----------------------------------------------------------------------


def tool_versions() -> str:
    doit_version = sh(f"{shlex.quote(doit_path())} --version").split()[0]
    zstd = sh("zstd --version").split(" v", 1)[1].split(",")[0]
    e2fsprogs = sh("mke2fs -V 2>&1").split()[1]
    grub = sh("grub-mkimage --version").split()[-1]
    sgdisk = sh("sgdisk --version").split("version")[1].split()[0]
    return f"doit {doit_version}, zstd {zstd}, e2fsprogs {e2fsprogs}, GRUB {grub}, sgdisk {sgdisk}"


def size(n: int) -> str:
    if abs(n) >= GIB:
        return f"{n / GIB:.2f} GiB"
    return f"{n / MIB:.1f} MiB"


def report(r: Result, argv: Sequence[str], where: str, repeat: int) -> str:
    assert r.space is not None
    space = r.space
    rows = r.table(NODES, "buildgraph")
    over = (r.wall - r.raw) / r.raw
    own = r.outside / r.wall
    noop = statistics.median(r.noops)
    summary = [
        "| cold `doit image-metal image-aws` (s) | its nodes (s) | raw tools (s) | over raw "
        "| engine's own share | no-op median (s) | no-op min (s) | raw no-op (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {r.wall:.2f} | {r.step_sum:.2f} | {r.raw:.2f} | {over:+.1%} | {own:.1%} "
        f"| {noop:.3f} | {min(r.noops):.3f} | 0 |",
    ]
    raws = [sum(round_.values()) for round_ in r.raws]
    walls = {"buildgraph": r.walls, "raw": raws}
    cpu = [
        "| peer | cold wall (s) | user CPU (s) | system CPU (s) | runs, wall (s) "
        "| runs, system CPU (s) |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {label} | {statistics.median(walls[peer]):.2f} | {r.cpu_median(peer, 0):.2f} "
          f"| {r.cpu_median(peer, 1):.2f} | {min(walls[peer]):.2f}-{max(walls[peer]):.2f} "
          f"| {min(t[1] for t in r.cpu[peer]):.2f}-{max(t[1] for t in r.cpu[peer]):.2f} |"
          for peer, label in (("buildgraph", "`doit image-metal image-aws`"),
                              ("raw", "raw tools"))),
    ]  # fmt: skip
    users = {peer: r.cpu_median(peer, 0) for peer in walls}
    files = [
        "| output | apparent | allocated, buildgraph | allocated, raw |",
        "|---|---:|---:|---:|",
        *(f"| `{name}` | {size(bg.apparent)} | {size(bg.allocated)} | {size(raw.allocated)} |"
          for name, (bg, raw) in space.files.items()),
    ]  # fmt: skip
    dirs = [
        "| where | apparent | allocated |",
        "|---|---:|---:|",
        f"| the cache, all of it | {size(space.cache.apparent)} | {size(space.cache.allocated)} |",
        f"| of which `steps/` (package images, Go build cache; a copy of the seed's) "
        f"| {size(space.steps.apparent)} | {size(space.steps.allocated)} |",
        f"| added to the cache by the cold `doit image-metal image-aws` "
        f"| {size(space.added.apparent)} | {size(space.added.allocated)} |",
        f"| `_out/` (all of it, the upstream assets too) "
        f"| {size(space.out.apparent)} | {size(space.out.allocated)} |",
        f"| the cache and `_out/` together, a hard link counted once "
        f"| {size(space.both.apparent)} | {size(space.both.allocated)} |",
        f"| the raw peer's directory | {size(space.raw.apparent)} | {size(space.raw.allocated)} |",
    ]
    aws_disk, aws_raw = space.files["disks/aws-amd64.raw"]
    differ = [t for t in NODES if t not in r.same]
    verdicts = [
        f"- cold: `doit image-metal image-aws` {r.wall:.2f} s against the raw tools' "
        f"{r.raw:.2f} s, {over:+.1%}. Runs: buildgraph {min(r.walls):.2f}-{max(r.walls):.2f} s,"
        f" raw tools {min(raws):.2f}-{max(raws):.2f} s. Time outside any node (start-up, "
        f"planning, doit): {r.outside:.2f} s, {own:.1%} of the wall; the rest of the gap is "
        f"in the nodes, {r.step_sum - r.raw:+.2f} s against the raw scripts.",
        f"- CPU: user {users['buildgraph']:.2f} s against the raw tools' {users['raw']:.2f} s, "
        f"{(users['buildgraph'] - users['raw']) / users['raw']:+.1%}; system "
        f"{r.cpu_median('buildgraph', 1):.2f} s against {r.cpu_median('raw', 1):.2f} s "
        "(medians; the doit process or the raw scripts and everything they ran).",
        "- hashing the outputs into the cache: the engine's file digest (xxh3-128 over every "
        "byte, holes hashed as zeros without being read, as `Store.put_file` runs it on each "
        "output), timed alone "
        f"after the cold runs, medians of {repeat}: "
        + ", ".join(f"`{name}` {d.fresh:.2f} s ({d.fresh_sys:.2f} s of it system CPU) on a "
                    "fresh sparse copy (its holes not in the page cache yet, as a new "
                    f"output's), {d.again:.2f} s ({d.again_sys:.2f} s) read again"
                    for name, d in r.digests.items())
        + ".",
        "- per profile, its disk and image nodes together: "
        + ", ".join(f"{p} {r.profile(r.steps, p):.2f} s against the raw scripts' "
                    f"{r.profile(r.raws, p):.2f} s" for p in PROFILES)
        + " (medians of the runs' sums).",
        f"- no-op: median {noop:.3f} s, min {min(r.noops):.3f} s, against the raw script's "
        "0 s: its no-op is not running it.",
        f"- disk space: `disks/aws-amd64.raw` is {size(aws_disk.apparent)} apparent and "
        f"{size(aws_disk.allocated)} allocated "
        f"({aws_disk.allocated / aws_disk.apparent:.2%}); the raw peer's, placed by "
        f"`dd conv=sparse` (which leaves a hole only for a whole zero 1 MiB block), "
        f"{size(aws_raw.allocated)}. The cold build added "
        f"{size(space.added.allocated)} to the cache for {size(space.added.apparent)} apparent. "
        "`_out/`'s files are hard links to the cache's objects: together the two take "
        f"{size(space.both.allocated - space.cache.allocated)} more than the cache alone.",
        "- outputs: "
        + (f"the same bytes from both peers for {', '.join(r.same)}"
           if r.same else "no output has the same bytes in both peers")
        + (f"; {', '.join(differ)} differ" if differ else "")
        + ".",
    ]  # fmt: skip
    command = " ".join(["python", "bench/disk.py", *argv])
    return "\n".join([
        f"Command: `{command}`",
        "",
        f"Machine: {where}.",
        "",
        f"{repeat} cold run{'s' if repeat > 1 else ''} of each peer, alternating, raw first, "
        "medians, `PLATFORM=linux/amd64`. Before every cold run, the same untimed set-up: a "
        "fresh cache (the seed's `steps/`: package images, the Go build cache), no disk of an "
        "earlier run, and `doit iso cmdline-aws`, so the kernel, initramfs, GRUB package and "
        "both command lines are cached and in `_out/`. Cold: `doit image-metal image-aws` "
        "(builds disk-metal, image-metal, disk-aws, image-aws) against one `sh` script per "
        "node running the same tools on the same inputs from `_out/`. A node's buildgraph "
        "seconds include its own engine work (scratch directory, inputs linked in, outputs "
        "hashed into the cache, links into `_out/`); a raw script's, its `sh`. Over raw = "
        "(doit wall - raw tools) / raw tools; engine's own share = (doit wall - its nodes) / "
        "doit wall. CPU: of the doit process or the scripts, and of everything they ran. "
        "No-op: the same doit again, after each cold one. Disk space: after the last cold "
        "build, beside an untimed run of the raw scripts; allocated = `st_blocks` x 512, "
        "apparent = `st_size`.",
        "",
        *rows,
        "",
        *summary,
        "",
        *cpu,
        "",
        *files,
        "",
        *dirs,
        "",
        *verdicts,
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=3, help="cold runs of each peer, and no-ops")
    parser.add_argument("--write", action="store_true", help="put the results in BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    with exclusive():
        DISK.mkdir(exist_ok=True)
        engine = revision("buildgraph", "targets", "init")
        where = f"{host()}, {tool_versions()}, buildgraph at {engine}"
        clone_checkout(CLONE)
        say(f"warm-up build into {SEED} (downloads the package images the first time)")
        doit(SEED, PLATFORM, targets=PREBUILD, clone=CLONE)
        load = os.getloadavg()[0]
        result = measure(args.repeat)
    where += f"; 1-minute load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    argv = argv if argv is not None else sys.argv[1:]
    section = report(result, argv, where, args.repeat)
    print(section)
    if args.write:
        write_section(*MARKERS, section)


if __name__ == "__main__":
    main()
