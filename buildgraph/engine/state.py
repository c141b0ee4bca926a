"""Per-checkout state: what this workspace last built and where it put it.

The cache is the source of truth; this is an index over it that makes a no-op run
cheap (ninja keeps ``.ninja_log`` for the same reason). It holds file digests by
stat, each node's last key, outputs and input components (what ``explain`` compares
against), and what was materialized into ``_out/``. Losing it costs time, never
correctness.

Node results are also journaled, one directory per run, as each node finishes: doit's
worker processes cannot share memory with the run that planned them, and a killed run
must lose nothing it finished. Saving the state folds journals in and removes them.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import shutil
import time
from pathlib import Path
from typing import Any

from .hashing import digest_bytes
from .store import atomic_write, process_alive

FORMAT = 3
_TABLES = ("files", "nodes", "placed", "tools")


def workspace_dir(cache_root: Path, root: Path) -> Path:
    return cache_root / "workspaces" / digest_bytes(str(root.resolve()).encode())[:16]


class State:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "state"
        self.session = directory / "journal" / f"{os.getpid()}-{time.time_ns()}"
        """This run's journal; forked workers write into it too."""
        self.dirty = False
        self._merged: list[Path] = []
        self._loaded: dict[str, dict] | None = None

    @property
    def _data(self) -> dict[str, dict]:
        """The saved state, with the journals of ended runs taken in: read on first use,
        so that a run the fast path settles never parses it."""
        if self._loaded is None:
            data = _load(self.path)
            self._loaded = {name: data.get(name, {}) for name in _TABLES}
            self._merge(finished_only=True)
        return self._loaded

    @property
    def files(self) -> dict[str, tuple]:
        """path -> (ino, ctime_ns, mtime_ns, size, digest)"""
        return self._data["files"]

    @property
    def nodes(self) -> dict[str, tuple]:
        """label -> (key, outputs, touched_at); the inputs behind a key are in its AC entry"""
        return self._data["nodes"]

    @property
    def placed(self) -> dict[str, tuple]:
        """_out name -> (digest, ino, mtime_ns, size)"""
        return self._data["placed"]

    @property
    def tools(self) -> dict[str, tuple]:
        return self._data["tools"]

    def record(self, label: str, result: tuple) -> None:
        self.nodes[label] = result
        self.dirty = True

    def write_journal(self, label: str, result: tuple, placed: dict[str, tuple]) -> None:
        """Record a node result from any process; durable before the step reports done."""
        name = digest_bytes(label.encode())[:24]
        atomic_write(self.session / name, marshal.dumps((label, result, placed)))

    def read_journal(self, label: str) -> tuple | None:
        """(result, placed) of ``label`` as a worker of this run journaled it, or None."""
        try:
            data = (self.session / digest_bytes(label.encode())[:24]).read_bytes()
        except OSError:
            return None
        return marshal.loads(data)[1:]

    def _merge(self, finished_only: bool) -> None:
        """Take in the journals of runs that ended (killed ones too), and this run's own.

        A journal is deleted only once a saved state holds what it said.
        """
        journal = self.session.parent
        if not journal.is_dir():
            return
        for run in sorted(journal.iterdir()):
            mine = run == self.session
            if run in self._merged or (mine and finished_only):
                continue
            pid = run.name.split("-", 1)[0]
            if not mine and pid.isdigit() and process_alive(int(pid)):
                continue
            for entry in sorted(run.iterdir()):
                with contextlib.suppress(OSError, ValueError, EOFError, TypeError):
                    label, result, placed = marshal.loads(entry.read_bytes())
                    self.nodes[label] = result
                    self.placed.update(placed)
                    self.dirty = True
            if not mine:
                self._merged.append(run)

    def save(self, force: bool = False) -> None:
        if self._loaded is None and not force:
            return  # never read, so nothing changed
        self._merge(finished_only=False)
        if self.dirty or force:
            atomic_write(self.path, marshal.dumps({"format": FORMAT, **self._data}))
            self.dirty = False
        for run in [*self._merged, self.session]:
            shutil.rmtree(run, ignore_errors=True)
        self._merged = []


def _load(path: Path) -> dict[str, Any]:
    data = load_marshal(path)
    return data if isinstance(data, dict) and data.get("format") == FORMAT else {}


def load_marshal(path: Path) -> Any:
    try:
        return marshal.loads(path.read_bytes())
    except (OSError, ValueError, EOFError, TypeError):
        return None


def save_marshal(path: Path, value: Any) -> None:
    atomic_write(path, marshal.dumps(value))
