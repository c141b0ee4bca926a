"""A FAT partition, read in place with mtools (``-i IMAGE@@OFFSET``): no mount, no copy.

mdir lists it (``-/`` recursive, ``-b`` full paths, ``-a`` hidden files too) and mcopy
copies a file to stdout; neither writes the image. FAT keeps no modes or owners, so those
are None, and names compare without case, as the kernel's vfat does.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

from .filesystems import Entry
from .gpt import Partition
from .run import run

ENV = {"MTOOLS_SKIP_CHECK": "1"}  # a geometry mtools finds odd is no reason not to read


class FatReader:
    case_sensitive = False

    def __init__(self, image: Path, partition: Partition) -> None:
        self.partition = partition
        self.drive = f"{image}@@{partition.offset}"
        self.where = f"{partition.ref()} (FAT, at byte {partition.offset})"
        self.hint = f"{partition.ref()} may be damaged: `fsck.vfat -n` on a copy of it says"

    def walk(self) -> Iterator[Entry]:
        done = run(
            ["mdir", "-i", self.drive, "-/", "-b", "-a", "::/"],
            f"list {self.where}",
            env=ENV,
            hint=self.hint,
            accept=_empty,
        )
        for line in done.stdout.decode("utf-8", "surrogateescape").splitlines():
            if not line.startswith("::/"):
                continue
            is_dir = line.endswith("/")
            path = line[2:].rstrip("/")
            yield Entry(
                path=path,
                kind="dir" if is_dir else "file",
                mode=None,
                uid=None,
                gid=None,
                size=None,
                ref=f"::{path}",
            )

    def read(self, entry: Entry) -> bytes:
        return run(
            ["mcopy", "-n", "-i", self.drive, entry.ref, "-"],
            f"read {entry.path} in {self.where}",
            env=ENV,
            hint=self.hint,
        ).stdout


def _empty(done: subprocess.CompletedProcess[bytes]) -> bool:
    """mdir's way of saying a root directory holds nothing."""
    return done.returncode == 1 and not done.stdout and b"not found" in done.stderr
