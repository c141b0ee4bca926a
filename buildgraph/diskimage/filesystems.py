"""What filesystem a partition holds (by superblock magic), and read-only access to it.

FAT and ext2/3/4 are read (``fat``, ``ext``); the others are named so a report can say
they were not read. Readers list every entry with its kind, mode and owner and read a
file's bytes; they never open the image for writing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .gpt import Partition

KINDS = ("file", "dir", "symlink", "other")


@dataclass(frozen=True)
class Entry:
    path: str
    """Absolute within the filesystem: ``/etc/machine-id``."""
    kind: str
    """One of KINDS; ``other`` is a device, FIFO or socket."""
    mode: int | None
    """Permission bits (with setuid, setgid, sticky); None where the filesystem has none (FAT)."""
    uid: int | None
    gid: int | None
    size: int | None
    ref: str
    """How the reader finds it again (debugfs's ``<inode>``, mtools' ``::/path``)."""


class Reader(Protocol):
    case_sensitive: bool

    def walk(self) -> Iterator[Entry]:
        """Every entry below the root, parents before their children."""
        ...

    def read(self, entry: Entry) -> bytes:
        """The bytes of the file ``entry``."""
        ...


@dataclass(frozen=True)
class Magic:
    filesystem: str
    offset: int
    magic: bytes


MAGICS = (
    Magic("squashfs", 0, b"hsqs"),
    Magic("btrfs", 0x10040, b"_BHRfS_M"),
    Magic("xfs", 0, b"XFSB"),
    Magic("erofs", 1024, b"\xe2\xe1\xf5\xe0"),
    Magic("iso9660", 0x8001, b"CD001"),
)
READABLE = ("vfat", "ext2", "ext3", "ext4")
PROBE = 0x10048  # through btrfs' magic, the farthest of MAGICS
_EXT_MAGIC = 1080
_EXT3_JOURNAL = 0x4  # s_feature_compat: has_journal
_EXT4_INCOMPAT = 0x40 | 0x80 | 0x200  # extents, 64bit, flex_bg


def detect(image: Path, partition: Partition) -> str:
    """The filesystem of ``partition`` of ``image``, as :func:`probe` tells it."""
    with open(image, "rb") as file:
        file.seek(partition.offset)
        return probe(file.read(min(PROBE, partition.size)))


def probe(head: bytes) -> str:
    """``vfat``, ``ext2``/``ext3``/``ext4``, a name from MAGICS, ``none`` (zeros: no
    filesystem) or ``unknown``, from the first PROBE bytes of a filesystem."""
    if _is_fat(head):
        return "vfat"
    if head[_EXT_MAGIC : _EXT_MAGIC + 2] == b"\x53\xef":
        compat = int.from_bytes(head[1116:1120], "little")
        incompat = int.from_bytes(head[1120:1124], "little")
        if incompat & _EXT4_INCOMPAT:
            return "ext4"
        return "ext3" if compat & _EXT3_JOURNAL else "ext2"
    for magic in MAGICS:
        if head[magic.offset : magic.offset + len(magic.magic)] == magic.magic:
            return magic.filesystem
    return "none" if not any(head[:65536]) else "unknown"


def _is_fat(head: bytes) -> bool:
    if len(head) < 512 or head[510:512] != b"\x55\xaa" or head[0] not in (0xEB, 0xE9):
        return False
    return head[54:59] in (b"FAT12", b"FAT16") or head[82:87] == b"FAT32"


def open_reader(image: Path, partition: Partition, filesystem: str) -> Reader | None:
    """A reader of ``partition`` if its filesystem is one of READABLE, else None."""
    if filesystem == "vfat":
        from .fat import FatReader

        return FatReader(image, partition)
    if filesystem in ("ext2", "ext3", "ext4"):
        from .ext import ExtReader

        return ExtReader(image, partition)
    return None
