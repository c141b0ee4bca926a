"""``disk``: a bootable GPT disk image (raw), built as a file without root or mounts.

The layout is Talos': an EFI system partition with GRUB for each EFI firmware, a BIOS
boot partition holding GRUB's core.img when params.firmware has ``i386-pc``, BOOT
(ext4) with the kernel, initramfs and grub.cfg, and META holding params.meta (META
words, formats/meta.py). An overlay (the ``overlay`` need) adds files to BOOT and may
set the disk size. Each filesystem is
made in its own file (mkfs.vfat --invariant and mtools; mke2fs -d under a fake clock,
then debugfs pins owners and times), sgdisk writes the partition table with GUIDs
derived from the labels, and the filesystems are copied to their offsets hole by hole,
so an 8 GiB image costs what it holds.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ..engine import sparse
from ..engine.errors import StepFailedError
from ..engine.step import ParamError, Role, StepContext, clean_env, step
from ..formats import biosboot, meta
from . import check_epoch, check_types
from .grub import (
    BIOS,
    EFI_LOADER,
    Grub,
    check_firmware,
    early_config,
    esp_loaders,
    grub_cfg,
    make_esp,
)
from .overlay import Overlay
from .overlay import load as load_overlay

MIB = 1 << 20
SECTOR = 512
FIRST_LBA = MIB // SECTOR
GPT_TAIL = 33 * SECTOR  # the backup partition entries and header
NAMESPACE = uuid.UUID("6b2d7f1e-5c4a-4f0e-9b8d-62756c647068")
MODULES = {
    BIOS: ["biosdisk", "part_gpt", "ext2", "search_fs_uuid"],
    "x86_64-efi": ["part_gpt", "ext2", "fat", "search_fs_uuid", "efi_gop"],
    "arm64-efi": ["part_gpt", "ext2", "fat", "search_fs_uuid"],
}
_SIZE = re.compile(r"^([0-9]+)\s*(B|KiB|MiB|GiB|TiB)?$")
_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": MIB, "GiB": 1 << 30, "TiB": 1 << 40}


class Partition(NamedTuple):
    label: str
    type: str
    size: int


EFI = Partition("EFI", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", 100 * MIB)
BIOS_BOOT = Partition("BIOS", "21686148-6449-6E6F-744E-656564454649", MIB)
BOOT = Partition("BOOT", "0FC63DAF-8483-4772-8E79-3D69D8477DE4", 1000 * MIB)
META = Partition("META", "0FC63DAF-8483-4772-8E79-3D69D8477DE4", MIB)


def guid(label: str) -> str:
    """A GUID for ``label``, the same in every build."""
    return str(uuid.uuid5(NAMESPACE, label)).upper()


def parse_size(value: object) -> int:
    """A disk size: bytes, or a number with B, KiB, MiB, GiB or TiB."""
    found = _SIZE.match(str(value).strip())
    if found is None:
        raise ValueError(f"disk size {value!r}: give bytes or a number with KiB, MiB or GiB")
    return int(found.group(1)) * _UNITS[found.group(2)]


def layout(firmware: list[str]) -> list[Partition]:
    """The partitions of a disk booting with ``firmware``, in disk order."""
    bios = [BIOS_BOOT] if BIOS in firmware else []
    return [EFI, *bios, BOOT, META]


def minimum_size(firmware: list[str]) -> int:
    return FIRST_LBA * SECTOR + sum(p.size for p in layout(firmware)) + GPT_TAIL


def _check(params: Mapping[str, Any]) -> None:
    check_epoch(params)
    check_firmware(params.get("firmware"))
    check_types(params, texts=("meta", "overlay_name", "overlay_options"))
    size = params.get("size")
    if isinstance(size, bool) or not isinstance(size, (int, str)):
        raise ParamError("size", f"params.size must be a size like 8GiB or bytes, not {size!r}")
    if "${" not in str(size):
        try:
            check_size(size, params["firmware"])
        except ValueError as err:
            raise ParamError("size", str(err)) from None


def check_size(value: object, firmware: list[str]) -> int:
    """The size in bytes; ValueError when it is malformed or too small for the partitions."""
    size = parse_size(value)
    if size % MIB:
        raise ValueError(f"disk size {value!r} is not a whole number of MiB")
    needed = minimum_size(firmware)
    if size < needed:
        raise ValueError(
            f"disk size {value!r} ({size} bytes) is too small for the partitions,"
            f" which need {-(-needed // MIB)} MiB"
        )
    return size


@step(
    "disk",
    version=2,
    tools=("grub-mkimage", "mkfs.vfat", "mmd", "mcopy", "mke2fs", "debugfs", "sgdisk"),
    resources=("disk",),
    check=_check,
    inputs=[Role("kernel"), Role("initramfs"), Role("cmdline-%"),
            Role(Grub.ROLE.name, optional=True), Role("overlay", optional=True),
            Role("uki-%", optional=True), Role("secureboot-enroll", optional=True)],
)
def disk(ctx: StepContext) -> None:
    """Make the filesystems and boot loaders, partition the disk and fill it in.

    With a signed UKI (the ``uki-%`` need, SECUREBOOT=true) the ESP holds the UKI as
    the firmware's loader and the enrollment files, there is no GRUB and no BIOS boot
    partition (a BIOS path would go around Secure Boot), and BOOT holds only an
    overlay's files."""
    (out,) = ctx.outputs
    epoch = int(ctx.params["epoch"])
    work = ctx.out_dir.parent
    env = clean_env(SOURCE_DATE_EPOCH=str(epoch), E2FSPROGS_FAKE_TIME=str(epoch))
    boot_uuid = guid("BOOT-filesystem").lower()
    early = work / "early.cfg"
    uki = ctx.optional_input("uki-%")
    if uki is None:
        early.write_text(early_config(f"--fs-uuid {boot_uuid}", "/grub"))
        firmware = ctx.params["firmware"]
        grub = Grub(ctx, work, env)
        loaders = []
        for platform in (p for p in firmware if p in EFI_LOADER):
            loader = work / EFI_LOADER[platform]
            grub.mkimage(platform, platform, early, "/grub", MODULES[platform], loader)
            loaders.append(loader)
        files = esp_loaders(loaders)
    else:
        from .secureboot import esp_files

        assert ctx.arch is not None
        firmware = [p for p in ctx.params["firmware"] if p != BIOS]
        files = esp_files(uki, ctx.input("secureboot-enroll"), work, ctx.arch)
    esp = work / "efi.img"
    make_esp(ctx, esp, files, env, epoch, EFI.size // 1024,
             volume_id=guid("EFI-filesystem")[:8], label="EFI")  # fmt: skip

    overlay_tar = ctx.optional_input("overlay")
    overlay = None
    size = ctx.params["size"]
    if overlay_tar is not None:
        overlay = load_overlay(overlay_tar, ctx.params.get("overlay_name", ""),
                               ctx.params.get("overlay_options", ""))  # fmt: skip
        size = overlay.disk_size or size
    try:
        size_bytes = check_size(size, firmware)
    except ValueError as err:
        raise StepFailedError(str(err)) from None
    boot = work / "boot.img"
    _boot_filesystem(ctx, work / "boot", boot, boot_uuid, env, epoch,
                     overlay and (overlay_tar, overlay), grub=uki is None)  # fmt: skip
    values = meta.parse_words(shlex.split(ctx.params.get("meta", "")))

    path = ctx.output(out)
    with open(path, "wb") as f:
        os.truncate(f.fileno(), size_bytes)
    offsets = _partition(ctx, path, layout(firmware), env)
    with open(path, "r+b") as f:
        sparse.copy_into(esp, f.fileno(), offsets["EFI"])
        sparse.copy_into(boot, f.fileno(), offsets["BOOT"])
        sparse.write_into(meta.encode_partition(values, META.size), f.fileno(), offsets["META"])
        if BIOS in firmware:
            _install_bios(grub, early, f, offsets["BIOS"])


def _boot_filesystem(
    ctx: StepContext,
    tree: Path,
    image: Path,
    fs_uuid: str,
    env: dict[str, str],
    epoch: int,
    overlay: tuple[Path, Overlay] | None = None,
    grub: bool = True,
) -> None:
    """BOOT: A/vmlinuz, A/initramfs.xz and grub/grub.cfg (when GRUB boots the disk) in
    an ext4 made from a tree, with an overlay's boot files and its options
    (overlay/options.yaml)."""
    tree.mkdir()
    if overlay is not None:
        _overlay_files(tree, *overlay)
    if grub:
        (tree / "A").mkdir(exist_ok=True)
        (tree / "grub").mkdir(exist_ok=True)
        shutil.copyfile(ctx.input("kernel"), tree / "A" / "vmlinuz")
        shutil.copyfile(ctx.input("initramfs"), tree / "A" / "initramfs.xz")
        cmdline = ctx.input("cmdline-%").read_text()
        (tree / "grub" / "grub.cfg").write_text(grub_cfg(cmdline, "/A"))
    paths = sorted(tree.rglob("*"))
    for p in [tree, *paths]:
        os.utime(p, (epoch, epoch))
    ctx.run(["mke2fs", "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-L", "BOOT",
             "-U", fs_uuid, "-E", f"hash_seed={guid('BOOT-hash')},root_owner=0:0",
             "-d", str(tree), str(image), f"{BOOT.size // 1024}k"], env=env)  # fmt: skip
    script = image.with_suffix(".debugfs")
    lines = []
    for p in ["", "lost+found", *(q.relative_to(tree).as_posix() for q in paths)]:
        for field in ("uid", "gid"):
            lines.append(f"sif /{p} {field} 0")
        for field in ("atime", "mtime", "ctime", "crtime"):
            lines.append(f"sif /{p} {field} @{epoch}")
    script.write_text("\n".join(lines) + "\n")
    ctx.run(["debugfs", "-w", "-f", str(script), str(image)], env=env)


def _overlay_files(tree: Path, tar_path: Path, overlay: Overlay) -> None:
    import tarfile

    import yaml

    with tarfile.open(tar_path) as tar:
        for name, member in sorted(overlay.boot.items()):
            parts = Path(name).parts
            if not parts or ".." in parts or Path(name).is_absolute():
                raise StepFailedError(f"overlay {overlay.name!r}: bad boot file name {name!r}")
            if parts[0] in ("A", "grub"):
                raise StepFailedError(
                    f"overlay {overlay.name!r}: boot/{name} would replace the OS's own files",
                    hint="an overlay's boot files may not be under A/ or grub/",
                )
            dest = tree / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src:
                dest.write_bytes(src.read())
            dest.chmod(0o644)
    options = tree / "overlay" / "options.yaml"
    options.parent.mkdir(exist_ok=True)
    record = {"name": overlay.name, "options": overlay.options}
    options.write_text(yaml.safe_dump(record, sort_keys=True))


def _partition(
    ctx: StepContext, path: Path, partitions: list[Partition], env: dict[str, str]
) -> dict[str, int]:
    """Write the GPT; the byte offset of each partition by label."""
    argv = ["sgdisk", "--clear", f"--disk-guid={guid('disk')}"]
    offsets = {}
    lba = FIRST_LBA
    for number, part in enumerate(partitions, start=1):
        last = lba + part.size // SECTOR - 1
        argv += [f"--new={number}:{lba}:{last}", f"--typecode={number}:{part.type}",
                 f"--change-name={number}:{part.label}",
                 f"--partition-guid={number}:{guid(part.label)}"]  # fmt: skip
        offsets[part.label] = lba * SECTOR
        lba = last + 1
    ctx.run([*argv, str(path)], env=env)
    return offsets


def _install_bios(grub: Grub, early: Path, disk: Any, offset: int) -> None:
    """GRUB's core.img in the BIOS boot partition, its boot code in the MBR."""
    core_path = grub.root / "core.img"
    grub.mkimage(BIOS, "i386-pc", early, "/grub", MODULES[BIOS], core_path)
    lba = offset // SECTOR
    core = biosboot.core_image(core_path.read_bytes(), lba)
    if len(core) > BIOS_BOOT.size:
        raise StepFailedError(f"GRUB's core.img ({len(core)} bytes) overflows the BIOS partition")
    boot_img = (grub.modules(BIOS) / "boot.img").read_bytes()
    disk.seek(0)
    mbr = disk.read(SECTOR)
    disk.seek(0)
    disk.write(biosboot.boot_sector(boot_img, mbr, lba))
    disk.seek(offset)
    disk.write(core)
