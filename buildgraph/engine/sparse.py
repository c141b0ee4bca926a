"""Copying files that are mostly holes without filling the holes in.

An 8 GiB cloud disk holds a few dozen MiB: reading and writing only its data extents
(SEEK_DATA/SEEK_HOLE) keeps every copy, and the cache, as small as the data.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def extents(fd: int, size: int, start: int = 0) -> Iterator[tuple[int, int]]:
    """(offset, length) of each data extent of the open file ``fd`` of ``size`` bytes,
    from byte ``start`` on."""
    offset = start
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole is left
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end - start
        offset = end


def copy_into(src: Path, dst_fd: int, offset: int) -> None:
    """Write ``src`` into ``dst_fd`` at ``offset``, skipping its holes."""
    with open(src, "rb") as f:
        copy_range(f.fileno(), 0, os.fstat(f.fileno()).st_size, dst_fd, offset)


def copy_range(src_fd: int, src_offset: int, length: int, dst_fd: int, dst_offset: int) -> None:
    """Write the ``length`` bytes of ``src_fd`` at ``src_offset`` into ``dst_fd`` at
    ``dst_offset``, skipping their holes."""
    shift = dst_offset - src_offset
    for start, size in extents(src_fd, src_offset + length, src_offset):
        done = 0
        while done < size:
            done += os.copy_file_range(
                src_fd, dst_fd, size - done, start + done, start + shift + done
            )


def write_into(data: bytes, dst_fd: int, offset: int, block: int = 4096) -> None:
    """Write ``data`` into ``dst_fd`` at ``offset``, leaving its all-zero blocks unwritten
    (the destination holds zeros there already: a file just truncated to size)."""
    zeros = bytes(block)
    for start in range(0, len(data), block):
        chunk = data[start : start + block]
        if chunk != zeros[: len(chunk)]:  # memcmp: any() over a zero block costs 40x more
            os.pwrite(dst_fd, chunk, offset + start)


def canonical_copy(src: Path, dst: Path, block: int = 4096) -> None:
    """A sparse copy of ``src`` at ``dst`` whose holes are exactly its all-zero blocks,
    whatever holes ``src`` has: for a tool that records holes it finds by SEEK_HOLE
    (``tar --sparse``), so that its output depends on the bytes alone."""
    piece = 256 * block
    with open(src, "rb", buffering=0) as f, open(dst, "wb") as out:
        size = os.fstat(f.fileno()).st_size
        os.truncate(out.fileno(), size)
        for start, length in extents(f.fileno(), size):
            first = start - start % block  # blocks, not extents, are what is compared
            for offset in range(first, start + length, piece):
                write_into(os.pread(f.fileno(), piece, offset), out.fileno(), offset, block)


def copy(src: Path, dst: Path) -> None:
    """A sparse copy of ``src`` at ``dst``."""
    with open(dst, "wb") as out:
        os.truncate(out.fileno(), src.stat().st_size)
        copy_into(src, out.fileno(), 0)
