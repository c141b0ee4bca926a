"""The GUID partition table of a disk image, read in Python: no sgdisk, no kernel.

Only the primary header and its entry array are read; both CRC32s must match, and a
damaged table is refused (naming what is wrong) rather than guessed at from the backup.
Sectors are 512 bytes, or 4096 when the header is found there instead (4Kn disks).
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..engine.errors import BuildgraphError
from .filesystems import PROBE, probe

SIGNATURE = b"EFI PART"
SECTOR_SIZES = (512, 4096)
_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
_ENTRY = struct.Struct("<16s16sQQQ72s")
_MAX_ENTRY_ARRAY = 4 << 20  # the spec's minimum is 16 KiB; 4 MiB is far past any real table


class GptError(BuildgraphError):
    """An image whose partition table is absent or damaged."""


@dataclass(frozen=True)
class Partition:
    number: int
    """1-based slot in the entry array, as sgdisk and the kernel number partitions."""
    name: str
    type_guid: uuid.UUID
    unique_guid: uuid.UUID
    first_lba: int
    last_lba: int
    attributes: int
    sector_size: int

    @property
    def offset(self) -> int:
        return self.first_lba * self.sector_size

    @property
    def size(self) -> int:
        return (self.last_lba - self.first_lba + 1) * self.sector_size

    def ref(self) -> str:
        """``p9 ROOT``: how reports name the partition."""
        return f"p{self.number} {self.name or '(no name)'}"


@dataclass(frozen=True)
class Table:
    sector_size: int
    disk_guid: uuid.UUID
    first_usable: int
    last_usable: int
    partitions: tuple[Partition, ...]


def read(image_path: Path, name: str | None = None) -> Table:
    """The partitions of the GPT disk image at ``image_path`` (a raw file), which messages
    call ``name`` (default: its path)."""
    path = name or str(image_path)
    with open(image_path, "rb") as image:
        size = image.seek(0, 2)
        for sector in SECTOR_SIZES:
            image.seek(sector)
            header = image.read(sector)
            if header[:8] == SIGNATURE:
                return _table(path, image, size, sector, header)
        image.seek(0)
        head = image.read(PROBE)
    raise GptError(
        f"{path} is not a GPT disk image: {_what_instead(head)}",
        hint="give a whole disk image (not one partition's filesystem);"
        f" `sgdisk -p {path}` shows what it holds",
    )


def _what_instead(head: bytes) -> str:
    held = probe(head)
    if held not in ("none", "unknown"):
        return f"it holds a filesystem ({held}), not a partitioned disk"
    entries = [head[at : at + 16] for at in range(446, 510, 16)]
    if (
        head[510:512] == b"\x55\xaa"
        and all(entry[0] in (0, 0x80) for entry in entries)
        and any(entry[4] not in (0, 0xEE) for entry in entries)
    ):
        return "it has an MBR (DOS) partition table, and no GPT header at byte 512 or 4096"
    return "no 'EFI PART' header at byte 512 or 4096"


def _damaged(path: str, what: str) -> GptError:
    return GptError(
        f"{path}: the GPT is damaged: {what}",
        hint=f"`sgdisk -v {path}` says more; gdisk can rebuild the table"
        " from its backup copy at the end of the disk",
    )


def _table(path: str, image: BinaryIO, size: int, sector: int, block: bytes) -> Table:
    (
        _sig,
        _rev,
        header_size,
        header_crc,
        _res,
        current,
        _backup,
        first_usable,
        last_usable,
        disk_guid,
        entries_lba,
        count,
        entry_size,
        entries_crc,
    ) = _HEADER.unpack_from(block)
    if not _HEADER.size <= header_size <= sector:
        raise _damaged(path, f"the header says it is {header_size} bytes long")
    zeroed = block[:16] + b"\0\0\0\0" + block[20:header_size]
    if zlib.crc32(zeroed) != header_crc:
        raise _damaged(
            path,
            f"the header's CRC32 is {header_crc:#010x}, its bytes give {zlib.crc32(zeroed):#010x}",
        )
    if current != 1:
        raise _damaged(path, f"the primary header says it is at LBA {current}, not 1")
    if entry_size < _ENTRY.size or entry_size % 8 or count * entry_size > _MAX_ENTRY_ARRAY:
        raise _damaged(path, f"{count} partition entries of {entry_size} bytes each")
    start = entries_lba * sector
    if start + count * entry_size > size:
        raise _damaged(
            path,
            f"the partition entries (LBA {entries_lba}) lie past the"
            f" image's end at byte {size}: a truncated image?",
        )
    image.seek(start)
    array = image.read(count * entry_size)
    if zlib.crc32(array) != entries_crc:
        raise _damaged(
            path,
            f"the partition entry array's CRC32 is {entries_crc:#010x},"
            f" its bytes give {zlib.crc32(array):#010x}",
        )
    partitions = []
    for index in range(count):
        type_guid, unique, first, last, attributes, name = _ENTRY.unpack_from(
            array, index * entry_size
        )
        if type_guid == bytes(16):
            continue
        number = index + 1
        if not first_usable <= first <= last <= last_usable:
            raise _damaged(
                path,
                f"partition {number} spans LBA {first}-{last}, outside the"
                f" usable {first_usable}-{last_usable}",
            )
        if (last + 1) * sector > size:
            raise _damaged(
                path,
                f"partition {number} ends at byte {(last + 1) * sector},"
                f" past the image's end at byte {size}: a truncated image?",
            )
        partitions.append(
            Partition(
                number=number,
                name=name.decode("utf-16-le", errors="replace").split("\0", 1)[0],
                type_guid=uuid.UUID(bytes_le=type_guid),
                unique_guid=uuid.UUID(bytes_le=unique),
                first_lba=first,
                last_lba=last,
                attributes=attributes,
                sector_size=sector,
            )
        )
    return Table(
        sector, uuid.UUID(bytes_le=disk_guid), first_usable, last_usable, tuple(partitions)
    )
