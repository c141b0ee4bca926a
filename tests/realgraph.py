"""The repository's own graph, built in throwaway clones: what boot and reproducibility
tests build on. A clone is the checkout's files (tracked and new, not ignored), so the
tests see uncommitted work as CI sees a commit."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from project import REPO, doit, statuses


def clone(dest: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name, follow_symlinks=False)
    return dest


def build(root: Path, cache: Path, *args: str) -> dict[str, str]:
    """Run doit in the clone; returns node -> built|cached, failing with doit's output."""
    done = doit(root, cache, *args)
    assert done.returncode == 0, done.stdout + done.stderr[-6000:]
    return statuses(done.stderr)


def built(result: dict[str, str]) -> set[str]:
    return {node for node, status in result.items() if status == "built"}


def sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
