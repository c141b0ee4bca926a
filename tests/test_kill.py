"""SIGKILL in the middle of a step leaves nothing that looks valid.

The real doit front end builds in a subprocess; a slow shell step writes part of its
output, signals that it is under way and waits. The whole process group is killed
with SIGKILL. Then the action cache holds entries for the completed nodes only, no
output of the killed step reached ``_out/``, and a rerun (the step's key unchanged)
runs the step again, produces correct outputs and reaps the killed build's scratch.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from buildgraph.engine.store import Store

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent

SPECS = """
targets:
  fast:
    step: concat
    sources: [src/fast.txt]
    params: {{text: "<fast>\\n"}}
    outputs: [fast.out]
  slow:
    step: shell
    sources: [src/slow.txt]
    params:
      script: |
        echo run >> {runs}
        printf 'partial\\n' > $OUT/slow.out
        touch {marker}
        i=0
        while [ -e {gate} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
        cat $SRCS >> $OUT/slow.out
        echo done >> $OUT/slow.out
    outputs: [slow.out]
  top:
    step: concat
    needs: [fast, slow]
    params: {{text: "<top>\\n"}}
    outputs: [top.out]
"""


def _env(cache: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),  # this checkout's code, not whatever the venv installed
        "HOME": str(cache.parent),
        "BUILDGRAPH_CACHE": str(cache),
        "BUILDGRAPH_LOG": "json",
        "TAG": "v1.0.0",
        "SOURCE_DATE_EPOCH": "1700000000",
    }


def _actions(cache: Path) -> dict[str, dict]:
    """Every committed action-cache entry, by key."""
    return dict(Store(cache).actions())


def _statuses(stderr: str) -> dict[str, str]:
    events = (json.loads(line) for line in stderr.splitlines() if line.startswith("{"))
    return {e["node"]: e["status"] for e in events if e.get("event") == "node"}


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"build ended before the slow step started:\n{out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError("the slow step did not start in time")
        time.sleep(0.02)


def test_sigkill_mid_step_leaves_no_cache_entry_and_rerun_is_correct(tmp_path: Path) -> None:
    root, cache = tmp_path / "repo", tmp_path / "cache"
    marker, gate, runs = tmp_path / "started", tmp_path / "gate", tmp_path / "runs"
    (root / "targets").mkdir(parents=True)
    (root / "src").mkdir()
    (root / "targets" / "graph.yaml").write_text(
        textwrap.dedent(SPECS).format(marker=marker, gate=gate, runs=runs)
    )
    (root / "src" / "fast.txt").write_text("fast\n")
    (root / "src" / "slow.txt").write_text("slow\n")
    for name in ("dodo.py", "pyproject.toml"):
        shutil.copy(REPO / name, root / name)
    gate.touch()
    argv = [sys.executable, "-m", "doit", "top"]

    proc = subprocess.Popen(
        argv,
        cwd=root,
        env=_env(cache),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for(marker, proc, timeout=120)
        # The step is mid-way: its partial output is in a scratch directory.
        scratch = [p for p in (cache / "tmp").iterdir()]
        assert any((p / "out" / "slow.out").exists() for p in scratch), scratch
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # Only the node that completed has an action; nothing of slow or top was published.
    after_kill = _actions(cache)
    outputs = [sorted(entry["outputs"]) for entry in after_kill.values()]
    assert outputs == [["fast.out"]]
    assert (root / "_out" / "fast.out").read_text() == "fast\n<fast>\n"
    assert not (root / "_out" / "slow.out").exists()
    assert not (root / "_out" / "top.out").exists()
    # The killed build's scratch directory is still there, for the next build to reap.
    killed_scratch = sorted((cache / "tmp").iterdir())
    assert killed_scratch

    # Rerun, the step's key unchanged; this time the step does not wait.
    gate.unlink()
    rerun = subprocess.run(
        argv, cwd=root, env=_env(cache), capture_output=True, text=True, timeout=300, check=False
    )
    assert rerun.returncode == 0, rerun.stderr
    assert _statuses(rerun.stderr) == {"fast": "cached", "slow": "built", "top": "built"}
    assert runs.read_text() == "run\nrun\n"
    slow = "partial\nslow\ndone\n"
    assert (root / "_out" / "slow.out").read_text() == slow
    assert (root / "_out" / "top.out").read_text() == "fast\n<fast>\n" + slow + "<top>\n"

    actions = _actions(cache)
    assert set(after_kill) < set(actions)
    assert sorted(sorted(entry["outputs"]) for entry in actions.values()) == [
        ["fast.out"],
        ["slow.out"],
        ["top.out"],
    ]
    # slow's entry is the rerun's, made after the kill, and names the complete bytes.
    slow_key = next(k for k, entry in actions.items() if "slow.out" in entry["outputs"])
    assert slow_key not in after_kill
    assert actions[slow_key]["outputs"]["slow.out"][1] == len(slow)

    # The rerun reaped the killed build's scratch and removed its own.
    left = list((cache / "tmp").iterdir()) if (cache / "tmp").is_dir() else []
    assert left == []
    assert not any(p.exists() for p in killed_scratch)

    # And a third run has nothing to do.
    again = subprocess.run(
        argv, cwd=root, env=_env(cache), capture_output=True, text=True, timeout=300, check=False
    )
    assert again.returncode == 0, again.stderr
    assert set(_statuses(again.stderr).values()) == {"cached"}
    assert runs.read_text() == "run\nrun\n"
