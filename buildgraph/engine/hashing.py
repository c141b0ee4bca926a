"""Content digests: xxh3-128 for files, keys and canonical encodings.

File digests are remembered by (inode, ctime, mtime, size), so a no-op run stats its
sources and hashes nothing. A file modified within the timestamp granularity of the
last check ("racily clean", as git calls it) is hashed again rather than trusted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

import xxhash

from .sparse import extents

RACY_SECONDS = 2.0
"""Files younger than this when first seen are re-hashed next time: coarse clocks."""

RS, US = "\x1e", "\x1f"
Component = tuple[str, str, str]
"""One input of a key: (kind, name, value), e.g. ("var", "GOAMD64", "v3")."""


def digest_bytes(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


CHUNK = 1 << 20
_ZEROS = bytes(CHUNK)


def digest_file(path: str | os.PathLike[str]) -> str:
    """xxh3-128 of a file's bytes. Holes are hashed as the zeros they read as, without
    reading them: an 8 GiB disk image that holds 20 MiB costs a pass over 20 MiB of data
    and xxh3 over zeros from memory, not 8 GiB of reads."""
    hasher = xxhash.xxh3_128()
    with open(path, "rb", buffering=0) as handle:
        size = os.fstat(handle.fileno()).st_size
        offset = 0
        for start, length in extents(handle.fileno(), size):
            _update_zeros(hasher, start - offset)
            handle.seek(start)
            offset = start
            while offset < start + length:
                chunk = handle.read(min(CHUNK, start + length - offset))
                if not chunk:  # the file shrank under us: hash what is there
                    return hasher.hexdigest()
                hasher.update(chunk)
                offset += len(chunk)
        _update_zeros(hasher, size - offset)
    return hasher.hexdigest()


def _update_zeros(hasher: xxhash.xxh3_128, count: int) -> None:
    while count > 0:
        n = min(count, CHUNK)
        hasher.update(_ZEROS[:n] if n < CHUNK else _ZEROS)
        count -= n


def encode(components: Iterable[Component]) -> str:
    """Components in a fixed, unambiguous text form; joining two encodings with RS
    gives the encoding of the concatenated lists, which lets a planner key a node from
    pieces it encoded once."""
    return RS.join(US.join(c) for c in components)


def key_of(components: Iterable[Component]) -> str:
    """The key of a node: xxh3-128 over its encoded components."""
    return xxhash.xxh3_128_hexdigest(encode(components).encode())


def key_of_encoded(parts: list[str]) -> str:
    """The same key, from already encoded non-empty pieces in component order."""
    return xxhash.xxh3_128_hexdigest(RS.join(parts).encode())


class FileDigests:
    """Digests of source files, cached by stat; ``table`` persists between runs."""

    def __init__(self, table: dict[str, tuple[int, int, int, int, str]]) -> None:
        self.table = table
        self.stamps: dict[str, tuple[int, int, int, int]] = {}
        """What each file looked like when its digest was taken, in this run."""
        self.changed = False
        self._fresh_after = time.time_ns() - int(RACY_SECONDS * 1e9)

    def digest(self, path: str) -> str:
        st = os.stat(path)
        now = self.stamps[path] = stamp(st)
        seen = self.table.get(path)
        if seen is not None and seen[:4] == now:
            return seen[4]
        value = digest_file(path) + (EXECUTABLE if st.st_mode & 0o111 else PLAIN)
        if max(st.st_mtime_ns, st.st_ctime_ns) < self._fresh_after:
            self.table[path] = (*now, value)
        else:
            self.table.pop(path, None)
        self.changed = True
        return value


EXECUTABLE = "-x"
"""Suffix of the digest of an executable file: a step may copy the mode into its output."""
PLAIN = "-f"
"""Suffix of a source that is not executable (so no key from before modes counted matches)."""


def stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_ino, st.st_ctime_ns, st.st_mtime_ns, st.st_size)
