"""The repository's own graph, built in throwaway clones (tests/checkout.py): what boot
and reproducibility tests build on."""

from __future__ import annotations

import hashlib
from pathlib import Path

from checkout import copy_checkout
from project import doit, statuses


def clone(dest: Path) -> Path:
    return copy_checkout(dest)


def build(
    root: Path, cache: Path, *args: str, env: dict[str, str] | None = None
) -> dict[str, str]:
    """Run doit in the clone; returns node -> built|cached, failing with doit's output."""
    done = doit(root, cache, *args, env=env)
    assert done.returncode == 0, done.stdout + done.stderr[-6000:]
    return statuses(done.stderr)


def built(result: dict[str, str]) -> set[str]:
    return {node for node, status in result.items() if status == "built"}


def sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
