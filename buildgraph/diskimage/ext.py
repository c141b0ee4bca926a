"""An ext2/3/4 partition, read in place with debugfs: no mount, no copy of the partition.

debugfs opens ``IMAGE?offset=N`` (e2fsprogs' unix I/O option), always with ``-c``
(catastrophic mode: read-only, bitmaps not read) and never ``-w``. Directories are
listed with ``ls -p`` by inode number, one debugfs run per depth of the tree, so no
path is ever quoted for debugfs' command parser.
"""

from __future__ import annotations

import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

from ..engine.errors import BuildgraphError
from .filesystems import Entry
from .gpt import Partition
from .run import run

ROOT_INODE = 2
# ls -p: /inode/mode (octal, with the file type)/uid/gid/name/size (empty for a directory)/
_LINE = re.compile(r"^/(\d+)/([0-7]+)/(\d+)/(\d+)/(.*)/(\d*)/$")
_ECHO = "debugfs: "
_KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink"}


class ExtReader:
    case_sensitive = True

    def __init__(self, image: Path, partition: Partition) -> None:
        self.partition = partition
        self.device = f"{image}?offset={partition.offset}"
        self.hint = f"{partition.ref()} may be damaged: `e2fsck -fn` on a copy of it says"

    def walk(self) -> Iterator[Entry]:
        level = [("", f"<{ROOT_INODE}>")]
        while level:
            listings = self._ls([ref for _, ref in level])
            deeper = []
            for (parent, _), lines in zip(level, listings, strict=True):
                for line in lines:
                    entry = _entry(parent, line)
                    if entry is None:
                        continue
                    yield entry
                    if entry.kind == "dir":
                        deeper.append((entry.path, entry.ref))
            level = deeper

    def read(self, entry: Entry) -> bytes:
        return self._debugfs(["-R", f"cat {entry.ref}"], f"read {entry.path}").stdout

    def _ls(self, refs: list[str]) -> list[list[str]]:
        script = "".join(f"ls -p {ref}\n" for ref in refs).encode()
        done = self._debugfs(["-f", "-"], "list its directories", script)
        listings: list[list[str]] = []
        for line in done.stdout.decode("utf-8", "surrogateescape").splitlines():
            if line.startswith(_ECHO):
                listings.append([])
            elif line and listings:
                listings[-1].append(line)
        if len(listings) != len(refs):
            raise BuildgraphError(
                f"{self.partition.ref()}: debugfs listed {len(listings)}"
                f" of {len(refs)} directories",
                self.hint,
            )
        return listings

    def _debugfs(
        self, args: list[str], doing: str, script: bytes = b""
    ) -> subprocess.CompletedProcess[bytes]:
        what = f"{doing} in {self.partition.ref()} (ext, at byte {self.partition.offset})"
        done = run(["debugfs", "-c", *args, self.device], what, hint=self.hint, input=script)
        said = complaints(done)
        if said:
            raise BuildgraphError(f"cannot {what}: {' / '.join(said[:3])}", self.hint)
        return done


def complaints(done: subprocess.CompletedProcess[bytes]) -> list[str]:
    """What debugfs said went wrong: it exits 0 after a failed command, saying so on
    stderr, where nothing else but its banner goes."""
    return [
        line
        for line in done.stderr.decode(errors="replace").splitlines()
        if line.strip() and not line.startswith("debugfs 1.")
    ]


def _entry(parent: str, line: str) -> Entry | None:
    match = _LINE.match(line)
    if match is None:
        raise BuildgraphError(f"debugfs printed a line ls -p does not print: {line!r}")
    inode, mode, uid, gid, name, size = match.groups()
    if name in (".", "..") or inode == "0":  # inode 0: an unused slot (lost+found has many)
        return None
    full = int(mode, 8)
    return Entry(
        path=f"{parent}/{name}",
        kind=_KINDS.get(stat.S_IFMT(full), "other"),
        mode=stat.S_IMODE(full),
        uid=int(uid),
        gid=int(gid),
        size=int(size) if size else None,
        ref=f"<{inode}>",
    )
