"""A deterministic newc cpio writer, the format of a Linux initramfs.

The cpio tool takes names from stdin but still copies inode numbers, owners and times
from the file system; here every field is chosen: entries in the order given, inode
numbers counted from 1, owner 0:0, one mtime for all.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

TRAILER = "TRAILER!!!"


class Writer:
    """Append entries to a newc archive; :meth:`close` writes the trailer."""

    def __init__(self, out: BinaryIO, mtime: int) -> None:
        self.out = out
        self.mtime = mtime
        self.ino = 0
        self.written = 0

    def _header(self, name: str, mode: int, size: int, nlink: int, rdev: tuple = (0, 0)) -> None:
        self.ino += 1
        encoded = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, nlink, self.mtime, size, 0, 0, *rdev, len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % field for field in fields)
        self._write(header + encoded)
        self._pad()

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        self.written += len(data)

    def _pad(self) -> None:
        self._write(b"\0" * (-self.written % 4))

    def directory(self, name: str, mode: int = 0o755) -> None:
        self._header(name, stat.S_IFDIR | mode, 0, 2)

    def char_device(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._header(name, stat.S_IFCHR | mode, 0, 1, (major, minor))

    def symlink(self, name: str, target: str) -> None:
        data = target.encode()
        self._header(name, stat.S_IFLNK | 0o777, len(data), 1)
        self._write(data)
        self._pad()

    def file(self, name: str, source: Path, mode: int | None = None) -> None:
        size = source.stat().st_size
        if mode is None:
            mode = 0o755 if os.access(source, os.X_OK) else 0o644
        self._header(name, stat.S_IFREG | mode, size, 1)
        with open(source, "rb") as file:
            while chunk := file.read(1 << 20):
                self._write(chunk)
        self._pad()

    def data(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._header(name, stat.S_IFREG | mode, len(data), 1)
        self._write(data)
        self._pad()

    def close(self) -> None:
        self.ino = -1  # the trailer's inode number is 0
        self._header(TRAILER, 0, 0, 1)
