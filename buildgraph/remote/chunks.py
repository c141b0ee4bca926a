"""Outputs as the remote cache moves them: aligned chunks of their data, zstd-compressed.

An 8 GiB disk image that holds 17 MiB must not travel as 8 GiB. A file is cut at fixed
:data:`CHUNK` boundaries; only chunks that meet a data extent (SEEK_DATA/SEEK_HOLE) and
hold a non-zero byte are sent, so holes and zeros cost nothing, and a chunk that did not
change between two versions of an image is the same blob, uploaded once. Restoring
truncates the file to size and writes each chunk's non-zero blocks: the copy is sparse.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import zstandard

from ..engine.sparse import extents

CHUNK = 32 << 20
LEVEL = 3
"""zstd level: fast to make, and output depends only on input and level (reproducible)."""


def data_chunks(path: Path) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of each chunk of ``path`` that holds something other than zeros."""
    with open(path, "rb", buffering=0) as handle:
        fd = handle.fileno()
        size = os.fstat(fd).st_size
        wanted: list[int] = []
        for start, length in extents(fd, size):
            first, last = start // CHUNK, (start + length - 1) // CHUNK
            wanted.extend(i for i in range(first, last + 1) if not wanted or i > wanted[-1])
        for index in wanted:
            offset = index * CHUNK
            data = os.pread(fd, min(CHUNK, size - offset), offset)
            if data.count(0) != len(data):
                yield offset, data


def compress(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=LEVEL).compress(data)


def decompress(blob: bytes, length: int) -> bytes:
    """The raw chunk; ValueError if it is not ``length`` bytes of zstd."""
    try:
        data = zstandard.ZstdDecompressor().decompress(blob, max_output_size=length)
    except zstandard.ZstdError as err:
        raise ValueError(f"not zstd: {err}") from None
    if len(data) != length:
        raise ValueError(f"{len(data)} bytes, not {length}")
    return data


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def create(dest: Path, size: int, executable: bool) -> int:
    """A new file of ``size`` zeros (a hole) to write chunks into; returns its fd."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755 if executable else 0o644)
    os.ftruncate(fd, size)
    return fd
