"""Editing an ext2/3/4 filesystem image with one ``debugfs -w`` run: no mount, no root.

The steps become a debugfs script, paths in double quotes (a quote in one doubled, as
debugfs' parser reads it), each step followed by ``set_inode_field`` lines for its mode
and owner. E2FSPROGS_FAKE_TIME makes every time debugfs writes the epoch: an inode's
four times, a deleted inode's dtime, the superblock's write time; the rest of what it
writes follows from the steps and the filesystem (its own hash seed), so the same edit
gives the same bytes. ``e2fsck -fn`` checks the result.
"""

from __future__ import annotations

import stat
import struct
from pathlib import Path

from ..engine.errors import BuildgraphError
from .ext import complaints
from .plan import Step, too_small
from .run import run

_COMMANDS = {
    "rm": "rm {path}",
    "rmdir": "rmdir {path}",
    "mkdir": "mkdir {path}",
    "write": "write {src} {path}",
    "symlink": "symlink {path} {target}",
}
_TYPES = {"mkdir": stat.S_IFDIR, "write": stat.S_IFREG}
_SUPERBLOCK = 1024
_INCOMPAT_64BIT = 0x80


def quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def script(steps: list[Step]) -> str:
    """The debugfs commands of ``steps``, a line each."""
    lines = []
    for step in steps:
        path = quote(step.path)
        lines.append(
            _COMMANDS[step.kind].format(
                path=path, src=quote(str(step.src)), target=quote(step.target)
            )
        )
        if step.mode is not None:
            lines.append(f"sif {path} mode 0{_TYPES[step.kind] | step.mode:o}")
        if step.owner is not None:
            lines += [f"sif {path} uid {step.owner[0]}", f"sif {path} gid {step.owner[1]}"]
    return "".join(line + "\n" for line in lines)


def free(image: Path) -> int:
    """The bytes the filesystem in ``image`` has free, from its superblock."""
    with open(image, "rb") as file:
        file.seek(_SUPERBLOCK)
        block = file.read(1024)
    free_lo, log_size, incompat, free_hi = (
        struct.unpack_from("<I", block, 12)[0],
        struct.unpack_from("<I", block, 24)[0],
        struct.unpack_from("<I", block, 96)[0],
        struct.unpack_from("<I", block, 0x158)[0],
    )
    blocks = free_lo | ((free_hi << 32) if incompat & _INCOMPAT_64BIT else 0)
    return blocks * (1024 << log_size)


def apply(image: Path, steps: list[Step], epoch: int, ref: str) -> None:
    """Run ``steps`` on the ext filesystem image ``image`` (partition ``ref``)."""
    had = free(image)
    done = run(
        ["debugfs", "-w", "-f", "-", str(image)],
        f"edit {ref} (ext)",
        env={"E2FSPROGS_FAKE_TIME": str(epoch)},
        input=script(steps).encode("utf-8", "surrogateescape"),
    )
    said = complaints(done)
    if any("Could not allocate" in line for line in said):
        raise too_small(ref, steps, had)
    if said:
        raise BuildgraphError(f"cannot edit {ref} (ext): debugfs says: {' / '.join(said[:3])}")
    run(
        ["e2fsck", "-fn", str(image)],
        f"check {ref} after the edit (e2fsck -fn)",
        hint="was it clean before? `e2fsck -fn` on a copy of the partition says",
    )
