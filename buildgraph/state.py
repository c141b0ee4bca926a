"""Per-checkout state: what this workspace last built and where it put it.

The cache is the source of truth; this is an index over it that makes a no-op run
cheap (ninja keeps ``.ninja_log`` for the same reason). It holds file digests by
stat, each node's last key, outputs and input components (what ``explain`` compares
against), and what was materialized into ``_out/``. Losing it costs time, never
correctness.

Node results written by doit worker processes land in ``journal/`` and are folded in
by the next process that saves the state.
"""

from __future__ import annotations

import contextlib
import marshal
import os
from pathlib import Path
from typing import Any

from .hashing import digest_bytes
from .store import atomic_write

FORMAT = 1


def workspace_dir(cache_root: Path, root: Path) -> Path:
    return cache_root / "workspaces" / digest_bytes(str(root.resolve()).encode())[:16]


class State:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "state"
        self.journal = directory / "journal"
        data = _load(self.path)
        self.files: dict[str, tuple] = data.get("files", {})
        self.nodes: dict[str, tuple] = data.get("nodes", {})
        """label -> (key, outputs, components, touched_at)"""
        self.placed: dict[str, tuple] = data.get("placed", {})
        """_out name -> (digest, ino, mtime_ns, size)"""
        self.tools: dict[str, tuple] = data.get("tools", {})
        self.dirty = False
        self.fold_journal()

    def record(self, label: str, result: tuple) -> None:
        self.nodes[label] = result
        self.dirty = True

    def write_journal(self, label: str, result: tuple, placed: dict[str, tuple]) -> None:
        """Record a node result from any process; durable before the step reports done."""
        name = digest_bytes(label.encode())[:24]
        atomic_write(self.journal / name, marshal.dumps((label, result, placed)))

    def read_journal(self, label: str) -> tuple | None:
        """(result, placed) of ``label`` as a worker process journaled it, or None."""
        try:
            data = (self.journal / digest_bytes(label.encode())[:24]).read_bytes()
        except OSError:
            return None
        return marshal.loads(data)[1:]

    def fold_journal(self) -> None:
        if not self.journal.is_dir():
            return
        for entry in sorted(self.journal.iterdir()):
            with contextlib.suppress(OSError, ValueError, EOFError, TypeError):
                label, result, placed = marshal.loads(entry.read_bytes())
                self.nodes[label] = result
                self.placed.update(placed)
                self.dirty = True
            with contextlib.suppress(OSError):
                entry.unlink()

    def save(self, force: bool = False) -> None:
        self.fold_journal()
        if not (self.dirty or force):
            return
        data = {
            "format": FORMAT,
            "files": self.files,
            "nodes": self.nodes,
            "placed": self.placed,
            "tools": self.tools,
        }
        atomic_write(self.path, marshal.dumps(data))
        self.dirty = False


def _load(path: Path) -> dict[str, Any]:
    try:
        data = marshal.loads(path.read_bytes())
    except (OSError, ValueError, EOFError, TypeError):
        return {}
    return data if isinstance(data, dict) and data.get("format") == FORMAT else {}


def load_marshal(path: Path) -> Any:
    try:
        return marshal.loads(path.read_bytes())
    except (OSError, ValueError, EOFError, TypeError):
        return None


def save_marshal(path: Path, value: Any) -> None:
    atomic_write(path, marshal.dumps(value))


def unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
