"""``iso``: a hybrid ISO that boots the kernel, initramfs and command line with GRUB.

grub-mkrescue is not byte-reproducible, so the pieces are made one by one: a GRUB core
image per firmware (grub-mkimage, with an embedded config that finds the ISO by a marker
file and reads its grub.cfg), an EFI system partition image (mkfs.vfat --invariant plus
mtools), and the ISO itself (xorriso, every date taken from params.epoch). The GRUB
modules come from the grub package image (PKG_GRUB), not from the host.

params.firmware lists the GRUB platforms to boot from (per arch in targets/):
``i386-pc`` (BIOS, El Torito), ``x86_64-efi``, ``arm64-efi``.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import StepFailedError
from . import StepContext, check_epoch, clean_env, step

MARKER = "boot/grub/buildgraph.marker"
EFI_LOADER = {"x86_64-efi": "BOOTX64.EFI", "arm64-efi": "BOOTAA64.EFI"}
BIOS = "i386-pc"
MODULES = {
    BIOS: ["biosdisk", "iso9660", "part_msdos", "part_gpt"],
    "x86_64-efi": ["iso9660", "fat", "part_msdos", "part_gpt", "efi_gop"],
    "arm64-efi": ["iso9660", "fat", "part_msdos", "part_gpt"],
}
COMMON_MODULES = ["normal", "configfile", "search", "search_fs_file", "linux", "boot", "echo"]
EARLY_CONFIG = f"""search --no-floppy --file --set=root /{MARKER}
set prefix=($root)/boot/grub
configfile $prefix/grub.cfg
"""
_PLAIN = re.compile(r"[A-Za-z0-9._,=:/+@%-]*")


def _check(params: Mapping[str, Any]) -> None:
    check_epoch(params)
    firmware = params.get("firmware")
    if not isinstance(firmware, list) or not firmware:
        raise ValueError("the iso step needs params.firmware: the GRUB platforms to boot from")
    unknown = [p for p in firmware if p not in MODULES]
    if unknown:
        raise ValueError(
            f"params.firmware: unknown GRUB platform {unknown[0]!r};"
            f" known: {', '.join(sorted(MODULES))}"
        )
    if not isinstance(params.get("volume"), str) or len(params["volume"]) > 32:
        raise ValueError("the iso step needs params.volume, a volume id of at most 32 bytes")


def grub_quote(arg: str) -> str:
    """One kernel argument as a GRUB word: kept plain where it can be, else single-quoted."""
    if _PLAIN.fullmatch(arg):
        return arg
    return "'" + arg.replace("'", "'\\''") + "'"


def grub_cfg(cmdline: str) -> str:
    args = " ".join(grub_quote(arg) for arg in cmdline.split())
    return (
        "set timeout=0\n"
        f"linux /boot/vmlinuz {args}\n"
        "initrd /boot/initramfs.xz\n"
        "boot\n"
    )


def _iso_date(epoch: int) -> str:
    return time.strftime("%Y%m%d%H%M%S00", time.gmtime(epoch))


@step(
    "iso",
    version=3,
    tools=("grub-mkimage", "mkfs.vfat", "mmd", "mcopy", "xorriso"),
    check=_check,
)
def iso(ctx: StepContext) -> None:
    """Build the ISO tree, the GRUB images and the ESP, then pack them with xorriso."""
    assert ctx.arch is not None
    (out,) = ctx.outputs
    epoch = int(ctx.params["epoch"])
    platforms = ctx.params["firmware"]
    work = ctx.out_dir.parent
    env = clean_env(SOURCE_DATE_EPOCH=str(epoch))

    grub = work / "grub"
    with tarfile.open(ctx.input("pkg-grub")) as tar:
        tar.extractall(grub, filter="tar")
    tree = work / "iso"
    (tree / "boot" / "grub").mkdir(parents=True)
    shutil.copyfile(ctx.input("kernel"), tree / "boot" / "vmlinuz")
    shutil.copyfile(ctx.input("initramfs"), tree / "boot" / "initramfs.xz")
    (tree / MARKER).write_text(ctx.params["volume"] + "\n")
    (tree / "boot" / "grub" / "grub.cfg").write_text(grub_cfg(ctx.input("cmdline").read_text()))
    early = work / "early.cfg"
    early.write_text(EARLY_CONFIG)

    def modules_dir(platform: str) -> Path:
        modules = grub / "usr" / "lib" / "grub" / platform
        outside = not modules.resolve().is_relative_to(grub.resolve())
        if outside or any(p.is_symlink() for p in modules.glob("*")):
            raise StepFailedError(
                f"usr/lib/grub/{platform} of the grub package holds symlinks",
                hint="PKG_GRUB must carry the GRUB modules themselves",
            )
        if not modules.is_dir():
            raise StepFailedError(
                f"the grub package has no usr/lib/grub/{platform}",
                hint="PKG_GRUB must carry the GRUB modules of every platform in params.firmware",
            )
        return modules

    def mkimage(platform: str, fmt: str, output: Path) -> None:
        modules = modules_dir(platform)
        ctx.run(["grub-mkimage", "-O", fmt, "-d", str(modules), "-p", "/boot/grub",
                 "-c", str(early), "-o", str(output), *COMMON_MODULES, *MODULES[platform]],
                env=env)  # fmt: skip

    xorriso = ["xorriso", "-as", "mkisofs", "-o", str(ctx.output(out)), "-r", "-J",
               "-V", ctx.params["volume"], "--modification-date=" + _iso_date(epoch),
               "-c", "boot/boot.cat"]  # fmt: skip
    if BIOS in platforms:
        mkimage(BIOS, "i386-pc-eltorito", tree / "boot" / "grub" / "bios.img")
        hybrid = modules_dir(BIOS) / "boot_hybrid.img"
        xorriso += ["-b", "boot/grub/bios.img", "-no-emul-boot", "-boot-load-size", "4",
                    "-boot-info-table", "--grub2-boot-info",
                    "--grub2-mbr", str(hybrid)]  # fmt: skip
    efi = [p for p in platforms if p in EFI_LOADER]
    if efi:
        esp = tree / "boot" / "efi.img"
        loaders = []
        for platform in efi:
            loader = work / EFI_LOADER[platform]
            mkimage(platform, platform, loader)
            loaders.append(loader)
        size_kib = sum(p.stat().st_size for p in loaders) // 1024 + 512
        ctx.run(["mkfs.vfat", "--invariant", "-i", "0xb0071500", "-n", "EFIBOOT",
                 "-C", str(esp), str(size_kib)], env=env)  # fmt: skip
        ctx.run(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT"], env=env)
        for loader in loaders:
            os.utime(loader, (epoch, epoch))
            ctx.run(["mcopy", "-m", "-i", str(esp), str(loader), f"::/EFI/BOOT/{loader.name}"],
                    env=env)  # fmt: skip
        if BIOS in platforms:
            xorriso.append("-eltorito-alt-boot")
        xorriso += ["-e", "boot/efi.img", "-no-emul-boot", "-efi-boot-part", "--efi-boot-image"]
    for path in [tree, *tree.rglob("*")]:
        os.utime(path, (epoch, epoch), follow_symlinks=False)
    ctx.run([*xorriso, str(tree)], env=env)

