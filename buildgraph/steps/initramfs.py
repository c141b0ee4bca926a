"""``initramfs``: init, rootfs squashfs and the kernel modules the init loads, as xz cpio.

The modules are the closure of params.modules under their modinfo ``depends=`` (Debian's
packages carry no modules.dep: depmod runs at install time), uncompressed, and listed
dependencies first in ``/lib/modules/load.list`` for the init to load in order.
The kernel's xz decompressor takes only CRC32 checks, hence ``--check=crc32``.
With params.image (IMAGER_IMAGE) the initramfs comes from that imager image instead.
"""

from __future__ import annotations

import lzma
import os
import posixpath
import re
import struct
import tarfile
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..engine.errors import StepFailedError
from ..engine.step import Role, StepContext, step
from ..formats.cpio import Writer
from . import check_epoch
from .imagefile import copy_from_image, probe_image

LOAD_LIST = "lib/modules/load.list"
MODULES_DIR = re.compile(r"^(?:usr/)?lib/modules/[^/]+(?=/)")


def _check(params: Mapping[str, Any]) -> None:
    check_epoch(params)
    modules = params.get("modules")
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise ValueError("the initramfs step needs params.modules, a list of module names")


def module_order(paths: Iterable[str], depends: Callable[[str], list[str]],
                 wanted: Iterable[str]) -> list[str]:  # fmt: skip
    """``wanted`` modules and their dependencies, dependencies first, as paths.

    ``paths`` are every module file of the kernel; ``depends(path)`` gives the module
    names that one needs (its modinfo ``depends=``).
    """
    by_name = {_module_name(path): path for path in paths}
    order: list[str] = []

    def visit(name: str, needed_by: str) -> None:
        path = by_name.get(name.replace("-", "_"))
        if path is None:
            raise StepFailedError(
                f"kernel module {name!r} ({needed_by}) is not in the kernel package",
                hint="it may be built in (then drop it from params.modules) or missing",
            )
        if path in order:
            return
        for dep in depends(path):
            visit(dep, f"needed by {_module_name(path)}")
        order.append(path)

    for name in wanted:
        visit(name, "params.modules")
    return order


def _module_name(path: str) -> str:
    base = posixpath.basename(path)
    return base[: base.index(".ko")].replace("-", "_")


def modinfo_depends(module: bytes) -> list[str]:
    """The ``depends=`` of a module's .modinfo section (an ELF64 little-endian .ko)."""
    if module[:4] != b"\x7fELF" or module[4] != 2 or module[5] != 1:
        raise StepFailedError("a kernel module is not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", module, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", module, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from(
            "<IIQQQQ", module, shoff + index * shentsize
        )
        return name, offset, size

    _name, names_at, _size = section(shstrndx)
    for index in range(shnum):
        name, offset, size = section(index)
        if module[names_at + name : module.index(b"\0", names_at + name)] == b".modinfo":
            for field in module[offset : offset + size].split(b"\0"):
                if field.startswith(b"depends="):
                    return [d for d in field[8:].decode().split(",") if d]
            return []
    return []


def _read_module(data: bytes, path: str) -> bytes:
    if path.endswith(".ko"):
        return data
    if path.endswith(".ko.xz"):
        return lzma.decompress(data)
    raise StepFailedError(f"kernel module {path}: only .ko and .ko.xz are supported")


@step(
    "initramfs",
    version=1,
    tools=("xz",),
    check=_check,
    probe=probe_image,
    inputs=[Role("init"), Role("rootfs"), Role("pkg-kernel")],
)
def initramfs(ctx: StepContext) -> None:
    """Write the cpio (sorted, owner 0, one mtime) and compress it with xz."""
    if ctx.params.get("image"):
        copy_from_image(ctx, "initramfs.xz")
        return
    (out,) = ctx.outputs
    epoch = int(ctx.params["epoch"])
    cpio_path = ctx.out_dir.parent / "initramfs.cpio"
    with open(cpio_path, "wb") as raw, tarfile.open(ctx.input("pkg-kernel")) as kernel:
        members = {m.name.removeprefix("./"): m for m in kernel if m.isfile()}
        dirs = {found.group(0) for name in members if (found := MODULES_DIR.match(name))}
        if len(dirs) != 1:
            raise StepFailedError(
                f"the kernel package has {len(dirs)} lib/modules/<version>/ directories",
                hint="PKG_KERNEL must hold the modules of exactly one kernel version",
            )
        (modules_dir,) = dirs
        version = posixpath.basename(modules_dir)
        paths = [name[len(modules_dir) + 1 :] for name in members
                 if name.startswith(modules_dir + "/") and ".ko" in posixpath.basename(name)]
        contents: dict[str, bytes] = {}

        def load(path: str) -> bytes:
            if path not in contents:
                with kernel.extractfile(members[f"{modules_dir}/{path}"]) as file:
                    contents[path] = _read_module(file.read(), path)
            return contents[path]

        order = module_order(paths, lambda path: modinfo_depends(load(path)),
                             ctx.params["modules"])  # fmt: skip

        cpio = Writer(raw, epoch)
        for directory in ("dev", "lib", "lib/modules", "newroot", "proc", "sys"):
            cpio.directory(directory)
        cpio.char_device("dev/console", 5, 1)
        cpio.file("init", ctx.input("init"), mode=0o755)
        placed = {"lib", "lib/modules"}
        for path in sorted(order):
            target = f"lib/modules/{version}/{path}"
            parent = posixpath.dirname(target)
            missing = []
            while parent not in placed:
                missing.append(parent)
                parent = posixpath.dirname(parent)
            for directory in reversed(missing):
                cpio.directory(directory)
                placed.add(directory)
            cpio.data(target.removesuffix(".xz"), load(path))
        load_list = "".join(f"/lib/modules/{version}/{path.removesuffix('.xz')}\n"
                            for path in order)  # fmt: skip
        cpio.data(LOAD_LIST, load_list.encode())
        cpio.file("rootfs.sqsh", ctx.input("rootfs"), mode=0o644)
        cpio.close()
    ctx.run(["xz", "--check=crc32", "--threads=1", "-6", str(cpio_path)])
    os.replace(f"{cpio_path}.xz", ctx.output(out))
