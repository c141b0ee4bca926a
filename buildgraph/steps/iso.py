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
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..engine.step import Role, StepContext, clean_env, step
from . import check_epoch
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

MARKER = "boot/grub/buildgraph.marker"
MODULES = {
    BIOS: ["biosdisk", "iso9660", "part_msdos", "part_gpt"],
    "x86_64-efi": ["iso9660", "fat", "part_msdos", "part_gpt", "efi_gop"],
    "arm64-efi": ["iso9660", "fat", "part_msdos", "part_gpt"],
}


def _check(params: Mapping[str, Any]) -> None:
    check_epoch(params)
    check_firmware(params.get("firmware"))
    check_volume(params)


def check_volume(params: Mapping[str, Any]) -> None:
    if not isinstance(params.get("volume"), str) or len(params["volume"]) > 32:
        raise ValueError("an ISO needs params.volume, a volume id of at most 32 bytes")


def xorriso_base(out: Path, volume: str, epoch: int) -> list[str]:
    """xorriso's mkisofs arguments every ISO here starts with: Rock Ridge and Joliet
    names, the volume id, every date ``epoch``'s."""
    date = time.strftime("%Y%m%d%H%M%S00", time.gmtime(epoch))
    return ["xorriso", "-as", "mkisofs", "-o", str(out), "-r", "-J", "-V", volume,
            "--modification-date=" + date, "-c", "boot/boot.cat"]  # fmt: skip


def pin_times(tree: Path, epoch: int) -> None:
    for path in [tree, *tree.rglob("*")]:
        os.utime(path, (epoch, epoch), follow_symlinks=False)


@step(
    "iso",
    version=4,
    tools=("grub-mkimage", "mkfs.vfat", "mmd", "mcopy", "xorriso"),
    check=_check,
    inputs=[Role("kernel"), Role("initramfs"), Role("iso-cmdline"), Grub.ROLE],
)
def iso(ctx: StepContext) -> None:
    """Build the ISO tree, the GRUB images and the ESP, then pack them with xorriso."""
    assert ctx.arch is not None
    (out,) = ctx.outputs
    epoch = int(ctx.params["epoch"])
    platforms = ctx.params["firmware"]
    work = ctx.out_dir.parent
    env = clean_env(SOURCE_DATE_EPOCH=str(epoch))

    grub = Grub(ctx, work, env)
    tree = work / "iso"
    (tree / "boot" / "grub").mkdir(parents=True)
    shutil.copyfile(ctx.input("kernel"), tree / "boot" / "vmlinuz")
    shutil.copyfile(ctx.input("initramfs"), tree / "boot" / "initramfs.xz")
    (tree / MARKER).write_text(ctx.params["volume"] + "\n")
    (tree / "boot" / "grub" / "grub.cfg").write_text(grub_cfg(ctx.input("iso-cmdline").read_text()))
    early = work / "early.cfg"
    early.write_text(early_config(f"--file /{MARKER}", "/boot/grub"))

    xorriso = xorriso_base(ctx.output(out), ctx.params["volume"], epoch)
    if BIOS in platforms:
        bios = tree / "boot" / "grub" / "bios.img"
        grub.mkimage(BIOS, "i386-pc-eltorito", early, "/boot/grub", MODULES[BIOS], bios)
        xorriso += ["-b", "boot/grub/bios.img", "-no-emul-boot", "-boot-load-size", "4",
                    "-boot-info-table", "--grub2-boot-info",
                    "--grub2-mbr", str(grub.modules(BIOS) / "boot_hybrid.img")]  # fmt: skip
    efi = [p for p in platforms if p in EFI_LOADER]
    if efi:
        loaders = []
        for platform in efi:
            loader = work / EFI_LOADER[platform]
            grub.mkimage(platform, platform, early, "/boot/grub", MODULES[platform], loader)
            loaders.append(loader)
        size_kib = sum(p.stat().st_size for p in loaders) // 1024 + 512
        make_esp(ctx, tree / "boot" / "efi.img", esp_loaders(loaders), env, epoch, size_kib,
                 volume_id="0xb0071500", label="EFIBOOT")  # fmt: skip
        if BIOS in platforms:
            xorriso.append("-eltorito-alt-boot")
        xorriso += ["-e", "boot/efi.img", "-no-emul-boot", "-efi-boot-part", "--efi-boot-image"]
    pin_times(tree, epoch)
    ctx.run([*xorriso, str(tree)], env=env)
