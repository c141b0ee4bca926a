"""GRUB pieces shared by the steps that boot with it (iso, disk).

The modules come from the grub package image (PKG_GRUB), never from the host, and
every image is made with grub-mkimage and an embedded early config, so the bytes
depend only on the package, the modules and the config.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from ..engine.errors import StepFailedError
from ..engine.step import Role, StepContext
from ..formats import untar

EFI_LOADER = {"x86_64-efi": "BOOTX64.EFI", "arm64-efi": "BOOTAA64.EFI"}
BIOS = "i386-pc"
PLATFORMS = (BIOS, *EFI_LOADER)
COMMON_MODULES = ["normal", "configfile", "search", "search_fs_file", "linux", "boot", "echo"]
_PLAIN = re.compile(r"[A-Za-z0-9._,=:/+@%-]*")


def check_firmware(firmware: object) -> None:
    """params.firmware: the GRUB platforms to boot from, each known."""
    if not isinstance(firmware, list) or not firmware:
        raise ValueError("params.firmware must list the GRUB platforms to boot from")
    unknown = [p for p in firmware if p not in PLATFORMS]
    if unknown:
        raise ValueError(
            f"params.firmware: unknown GRUB platform {unknown[0]!r};"
            f" known: {', '.join(sorted(PLATFORMS))}"
        )


def grub_quote(arg: str) -> str:
    """One kernel argument as a GRUB word: kept plain where it can be, else single-quoted."""
    if _PLAIN.fullmatch(arg):
        return arg
    return "'" + arg.replace("'", "'\\''") + "'"


def grub_cfg(cmdline: str, boot: str = "/boot") -> str:
    """A menu-less grub.cfg booting ``boot``/vmlinuz with ``cmdline``."""
    args = " ".join(grub_quote(arg) for arg in cmdline.split())
    return f"set timeout=0\nlinux {boot}/vmlinuz {args}\ninitrd {boot}/initramfs.xz\nboot\n"


def early_config(find: str, prefix: str) -> str:
    """The config built into a GRUB image: set root to what ``search <find>`` finds."""
    return (
        f"search --no-floppy --set=root {find}\n"
        f"set prefix=($root){prefix}\n"
        "configfile $prefix/grub.cfg\n"
    )


class Grub:
    """The grub package of one step run, unpacked, and grub-mkimage over its modules."""

    ROLE = Role("pkg-grub")
    """The input that holds the grub package's files, in the steps that boot with GRUB."""

    def __init__(self, ctx: StepContext, work: Path, env: dict[str, str]) -> None:
        self.ctx = ctx
        self.root = work / "grub"
        self.env = env
        untar.extract(ctx.input(self.ROLE.name), self.root)

    def modules(self, platform: str) -> Path:
        """usr/lib/grub/<platform> of the package: real files, inside the package."""
        modules = self.root / "usr" / "lib" / "grub" / platform
        outside = not modules.resolve().is_relative_to(self.root.resolve())
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

    def mkimage(
        self, platform: str, fmt: str, early: Path, prefix: str, modules: Sequence[str], out: Path
    ) -> None:
        self.ctx.run(["grub-mkimage", "-O", fmt, "-d", str(self.modules(platform)),
                      "-p", prefix, "-c", str(early), "-o", str(out),
                      *COMMON_MODULES, *modules], env=self.env)  # fmt: skip


def make_esp(
    ctx: StepContext,
    image: Path,
    files: Mapping[str, Path],
    env: dict[str, str],
    epoch: int,
    size_kib: int,
    volume_id: str,
    label: str,
) -> None:
    """A FAT EFI system partition holding ``files`` (path in the ESP -> file), byte-
    reproducible: a fixed volume id, every file's time pinned to ``epoch``."""
    ctx.run(["mkfs.vfat", "--invariant", "-i", volume_id, "-n", label,
             "-C", str(image), str(size_kib)], env=env)  # fmt: skip
    directories = sorted(
        {p for dest in files for p in PurePosixPath(dest).parents} - {PurePosixPath(".")}
    )
    ctx.run(["mmd", "-i", str(image), *(f"::/{d}" for d in directories)], env=env)
    staged = image.with_name(image.name + ".files")
    for dest, source in sorted(files.items()):
        copy = staged / dest  # mcopy -m takes the file's time: pin a copy's, not an input's
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, copy)
        os.utime(copy, (epoch, epoch))
        ctx.run(["mcopy", "-m", "-i", str(image), str(copy), f"::/{dest}"], env=env)


def esp_loaders(loaders: Sequence[Path]) -> dict[str, Path]:
    """GRUB's EFI images where firmware looks for them: EFI/BOOT/<name>."""
    return {f"EFI/BOOT/{loader.name}": loader for loader in loaders}
