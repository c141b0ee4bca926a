"""``rootfs``: the OS's root filesystem, a squashfs of the base package plus our files.

The base package (busybox-static) brings the programs; the step adds the applet links,
the empty mount points the init needs (params.dirs, ``path`` or ``path:mode``),
``/etc/os-release`` carrying the version, and the files under params.files (a directory in
the repo, also listed as the target's sources). Every mode is set here, from the
package or from the source's exec bit, never from the checkout or the umask; nothing is
written through a symlink the package brought, so an image cannot aim a write at the host.

Then, as Talos' installer customization does, the paths in params.rm (RM) are removed
and the files of the ``customization`` need (CUSTOMIZATION: a directory or an image,
flattened to a tar by the ``files`` step) are added on top: unpacked apart (the ``data``
filter: no link out of it, no device), then merged entry by entry, replacing what is in
the way (a symlink is replaced, never written through) and keeping the modes of the
directories the OS already has.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..engine.errors import StepFailedError
from ..engine.step import Role, StepContext, step
from ..formats import untar
from . import check_epoch


def _check(params: Mapping[str, Any]) -> None:
    check_epoch(params)
    if not isinstance(params.get("os_release"), dict):
        raise ValueError("the rootfs step needs params.os_release, a mapping")
    for name in ("applets", "dirs"):
        if not isinstance(params.get(name, []), list):
            raise ValueError(f"params.{name} of the rootfs step must be a list")
    for entry in params.get("dirs", []):
        path, _, mode = str(entry).partition(":")
        _relative("dirs", path)
        if mode and not all(c in "01234567" for c in mode):
            raise ValueError(f"params.dirs: {entry!r}: the mode after ':' must be octal")
    for applet in params.get("applets", []):
        if "/" in str(applet) or str(applet) in ("", ".", ".."):
            raise ValueError(f"params.applets: {applet!r} must be a plain program name")


def _relative(what: str, path: str) -> None:
    if not path or path.startswith("/") or ".." in Path(path).parts:
        raise ValueError(f"params.{what}: {path!r} must be a path inside the rootfs, no '..'")


def _target(tree: Path, relative: str) -> Path:
    """``tree/relative``, refusing a path whose parents include a symlink of the package."""
    path = tree
    for part in Path(relative).parts[:-1]:
        path = path / part
        if path.is_symlink():
            raise StepFailedError(
                f"the base package has a symlink at /{path.relative_to(tree)}, where the"
                f" rootfs step must write /{relative}",
                hint="make it a directory in the base package image",
            )
        path.mkdir(mode=0o755, exist_ok=True)
    target = tree / relative
    if not target.parent.resolve().is_relative_to(tree.resolve()):
        raise StepFailedError(f"/{relative} would be written outside the rootfs")
    if target.is_symlink():
        target.unlink()
    return target


@step(
    "rootfs",
    version=3,
    tools=("mksquashfs",),
    check=_check,
    inputs=[Role("pkg-base"), Role("customization", optional=True)],
)
def rootfs(ctx: StepContext) -> None:
    """Assemble the tree and pack it with mksquashfs's reproducible flags."""
    (out,) = ctx.outputs
    tree = ctx.out_dir.parent / "rootfs"
    tree.mkdir(mode=0o755)
    untar.extract(ctx.input("pkg-base"), tree)
    for entry in ctx.params.get("dirs", []):
        relative, _, mode = str(entry).partition(":")
        directory = _target(tree, relative)
        if not directory.is_dir():
            directory.mkdir()
        directory.chmod(int(mode or "755", 8))
    for applet in ctx.params.get("applets", []):
        link = _target(tree, f"bin/{applet}")
        if not link.exists():
            link.symlink_to("busybox")
    release = os_release(ctx.params["os_release"])
    _write(_target(tree, "etc/os-release"), release.encode(), executable=False)
    files = ctx.params.get("files")
    if files:
        base = ctx.root / files
        for src in ctx.sources:
            dest = _target(tree, str(src.relative_to(base)))
            _write(dest, src.read_bytes(), executable=bool(src.stat().st_mode & 0o100))
    for path in shlex.split(ctx.params.get("rm", "")):
        _remove(tree, path.strip("/"))
    customization = ctx.optional_input("customization")
    if customization is not None:
        files = ctx.out_dir.parent / "customization"
        files.mkdir()
        untar.extract(customization, files, "data")
        _merge(files, tree)
    tree.chmod(0o755)
    epoch = str(int(ctx.params["epoch"]))
    ctx.run(
        ["mksquashfs", str(tree), str(ctx.output(out)), "-noappend", "-quiet", "-no-progress",
         "-reproducible", "-all-root", "-no-xattrs", "-mkfs-time", epoch, "-all-time", epoch],
    )  # fmt: skip


def os_release(fields: Mapping[str, Any]) -> str:
    """os-release(5) text of ``fields``, in their order, each value double-quoted."""
    return "".join(f'{key}="{value}"\n' for key, value in fields.items())


def _write(path: Path, data: bytes, executable: bool) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    path.write_bytes(data)
    os.chmod(path, 0o755 if executable else 0o644)


def _remove(tree: Path, relative: str) -> None:
    """``rm -rf /relative`` inside the tree, never through a symlink out of it."""
    if not relative or ".." in Path(relative).parts:
        raise StepFailedError(f"RM: {relative!r} is not a path inside the root filesystem")
    path = tree / relative
    if not path.parent.resolve().is_relative_to(tree.resolve()):
        raise StepFailedError(f"RM: /{relative} lies behind a symlink out of the rootfs")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _merge(files: Path, tree: Path) -> None:
    """Put every entry of ``files`` at the same place in ``tree``, top down."""
    for top, dirs, names in os.walk(files):
        for name in sorted(dirs + names):
            src = Path(top, name)
            relative = str(src.relative_to(files))
            dest = _target(tree, relative)  # refuses a symlink on the way, unlinks one at dest
            st = os.lstat(src)
            if stat.S_ISDIR(st.st_mode):
                if dest.exists() and not dest.is_dir():
                    dest.unlink()
                if not dest.exists():
                    dest.mkdir()
                    dest.chmod(stat.S_IMODE(st.st_mode))
                continue
            if dest.is_dir():
                shutil.rmtree(dest)
            dest.unlink(missing_ok=True)
            if stat.S_ISLNK(st.st_mode):
                dest.symlink_to(os.readlink(src))
            else:
                shutil.copyfile(src, dest)
                dest.chmod(stat.S_IMODE(st.st_mode))
        dirs[:] = [d for d in dirs if not Path(top, d).is_symlink()]
