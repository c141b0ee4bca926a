"""The remote cache on a real registry (Distribution, on loopback): two clones with their
own local caches share built outputs; untrusted or damaged entries are never hits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from project import REPO, _run, doit, node_events
from realgraph import clone, sha256
from registry_server import serve_registry

pytestmark = pytest.mark.slow

GOAL = ("iso", "image-metal")
"""Boot assets and a disk image: the package images, kernel, initramfs, GRUB, disks."""


def keygen(path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "buildgraph.cli", "cache", "keygen", str(path)],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    return next(line.split()[-1] for line in done.stdout.splitlines() if "public key" in line)


class Machine:
    """A clone with its own local cache, as a CI runner or a laptop has."""

    def __init__(self, base: Path, name: str, env: dict[str, str]) -> None:
        self.root = clone(base / name / "src")
        self.cache = base / name / "cache"
        self.env = env

    def build(self, *args: str, env: dict[str, str] | None = None) -> tuple[dict, dict]:
        done = doit(self.root, self.cache, *args, env={**self.env, **(env or {})})
        assert done.returncode == 0, done.stdout + done.stderr[-6000:]
        events = {e["node"]: e for e in node_events(done.stderr)}
        return {n: e["status"] for n, e in events.items()}, events

    def explain(self, *args: str) -> str:
        done = _run(self.root, self.cache, ["-m", "buildgraph.cli", "explain", *args], False,
                    self.env)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    def outputs(self) -> dict[str, str]:
        out = self.root / "_out"
        return {
            str(p.relative_to(out)): sha256(p)
            for p in sorted(out.rglob("*"))
            if p.is_file() and not p.name.startswith(".")
        }


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A registry, a writer that built GOAL into it, and the writer's public key."""
    base = tmp_path_factory.mktemp("remote")
    with serve_registry(base / "registry", access_log=True) as registry:
        public = keygen(base / "writer.pem")
        env = {
            "BUILDGRAPH_REMOTE_CACHE": f"{registry.host}/ci/cache",
            "BUILDGRAPH_REMOTE_CACHE_KEY": str(base / "writer.pem"),
        }
        writer = Machine(base, "writer", env)
        statuses, _events = writer.build(*GOAL)
        assert "built" in statuses.values()
        yield registry, writer, public, base


def reader(shared, name: str, **extra: str) -> Machine:
    registry, _writer, public, base = shared
    env = {"BUILDGRAPH_REMOTE_CACHE": f"{registry.host}/ci/cache",
           "BUILDGRAPH_REMOTE_CACHE_TRUST": public, **extra}  # fmt: skip
    return Machine(base, name, env)


def blob_gets(registry) -> list[str]:
    return [path for method, path, _ in registry.requests() if method == "GET" and "/blobs/" in path]


def test_a_fresh_clone_runs_no_step_and_gets_the_same_bytes(shared):
    registry, writer, _public, _base = shared
    before = len(blob_gets(registry))
    machine = reader(shared, "reader")
    statuses, events = machine.build(*GOAL)
    assert set(statuses.values()) == {"remote"}, statuses
    goal_outputs = {"metal-amd64.iso", "metal-amd64.raw.zst"} & set(machine.outputs())
    assert goal_outputs
    for name in goal_outputs:
        assert machine.outputs()[name] == writer.outputs()[name]
    fetched = {n for n, e in events.items() if e.get("downloaded")}
    assert fetched == {n for n in statuses if n.split(":")[0] in GOAL}, fetched
    # Intermediate outputs stayed in the registry: only the goal's chunks and entries moved.
    assert not (machine.root / "_out" / "vmlinuz-amd64").exists()
    gets = blob_gets(registry)[before:]
    assert len(gets) <= len(statuses) + sum(1 for _ in goal_outputs) * 4, gets
    # A second build asks the registry nothing: this machine verified those entries.
    asked = len(registry.requests())
    again, _ = machine.build(*GOAL)
    assert set(again.values()) == {"cached"}
    assert len(registry.requests()) == asked


def test_explain_says_remote_hit(shared):
    text = reader(shared, "explaining").explain("iso")
    assert "iso:amd64" in text and "remote hit" in text, text
    assert "would run" not in text


def test_an_untrusted_writer_is_no_hit(shared, tmp_path):
    other = keygen(tmp_path / "other.pem")
    machine = reader(shared, "untrusting", BUILDGRAPH_REMOTE_CACHE_TRUST=other)
    text = machine.explain("iso")
    assert "remote entry rejected: signed by key" in text, text
    assert "remote hit" not in text


def test_an_unreachable_remote_cache_is_a_warning_and_a_local_build(shared, tmp_path):
    from registry_server import free_port

    machine = reader(shared, "offline")
    machine.env["BUILDGRAPH_REMOTE_CACHE"] = f"127.0.0.1:{free_port()}/ci/cache"
    done = doit(machine.root, machine.cache, "kernel", env=machine.env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("remote cache:") == 1, done.stderr
    strict = reader(shared, "offline-strict", BUILDGRAPH_REMOTE_CACHE_REQUIRED="true")
    strict.env["BUILDGRAPH_REMOTE_CACHE"] = machine.env["BUILDGRAPH_REMOTE_CACHE"]
    done = doit(strict.root, strict.cache, "kernel", env=strict.env)
    assert done.returncode != 0
    assert "remote cache" in done.stderr and "Traceback" not in done.stderr
    assert not (strict.root / "_out" / "vmlinuz-amd64").exists()
