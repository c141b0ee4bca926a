"""What the benchmarks in bench/ share: where they work, the lock that keeps two of them
from running at once (they would share CPUs and delete each other's work), how they
describe the machine, how they write their sections of BENCHMARKS.md, and the raw peer's
scripts more than one of them runs (the iso, disk and image steps' tools as ``sh``)."""

from __future__ import annotations

import fcntl
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
REPORT = REPO / "BENCHMARKS.md"
WORK = BENCH / "_work"
MIB = 1 << 20
CLEAN_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
"""The environment the benchmarks run tools in, as steps run theirs."""


@contextmanager
def exclusive() -> Iterator[None]:
    """Hold the lock on WORK for the whole benchmark; exit at once if another holds it."""
    WORK.mkdir(parents=True, exist_ok=True)
    with (WORK / "lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"another benchmark is running in {WORK}") from None
        yield


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sh(script: str) -> str:
    """Run ``script`` with ``sh -eu`` in CLEAN_ENV; its stdout."""
    return subprocess.run(
        ["sh", "-euc", script], capture_output=True, text=True, check=True, env=CLEAN_ENV
    ).stdout


def doit_path() -> str:
    beside = Path(sys.executable).with_name("doit")
    found = str(beside) if beside.exists() else shutil.which("doit")
    if found is None:
        raise SystemExit("doit is not installed next to this python nor on PATH")
    return found


def host() -> str:
    """CPUs, kernel and Python, e.g. ``2 CPUs (AMD EPYC), Linux 6.1, Python 3.11.7``."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def revision(*paths: str) -> str:
    """The commit measured, marked when ``paths`` (default buildgraph/) have local changes."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return "an unknown commit"
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", *(paths or ("buildgraph",))], capture_output=True
    )
    return head.stdout.strip() + (" with uncommitted changes" if dirty.stdout else "")


@dataclass
class ColdRounds:
    """Cold rounds of a build against its raw scripts: what every bench reports."""

    walls: list[float] = field(default_factory=list)
    """Per round, the build's wall seconds."""
    steps: list[dict[str, float]] = field(default_factory=list)
    """Per round, target -> the node's seconds."""
    raws: list[dict[str, float]] = field(default_factory=list)
    """Per round, target -> its raw script's seconds."""

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def step_sum(self) -> float:
        return statistics.median(sum(round_.values()) for round_ in self.steps)

    @property
    def raw_walls(self) -> list[float]:
        return [sum(round_.values()) for round_ in self.raws]

    @property
    def raw(self) -> float:
        return statistics.median(self.raw_walls)

    @property
    def outside(self) -> float:
        """Seconds of the build outside any node: start-up, planning, doit."""
        return statistics.median(
            wall - sum(round_.values()) for wall, round_ in zip(self.walls, self.steps, strict=True)
        )

    def node(self, target: str) -> float:
        return statistics.median(round_[target] for round_ in self.steps)

    def raw_node(self, target: str) -> float:
        return statistics.median(round_[target] for round_ in self.raws)

    def table(self, nodes: Sequence[str], label: str) -> list[str]:
        """Markdown rows: each node, their sum and the whole run, against the raw scripts."""
        rows = [f"| node | {label} (s) | raw (s) |", "|---|---:|---:|"]
        rows += [f"| {t} | {self.node(t):.2f} | {self.raw_node(t):.2f} |" for t in nodes]
        rows.append(f"| sum of steps | {self.step_sum:.2f} | {self.raw:.2f} |")
        rows.append(f"| whole run | {self.wall:.2f} | {self.raw:.2f} |")
        return rows


def write_section(begin: str, end: str, section: str) -> None:
    """Replace what lies between the markers ``begin`` and ``end`` in BENCHMARKS.md, or
    append the markers and the section when the file has no such markers yet."""
    block = f"{begin}\n{section}\n{end}"
    text = REPORT.read_text() if REPORT.exists() else "# Benchmarks\n\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    REPORT.write_text(text)


# -- the raw peer's scripts that more than one benchmark runs -------------------------
#
# Each is an ``sh -eu`` script running a step's tools, written from its node's params as
# the engine resolves them. ``paths`` names, by target (``pkg-grub``, ``kernel``,
# ``initramfs``, ...), the files a script reads and the one it writes: relative to the
# directory it runs in, or absolute. ``W`` is its scratch directory.


def _grub_mkimage(platform: str, fmt: str, prefix: str, output: str, modules: list[str]) -> str:
    from buildgraph.steps import grub

    modules = [*grub.COMMON_MODULES, *modules]
    return (f"grub-mkimage -O {fmt} -d W/grub/usr/lib/grub/{platform} -p {prefix}"
            f" -c W/early.cfg -o {output} {' '.join(modules)}")  # fmt: skip


def iso_script(params: Mapping[str, Any], paths: Mapping[str, str], cmdline: str) -> str:
    """The iso step's tools (grub-mkimage, mkfs.vfat, mmd, mcopy, xorriso) for an iso
    node's ``params``; ``paths``: ``pkg-grub``, ``kernel``, ``initramfs`` and ``iso``, the
    output; ``cmdline``: the command line its grub.cfg boots with (iso-cmdline's text)."""
    from buildgraph.steps import grub
    from buildgraph.steps import iso as step

    q = shlex.quote
    iso, volume = q(paths["iso"]), q(params["volume"])
    epoch = int(params["epoch"])
    platforms = params["firmware"]
    early = grub.early_config(f"--file /{step.MARKER}", "/boot/grub")
    lines = [
        f"export SOURCE_DATE_EPOCH={epoch}",
        f"rm -rf W {iso} && mkdir -p W/grub W/iso/boot/grub",
        f"tar -xf {q(paths['pkg-grub'])} -C W/grub",
        f"cp {q(paths['kernel'])} W/iso/boot/vmlinuz",
        f"cp {q(paths['initramfs'])} W/iso/boot/initramfs.xz",
        f"printf '%s\\n' {volume} > W/iso/{step.MARKER}",
        f"printf %s {q(grub.grub_cfg(cmdline))} > W/iso/boot/grub/grub.cfg",
        f"printf %s {q(early)} > W/early.cfg",
    ]

    def mkimage(platform: str, fmt: str, output: str) -> str:
        return _grub_mkimage(platform, fmt, "/boot/grub", output, step.MODULES[platform])

    date = time.strftime("%Y%m%d%H%M%S00", time.gmtime(epoch))
    xorriso = (f"xorriso -as mkisofs -o {iso} -r -J -V {volume}"
               f" --modification-date={date} -c boot/boot.cat")  # fmt: skip
    bios = grub.BIOS
    if bios in platforms:
        lines.append(mkimage(bios, "i386-pc-eltorito", "W/iso/boot/grub/bios.img"))
        xorriso += (" -b boot/grub/bios.img -no-emul-boot -boot-load-size 4"
                    " -boot-info-table --grub2-boot-info"
                    f" --grub2-mbr W/grub/usr/lib/grub/{bios}/boot_hybrid.img")  # fmt: skip
    efi = [p for p in platforms if p in grub.EFI_LOADER]
    if efi:
        loaders = [f"W/{grub.EFI_LOADER[p]}" for p in efi]
        lines += [mkimage(p, p, loader) for p, loader in zip(efi, loaders, strict=True)]
        lines += [
            f"size=$(( $(cat {' '.join(loaders)} | wc -c) / 1024 + 512 ))",
            "mkfs.vfat --invariant -i 0xb0071500 -n EFIBOOT -C W/iso/boot/efi.img $size",
            "mmd -i W/iso/boot/efi.img ::/EFI ::/EFI/BOOT",
            f"touch -d @{epoch} {' '.join(loaders)}",
            *(f"mcopy -m -i W/iso/boot/efi.img {loader} ::/EFI/BOOT/{Path(loader).name}"
              for loader in loaders),
        ]  # fmt: skip
        if bios in platforms:
            xorriso += " -eltorito-alt-boot"
        xorriso += " -e boot/efi.img -no-emul-boot -efi-boot-part --efi-boot-image"
    lines += [f"find W/iso -exec touch -h -d @{epoch} {{}} +", f"{xorriso} W/iso", "rm -rf W"]
    return "\n".join(lines)


def meta_file(words: str, path: Path) -> str:
    """Write the META partition's bytes for ``words`` (params.meta: ``KEY=VALUE`` words),
    as the disk step writes them, to ``path``; its path. Made before a timed run: the
    format is buildgraph's own (Talos' idea), with no tool to write it, so a script's
    author would make the file once and ``dd`` it into place."""
    from buildgraph.formats import meta
    from buildgraph.steps import disk as step

    values = dict(meta.parse_assignment(word) for word in shlex.split(words))
    path.write_bytes(meta.encode_partition(values, step.META.size))
    return str(path)


def disk_script(
    params: Mapping[str, Any], paths: Mapping[str, str], cmdline: str, meta: str
) -> str:
    """The disk step's tools for a disk node's ``params`` (no overlay): grub-mkimage,
    mkfs.vfat, mmd and mcopy for the EFI system partition; mke2fs -d and debugfs for BOOT;
    truncate and sgdisk for the disk; each filesystem placed with ``dd
    conv=sparse,notrunc``, META's bytes (``meta``, a file from ``meta_file``) with ``dd
    conv=notrunc``, GRUB's BIOS boot code and core.img with dd, as grub-bios-setup would.
    ``paths``: ``pkg-grub``, ``kernel``, ``initramfs`` and ``disk``, the output;
    ``cmdline``: the command line BOOT's grub.cfg boots with."""
    from buildgraph.steps import disk as step
    from buildgraph.steps import grub

    q = shlex.quote
    epoch, firmware = int(params["epoch"]), params["firmware"]
    disk = q(paths["disk"])
    boot_uuid = step.guid("BOOT-filesystem").lower()
    lines = [
        f"export SOURCE_DATE_EPOCH={epoch} E2FSPROGS_FAKE_TIME={epoch}",
        f"rm -rf W {disk} && mkdir -p W/grub W/boot/A W/boot/grub"
        f" {q(str(Path(paths['disk']).parent))}",
        f"tar -xf {q(paths['pkg-grub'])} -C W/grub",
        f"printf %s {q(grub.early_config(f'--fs-uuid {boot_uuid}', '/grub'))} > W/early.cfg",
    ]

    def mkimage(platform: str, fmt: str, output: str) -> str:
        return _grub_mkimage(platform, fmt, "/grub", output, step.MODULES[platform])

    # the EFI system partition
    efi = [p for p in firmware if p in grub.EFI_LOADER]
    loaders = [f"W/{grub.EFI_LOADER[p]}" for p in efi]
    lines += [mkimage(p, p, loader) for p, loader in zip(efi, loaders, strict=True)]
    lines += [
        f"mkfs.vfat --invariant -i {step.guid('EFI-filesystem')[:8]} -n EFI"
        f" -C W/efi.img {step.EFI.size // 1024}",
        "mmd -i W/efi.img ::/EFI ::/EFI/BOOT",
    ]
    for loader in loaders:
        lines.append(f"touch -d @{epoch} {loader}")
        lines.append(f"mcopy -m -i W/efi.img {loader} ::/EFI/BOOT/{Path(loader).name}")
    # BOOT: an ext4 made from a tree, owners and times pinned by debugfs
    files = sorted(["A", "A/vmlinuz", "A/initramfs.xz", "grub", "grub/grub.cfg"],
                   key=lambda p: p.split("/"))  # fmt: skip
    debugfs = "".join(
        f"sif /{p} {what}\n"
        for p in ["", "lost+found", *files]
        for what in ("uid 0", "gid 0", *(f"{t} @{epoch}" for t in
                                          ("atime", "mtime", "ctime", "crtime")))
    )  # fmt: skip
    lines += [
        f"install -m 644 {q(paths['kernel'])} W/boot/A/vmlinuz",
        f"install -m 644 {q(paths['initramfs'])} W/boot/A/initramfs.xz",
        f"printf %s {q(grub.grub_cfg(cmdline, '/A'))} > W/boot/grub/grub.cfg",
        f"find W/boot -exec touch -h -d @{epoch} {{}} +",
        "mke2fs -q -F -t ext4 -O ^has_journal -L BOOT"
        f" -U {boot_uuid} -E hash_seed={step.guid('BOOT-hash')},root_owner=0:0"
        f" -d W/boot W/boot.img {step.BOOT.size // 1024}k",
        f"printf %s {q(debugfs)} > W/boot.debugfs",
        "debugfs -w -f W/boot.debugfs W/boot.img",
    ]
    # the disk: its size, the GPT, then each filesystem copied to its offset, hole by hole
    sgdisk = ["sgdisk", "--clear", f"--disk-guid={step.guid('disk')}"]
    offsets = {}
    lba = step.FIRST_LBA
    for number, part in enumerate(step.layout(firmware), start=1):
        last = lba + part.size // step.SECTOR - 1
        sgdisk += [f"--new={number}:{lba}:{last}", f"--typecode={number}:{part.type}",
                   f"--change-name={number}:{part.label}",
                   f"--partition-guid={number}:{step.guid(part.label)}"]  # fmt: skip
        offsets[part.label] = lba * step.SECTOR
        lba = last + 1
    if any(offset % MIB for offset in offsets.values()):
        raise SystemExit(f"raw places partitions at whole MiB, not at {offsets}")
    lines += [
        f"truncate -s {step.parse_size(params['size'])} {disk}",
        shlex.join([*sgdisk, paths["disk"]]),
        *(f"dd if={image} of={disk} bs=1M seek={offsets[label] // MIB} conv={conv}"
          " status=none"
          for image, label, conv in (("W/efi.img", "EFI", "sparse,notrunc"),
                                     ("W/boot.img", "BOOT", "sparse,notrunc"),
                                     (q(meta), "META", "notrunc"))),
    ]  # fmt: skip
    if grub.BIOS in firmware:
        lines += _bios(mkimage(grub.BIOS, "i386-pc", "W/core.img"), disk, offsets["BIOS"])
    lines.append("rm -rf W")
    return "\n".join(lines)


def _bios(mkimage: str, disk: str, offset: int) -> list[str]:
    """GRUB's boot code in the MBR pointing at core.img in the BIOS boot partition, and
    core.img's block list pointing at the rest of itself: the bytes grub-bios-setup
    writes (buildgraph/formats/biosboot.py writes the same)."""
    lba = offset // 512

    def patch(at: int, data: bytes) -> str:
        octal = "".join(f"\\{byte:03o}" for byte in data)
        return f"printf '{octal}' | dd of={disk} bs=1 seek={at} conv=notrunc status=none"

    return [
        mkimage,
        f"dd if=W/grub/usr/lib/grub/i386-pc/boot.img of={disk} bs=440 count=1"
        " conv=notrunc status=none",  # boot code only: the partition table stays
        patch(0x5C, lba.to_bytes(8, "little")),  # the LBA of core.img
        patch(0x64, b"\xff"),  # boot from the drive the BIOS booted
        patch(0x66, b"\x90\x90"),  # keep the hard-disk drive number check
        f"dd if=W/core.img of={disk} bs=512 seek={lba} conv=notrunc status=none",
        patch(offset + 512 - 12, (lba + 1).to_bytes(8, "little")),  # the block list
    ]


def disk_image_scripts(
    params: Mapping[str, Mapping[str, Any]],
    out: Mapping[str, str],
    inputs: Path,
    profile: str,
    meta: str,
) -> dict[str, str]:
    """``disk-<profile>`` and ``image-<profile>`` -> its script (``disk_script``,
    ``image_script``), from a plan's ``params`` and ``out`` (target -> its params, its
    output's name): each writes its output under its name in the directory it runs in,
    the disk reads the kernel, initramfs, GRUB package and command line from ``inputs``
    (an ``_out/``), and META's bytes from ``meta`` (``meta_file``)."""
    disk, image = f"disk-{profile}", f"image-{profile}"
    paths = {target: str(inputs / out[target]) for target in ("pkg-grub", "kernel", "initramfs")}
    cmdline = (inputs / out[f"cmdline-{profile}"]).read_text()
    return {
        disk: disk_script(params[disk], {**paths, "disk": out[disk]}, cmdline, meta),
        image: image_script(params[image], out[disk], out[image]),
    }


def image_script(params: Mapping[str, Any], disk: str, image: str) -> str:
    """The image step's tool for an image node's ``params`` (a raw disk, zstd): ``zstd
    -T0 -<level>`` of ``disk`` into ``image``."""
    if params["format"] != "raw" or params["compression"] != ".zst":
        raise SystemExit(f"raw compresses a raw disk with zstd, not {params}")
    return f"zstd -T0 -{params['zstd_level']} -q -c {shlex.quote(disk)} > {shlex.quote(image)}"
