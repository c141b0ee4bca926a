"""The installer program: write the OS onto a disk image file, laid out as image-metal.

Why it exists: the ``installer`` OCI image must be able to install the OS it carries
without the build graph (issue 5). This program runs the graph's own ``disk`` step on
the boot assets the image holds under ``ROOT/usr/install/<arch>/``, so the disk it writes
is byte for byte the ``_out/disks/metal-<arch>.raw`` that ``doit image-metal`` builds from
the same inputs and tool versions. It ships as a zip application (``installer.pyz``, step
``pyz``) holding only itself and the stdlib-only modules the disk step imports: no
pyyaml, networkx, xxhash, structlog or doit in the image.

    python3 installer.pyz --root ROOT --arch amd64 --disk metal.raw [--size 2GiB]

ROOT/usr/install/<arch>/ holds vmlinuz, initramfs.xz, cmdline (the kernel command
line), grub.tar (the GRUB package's files) and disk.json (the disk params the image was
built with: {"epoch": ..., "firmware": [...], "size": "1246MiB"}). A secure boot
installer image also holds uki.efi (the signed UKI) and secureboot-enroll.tar (the
enrollment files): then the disk boots the UKI, as ``doit image-metal SECUREBOOT=true``
builds it. The disk appears at
PATH complete or not at all: it is made in a scratch directory next to PATH and renamed
over it. Exit status: 0 done, 1 the disk step failed, 2 bad arguments or inputs or a
missing tool, 128+N killed by signal N.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import stat
import sys
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from buildgraph.engine.errors import BuildgraphError, StepFailedError
from buildgraph.engine.step import REGISTRY, StepContext
from buildgraph.steps import disk as _disk  # noqa: F401  (registers the disk step)

PROG = "installer"
ARCHES = ("amd64", "arm64")
INPUTS = {  # file under usr/install/<arch>/ -> the disk step input it stands for
    "vmlinuz": "kernel",
    "initramfs.xz": "initramfs",
    "cmdline": "cmdline-metal",
    "grub.tar": "pkg-grub",
}
SECUREBOOT_INPUTS = {"uki.efi": "uki-metal", "secureboot-enroll.tar": "secureboot-enroll"}
"""The files of a secure boot installer image, which boots them instead of GRUB."""
PARAMS = "disk.json"
PARAM_KEYS = ("epoch", "firmware", "size")
PACKAGES = {  # the disk step's tools -> Debian package (a test keeps it = buildgraph.tools')
    "debugfs": "e2fsprogs",
    "grub-mkimage": "grub-common",
    "mcopy": "mtools",
    "mke2fs": "e2fsprogs",
    "mkfs.vfat": "dosfstools",
    "mmd": "mtools",
    "sgdisk": "gdisk",
}


class UsageError(BuildgraphError):
    """Bad arguments or inputs: nothing was written."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    try:
        install(Path(args.root), args.arch, Path(args.disk), args.size)
    except BuildgraphError as err:
        print(f"{PROG}: {err.message}", file=sys.stderr)  # hints speak of the build
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was written to {args.disk}", file=sys.stderr)
        return 128 + signal.SIGINT
    print(f"{PROG}: wrote {args.disk}", file=sys.stderr)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python3 {PROG}.pyz",
        description="Write the OS onto a disk image file, laid out as image-metal.",
    )
    parser.add_argument(
        "--root",
        required=True,
        help="the installer image's filesystem, holding usr/install/<arch>/",
    )
    parser.add_argument("--arch", required=True, help=f"one of {', '.join(ARCHES)}")
    parser.add_argument(
        "--disk",
        required=True,
        metavar="PATH",
        help="the raw disk image file to write (replaced if it exists)",
    )
    parser.add_argument("--size", help="disk size, e.g. 2GiB (default: the size in disk.json)")
    return parser  # fmt: skip


def _exit_on_signal(signum: int, _frame: object) -> NoReturn:
    raise SystemExit(128 + signum)  # unwinds through install()'s cleanup


def install(root: Path, arch: str, dest: Path, size: str | None = None) -> None:
    """Write the metal disk of ``arch`` from the boot assets under ``root`` to ``dest``."""
    root, dest = root.absolute(), dest.absolute()  # the step runs its tools in its out dir
    if arch not in ARCHES:
        raise UsageError(f"unknown arch {arch!r}; known: {', '.join(ARCHES)}")
    assets, inputs = _assets(root, arch)
    params = _params(assets / PARAMS, size)
    disk_step = REGISTRY["disk"]
    tool_paths = _tools(disk_step.tools)
    _check_dest(dest)
    try:
        scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    except OSError as err:
        raise UsageError(f"cannot write in {dest.parent}: {err.strerror}") from None
    umask = os.umask(0o022)  # as the build runs steps: modes inside the disk follow it
    try:
        out_dir = scratch / "out"
        out_dir.mkdir()
        ctx = StepContext(
            params=params,
            arch=arch,
            root=root,
            sources=[],
            inputs={f"{label}:{arch}": {name: assets / name} for name, label in inputs.items()},
            out_dir=out_dir,
            outputs=("disk.raw",),
            tool_paths=tool_paths,
        )
        try:
            disk_step.run(ctx)
            _commit(out_dir / "disk.raw", dest, 0o666 & ~umask)
        except BuildgraphError as err:
            raise StepFailedError(f"the disk step failed: {err.message}", err.hint) from None
        except OSError as err:
            raise StepFailedError(f"writing {dest} failed: {err}") from None
        except Exception as err:
            raise StepFailedError(f"the disk step crashed: {type(err).__name__}: {err}") from err
    finally:
        os.umask(umask)
        shutil.rmtree(scratch, ignore_errors=True)


def _assets(root: Path, arch: str) -> tuple[Path, dict[str, str]]:
    """ROOT/usr/install/<arch>/, checked to hold every file the disk is made from, and
    those files (name -> the disk step input each stands for)."""
    if not root.is_dir():
        raise UsageError(f"--root {root}: no such directory")
    assets = root / "usr" / "install" / arch
    inputs = dict(INPUTS)
    if any((assets / name).exists() for name in SECUREBOOT_INPUTS):
        del inputs["grub.tar"]
        inputs.update(SECUREBOOT_INPUTS)
    for name in (*inputs, PARAMS):
        if not (assets / name).is_file():
            install = root / "usr" / "install"
            present = sorted(p.name for p in install.iterdir()) if install.is_dir() else []
            held = f"it holds the assets of {', '.join(present)}" if present else "it holds none"
            raise UsageError(
                f"{assets / name} is missing: {root} is no installer image with {arch}"
                f" boot assets ({held})"
            )
    for name, what in (
        ("grub.tar", "the GRUB package's files"),
        ("secureboot-enroll.tar", "the Secure Boot enrollment files"),
    ):
        if name in inputs and not tarfile.is_tarfile(assets / name):
            raise UsageError(f"{assets / name}: not a tar archive of {what}")
    return assets, inputs


def _params(path: Path, size: str | None) -> dict[str, Any]:
    """The disk params from disk.json, ``size`` overriding its size, validated."""
    try:
        params = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UsageError(f"{path}: not readable JSON: {err}") from None
    if not isinstance(params, dict):
        raise UsageError(f"{path}: not a JSON object with {', '.join(PARAM_KEYS)}")
    unknown = sorted(set(params) - set(PARAM_KEYS))
    missing = [key for key in PARAM_KEYS if key not in params]
    if unknown or missing:
        wrong = f"unknown key {unknown[0]!r}" if unknown else f"no {missing[0]!r}"
        raise UsageError(f"{path}: {wrong}; it holds {', '.join(PARAM_KEYS)}")
    _validate(params, str(path))
    if size is not None:
        params["size"] = size
        _validate(params, "--size")
    return params


def _validate(params: Mapping[str, Any], where: str) -> None:
    check = REGISTRY["disk"].check
    try:
        if "${" in json.dumps(params):
            raise ValueError("holds a ${variable}: give the values the image was built with")
        if check is not None:
            check(params)
    except ValueError as err:
        raise UsageError(f"{where}: {err}") from None


def _tools(tools: tuple[str, ...]) -> dict[str, str]:
    """Each tool's path; every missing one named with the Debian package to install."""
    found = {tool: shutil.which(tool) for tool in tools}
    missing = sorted(tool for tool, path in found.items() if path is None)
    if missing:
        packages = sorted({PACKAGES.get(tool, tool) for tool in missing})
        raise UsageError(
            f"missing tool{'s' if len(missing) > 1 else ''} {', '.join(missing)}:"
            f" install the Debian package{'s' if len(packages) > 1 else ''}"
            f" {' '.join(packages)} (apt-get install {' '.join(packages)})"
        )
    return {tool: path for tool, path in found.items() if path is not None}


def _check_dest(dest: Path) -> None:
    """PATH is a regular file or nothing, in an existing directory."""
    try:
        mode = os.lstat(dest).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        raise UsageError(f"--disk {dest}: exists and is not a regular file; give a disk image file")
    if not dest.parent.is_dir():
        raise UsageError(f"--disk {dest}: directory {dest.parent} does not exist")


def _commit(made: Path, dest: Path, mode: int) -> None:
    """Move the finished disk to ``dest`` in one rename, on disk before it is visible."""
    os.chmod(made, mode)
    with open(made, "rb") as f:
        os.fsync(f.fileno())
    os.replace(made, dest)
    directory = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


if __name__ == "__main__":
    sys.exit(main())
