"""Helpers that make throwaway buildgraph projects for tests: specs, sources, a cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from buildgraph.engine.session import Session

REPO = Path(__file__).resolve().parent.parent
FIXED = {"TAG": "v1.0.0", "SOURCE_DATE_EPOCH": "1700000000"}


def make_project(root: Path, specs: str, files: dict[str, str] | None = None) -> Path:
    """A project at ``root`` with ``targets/graph.yaml`` and the given source files."""
    (root / "targets").mkdir(parents=True, exist_ok=True)
    (root / "targets" / "graph.yaml").write_text(textwrap.dedent(specs))
    for name, text in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for name in ("dodo.py", "pyproject.toml"):
        shutil.copy(REPO / name, root / name)
    return root


def build(root: Path, cache: Path, goal: list[str], **variables: str) -> dict[str, str]:
    """Build in-process; returns label -> built|cached."""
    return Session(root, goal, {**FIXED, **variables}, environ={}, cache_dir=cache).build()


def doit(
    root: Path, cache: Path, *args: str, json_log: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the real doit front end in ``root`` as a user would (``env``: more variables)."""
    return _run(root, cache, ["-m", "doit", *args], json_log, env)


def imager(
    root: Path, cache: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``buildgraph imager ARGS`` in ``root``, with the JSON log on stderr."""
    return _run(root, cache, ["-m", "buildgraph.cli", "imager", *args], True, env, stdin)


def _run(
    root: Path,
    cache: Path,
    argv: list[str],
    json_log: bool,
    env: dict[str, str] | None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *argv],
        cwd=root,
        env=environment(cache, json_log, env),
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def environment(
    cache: Path, json_log: bool = True, env: dict[str, str] | None = None
) -> dict[str, str]:
    """What a front end run by these helpers sees: this checkout's code, its own cache."""
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),  # this checkout's buildgraph, whatever is installed
        "HOME": str(cache.parent),
        "BUILDGRAPH_CACHE": str(cache),
        "TAG": FIXED["TAG"],
        "SOURCE_DATE_EPOCH": FIXED["SOURCE_DATE_EPOCH"],
    }
    if json_log:
        base["BUILDGRAPH_LOG"] = "json"
    return {**base, **(env or {})}


def log_events(stderr: str, name: str) -> list[dict]:
    """The events called ``name`` (``node``, ``summary``) of a JSON log."""
    events = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == name:
                events.append(event)
    return events


def node_events(stderr: str) -> list[dict]:
    """The ``node`` events of a JSON log."""
    return log_events(stderr, "node")


def statuses(stderr: str) -> dict[str, str]:
    return {e["node"]: e["status"] for e in node_events(stderr)}
