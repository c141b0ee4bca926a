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

RACY_SECONDS = 2.0
"""Files younger than this when first seen are re-hashed next time: coarse clocks."""

RS, US = "\x1e", "\x1f"
Component = tuple[str, str, str]
"""One input of a key: (kind, name, value), e.g. ("var", "GOAMD64", "v3")."""


def digest_bytes(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def digest_file(path: str | os.PathLike[str]) -> str:
    hasher = xxhash.xxh3_128()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


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
