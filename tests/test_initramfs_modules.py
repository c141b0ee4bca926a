"""Which kernel modules the initramfs carries, and in which order the init loads them."""

from __future__ import annotations

import struct

import pytest

from buildgraph.engine.errors import StepFailedError
from buildgraph.steps.initramfs import modinfo_depends, module_order

DEPENDS = {
    "kernel/drivers/block/loop.ko": [],
    "kernel/fs/squashfs/squashfs.ko": ["zstd_decompress", "xxhash"],
    "kernel/lib/zstd_decompress.ko": ["xxhash"],
    "kernel/lib/xxhash.ko": [],
    "kernel/fs/overlayfs/overlay.ko": [],
    "kernel/fs/fuse/virtio-fs.ko": ["fuse"],
    "kernel/fs/fuse/fuse.ko": [],
}


def _order(*wanted: str) -> list[str]:
    return module_order(DEPENDS, DEPENDS.__getitem__, wanted)


def test_dependencies_load_first_each_once() -> None:
    assert _order("loop", "squashfs", "overlay") == [
        "kernel/drivers/block/loop.ko",
        "kernel/lib/xxhash.ko",
        "kernel/lib/zstd_decompress.ko",
        "kernel/fs/squashfs/squashfs.ko",
        "kernel/fs/overlayfs/overlay.ko",
    ]


def test_dash_and_underscore_name_the_same_module() -> None:
    assert _order("virtio_fs")[-1] == "kernel/fs/fuse/virtio-fs.ko"


def test_an_unknown_module_is_named() -> None:
    with pytest.raises(StepFailedError, match="'ext9'"):
        _order("ext9")


def _elf_with_modinfo(modinfo: bytes) -> bytes:
    """A minimal ELF64 LE file: null section, .modinfo, .shstrtab."""
    names = b"\0.modinfo\0.shstrtab\0"
    body_at = 64
    modinfo_at, names_at = body_at, body_at + len(modinfo)
    shoff = names_at + len(names)
    header = b"\x7fELF\x02\x01\x01" + b"\0" * 9 + struct.pack(
        "<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 3, 2
    )
    section = struct.Struct("<IIQQQQIIQQ")
    sections = (
        section.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        + section.pack(1, 1, 0, 0, modinfo_at, len(modinfo), 0, 0, 1, 0)
        + section.pack(10, 3, 0, 0, names_at, len(names), 0, 0, 1, 0)
    )
    return header + modinfo + names + sections


def test_modinfo_depends_reads_the_elf_section() -> None:
    module = _elf_with_modinfo(b"license=GPL\0depends=zstd_decompress,xxhash\0name=squashfs\0")
    assert modinfo_depends(module) == ["zstd_decompress", "xxhash"]
    assert modinfo_depends(_elf_with_modinfo(b"depends=\0name=loop\0")) == []
