"""Unified kernel images: systemd-stub with the OS release, command line, initramfs and
kernel appended as PE sections, written byte for byte in Python.

objcopy stamps the current time into the PE header; this writer takes every byte from
its inputs, so the same stub and sections give the same image. The new sections follow
the stub's last one at page-aligned addresses (the stub finds them by name; the kernel
it hands over to wants its own start page-aligned), each placed in the file at the
stub's FileAlignment, and the PE checksum is recomputed. What the stub's file holds
after its last section is dropped: no loader maps it (it lies beyond SizeOfImage), and
bytes between sections would be outside what an Authenticode signature covers. Debian's
amd64 stub keeps its COFF symbol table there, the arm64 one (written by objcopy -O
binary) unmapped copies of its SBAT and version strings.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

SECTIONS = (".osrel", ".cmdline", ".initrd", ".linux")
"""The sections a UKI carries here, in the order ukify writes them (the kernel last)."""
PAGE = 4096
_SECTION = struct.Struct("<8sIIIIIIHHI")
_DATA = 0x40000040  # IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ
_PE32_PLUS = 0x20B
_SECURITY_DIRECTORY = 4


class Section(NamedTuple):
    name: str
    virtual_address: int
    virtual_size: int
    raw_offset: int
    raw_size: int


class PEError(ValueError):
    """Bytes that are not a PE image this writer can extend."""


class _Headers(NamedTuple):
    coff: int  # offset of the COFF header (after the PE signature)
    optional: int  # offset of the optional header
    table: int  # offset of the section table
    count: int
    size_of_headers: int
    section_alignment: int
    file_alignment: int


def _headers(image: bytes | bytearray) -> _Headers:
    if image[:2] != b"MZ" or len(image) < 0x40:
        raise PEError("not a PE image (no MZ header)")
    (pe,) = struct.unpack_from("<I", image, 0x3C)
    if image[pe : pe + 4] != b"PE\0\0":
        raise PEError("not a PE image (no PE signature)")
    coff = pe + 4
    count, optional_size = struct.unpack_from("<H12xH", image, coff + 2)
    optional = coff + 20
    (magic,) = struct.unpack_from("<H", image, optional)
    if magic != _PE32_PLUS:
        raise PEError(f"not a PE32+ image (optional header magic {magic:#x})")
    section_alignment, file_alignment = struct.unpack_from("<II", image, optional + 32)
    (size_of_headers,) = struct.unpack_from("<I", image, optional + 60)
    return _Headers(coff, optional, optional + optional_size, count, size_of_headers,
                    section_alignment, file_alignment)  # fmt: skip


def sections(image: bytes | bytearray) -> list[Section]:
    """The section table of a PE image."""
    h = _headers(image)
    found = []
    for index in range(h.count):
        name, vsize, vaddr, raw_size, raw_offset, *_rest = _SECTION.unpack_from(
            image, h.table + index * _SECTION.size
        )
        found.append(Section(name.rstrip(b"\0").decode("ascii", "replace"), vaddr, vsize,
                             raw_offset, raw_size))  # fmt: skip
    return found


def section_data(image: bytes, name: str) -> bytes:
    """The bytes of the section ``name`` (its virtual size of them)."""
    for section in sections(image):
        if section.name == name:
            size = min(section.virtual_size, section.raw_size)
            return image[section.raw_offset : section.raw_offset + size]
    raise PEError(f"the image has no {name} section")


def _align(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


def assemble(stub: bytes, added: Sequence[tuple[str, bytes]]) -> bytes:
    """``stub`` with the ``added`` (name, bytes) sections after its own, checksummed."""
    image = bytearray(stub)
    h = _headers(image)
    security = h.optional + 112 + 8 * _SECURITY_DIRECTORY
    if struct.unpack_from("<II", image, security) != (0, 0):
        raise PEError("the stub is signed: append sections to an unsigned stub, then sign")
    existing = sections(image)
    if {s.name for s in existing} & {name for name, _data in added}:
        raise PEError("the stub already has one of the sections to add")
    table_end = h.table + (h.count + len(added)) * _SECTION.size
    if table_end > h.size_of_headers:
        raise PEError(
            f"the stub's headers have room for {(h.size_of_headers - h.table) // _SECTION.size}"
            f" sections, not {h.count + len(added)}"
        )
    _cut_tail(image, h, max(s.raw_offset + s.raw_size for s in existing))
    address = max(s.virtual_address + s.virtual_size for s in existing)
    initialized = 0
    for index, (name, data) in enumerate(added):
        encoded = name.encode("ascii")
        if len(encoded) > 8:
            raise PEError(f"section name {name!r} is longer than 8 bytes")
        address = _align(address, max(PAGE, h.section_alignment))
        offset = _align(len(image), h.file_alignment)
        raw_size = _align(len(data), h.file_alignment)
        image.extend(bytes(offset - len(image)))
        image.extend(data)
        image.extend(bytes(raw_size - len(data)))
        _SECTION.pack_into(image, h.table + (h.count + index) * _SECTION.size,
                           encoded, len(data), address, raw_size, offset, 0, 0, 0, 0,
                           _DATA)  # fmt: skip
        address += len(data)
        initialized += raw_size
    struct.pack_into("<H", image, h.coff + 2, h.count + len(added))
    (size_initialized,) = struct.unpack_from("<I", image, h.optional + 8)
    struct.pack_into("<I", image, h.optional + 8, size_initialized + initialized)
    struct.pack_into("<I", image, h.optional + 56, _align(address, h.section_alignment))
    struct.pack_into("<I", image, h.optional + 64, 0)
    struct.pack_into("<I", image, h.optional + 64, checksum(image))
    return bytes(image)


def _cut_tail(image: bytearray, h: _Headers, end_of_sections: int) -> None:
    """Drop the bytes after the last section, and the COFF symbol table's pointer."""
    struct.pack_into("<II", image, h.coff + 8, 0, 0)
    del image[end_of_sections:]


def checksum(image: bytes | bytearray) -> int:
    """The PE checksum: the 16-bit one's-complement sum of the image (its own field read
    as 0 by the caller) plus the image's length.

    As 2**16 is 1 modulo 0xFFFF, the sum of the little-endian 16-bit words is the
    image read as one little-endian integer, modulo 0xFFFF; the end-around carry makes
    a nonzero multiple of 0xFFFF fold to 0xFFFF, not 0."""
    data = bytes(image) + b"\0" * (len(image) % 2)
    total = int.from_bytes(data, "little") % 0xFFFF
    if total == 0 and data.count(0) != len(data):
        total = 0xFFFF
    return (total + len(image)) & 0xFFFFFFFF


def build(stub: bytes, osrel: bytes, cmdline: str, initrd: bytes, linux: bytes) -> bytes:
    """A unified kernel image from the stub and the four parts, in :data:`SECTIONS` order."""
    parts = {".osrel": osrel, ".cmdline": cmdline.strip().encode(), ".initrd": initrd,
             ".linux": linux}  # fmt: skip
    return assemble(stub, [(name, parts[name]) for name in SECTIONS])
