"""Editing a FAT filesystem image with mtools (mmd, mcopy, mdel, mrd): no mount, no root.

mtools honours SOURCE_DATE_EPOCH for every time it writes, directories' and files'
alike; with TZ=UTC (FAT times are local) the same edit gives the same bytes. FAT keeps
no modes, owners or symlinks, so steps carry none (the planner refuses them). One tool
run a step; ``fsck.vfat -n`` checks the result.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .fat import ENV
from .plan import Step, too_small
from .run import run

_TOOLS = {"rm": ["mdel"], "rmdir": ["mrd"], "mkdir": ["mmd"], "write": ["mcopy", "-o"]}
_CLUSTERS = re.compile(rb"(\d+)/(\d+) clusters")


def free(image: Path, ref: str) -> int:
    """The bytes the FAT in ``image`` has free, from fsck.vfat's count of clusters."""
    done = run(["fsck.vfat", "-n", "-v", str(image)], f"check {ref} (fsck.vfat -n)")
    used, total = map(int, _CLUSTERS.findall(done.stdout)[-1])
    cluster = re.search(rb"(\d+) bytes per cluster", done.stdout)
    return (total - used) * int(cluster.group(1) if cluster else 512)


def apply(image: Path, steps: list[Step], epoch: int, ref: str) -> None:
    """Run ``steps`` on the FAT filesystem image ``image`` (partition ``ref``)."""
    had = free(image, ref)
    env = {**ENV, "SOURCE_DATE_EPOCH": str(epoch), "TZ": "UTC"}
    for step in steps:
        sources = [str(step.src)] if step.src else []
        done = run(
            [*_TOOLS[step.kind], "-i", str(image), *sources, f"::{step.path}"],
            f"{step.kind} {step.path} in {ref} (FAT)",
            env=env,
            accept=_full,
        )
        if done.returncode:
            raise too_small(ref, steps, had)
    run(
        ["fsck.vfat", "-n", str(image)],
        f"check {ref} after the edit (fsck.vfat -n)",
        hint="was it clean before? `fsck.vfat -n` on a copy of the partition says",
    )


def _full(done: subprocess.CompletedProcess[bytes]) -> bool:
    return b"Disk full" in done.stderr
