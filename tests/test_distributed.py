"""One build on a real Dask cluster (a scheduler and workers, each its own process on
127.0.0.1) sharing bytes through a real registry: nodes run once, on workers that can run
them, and give the bytes a local build gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dask_cluster import WorkerSpec, serve_cluster
from project import REPO, doit, node_events
from realgraph import clone, sha256
from registry_server import serve_registry

from buildgraph.engine.store import Store

pytestmark = pytest.mark.slow

DEPS = ("kernel", "initramfs", "pkg-grub")
"""Built by the client before the cluster runs: what every disk image reads."""
PROFILES = ("metal", "aws", "gcp")
GOAL = tuple(f"image-{name}" for name in PROFILES)
AMD64 = {"PLATFORM": "linux/amd64"}


def keygen(path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "buildgraph.cli", "cache", "keygen", str(path)],
        capture_output=True, check=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A registry, a signing key, a client clone whose cache holds DEPS (and the remote
    cache too), and the bytes of GOAL from a plain local build in another clone."""
    base = tmp_path_factory.mktemp("distributed")
    with serve_registry(base / "registry") as registry:
        keygen(base / "key.pem")
        remote = {
            "BUILDGRAPH_REMOTE_CACHE": f"{registry.host}/ci/cache",
            "BUILDGRAPH_REMOTE_CACHE_KEY": str(base / "key.pem"),
        }
        client = clone(base / "client")
        done = doit(client, base / "client-cache", *DEPS, env={**AMD64, **remote})
        assert done.returncode == 0, done.stderr[-4000:]
        local = clone(base / "local")
        done = doit(local, base / "local-cache", *GOAL, env=AMD64)
        assert done.returncode == 0, done.stderr[-4000:]
        files = summary(done.stderr)["outputs"]
        yield {"base": base, "registry": registry, "remote": remote, "client": client,
               "expected": {name: sha256(local / name) for name in files}}  # fmt: skip


def summary(stderr: str) -> dict:
    return next(json.loads(line) for line in stderr.splitlines()
                if line.startswith("{") and '"summary"' in line)  # fmt: skip


def worker_keys(cache: Path) -> set[str]:
    """The action keys a worker's own cache holds: what its steps ran."""
    if not (cache / "ac.sqlite").exists():
        return set()
    store = Store(cache)
    try:
        return {key for key, _entry in store.actions()}
    finally:
        store.close()


def run_on(world, cluster, *args: str, **variables: str) -> subprocess.CompletedProcess:
    env = {**AMD64, **world["remote"], **variables}
    return doit(world["client"], world["base"] / "client-cache", *args,
                f"BUILDGRAPH_SCHEDULER={cluster.address}", env=env)  # fmt: skip


def test_a_cluster_build_runs_each_node_once_where_it_can_and_matches_a_local_build(world):
    base = world["base"]
    a, b = base / "worker-a", base / "worker-b"
    specs = [WorkerSpec("a", a, env=world["remote"]),
             WorkerSpec("b", b, resources="disk=1", env=world["remote"])]  # fmt: skip
    with serve_cluster(base / "cluster-1", specs, {"PATH": os.environ["PATH"]}) as cluster:
        done = run_on(world, cluster, *GOAL)
        assert done.returncode == 0, done.stderr[-6000:]
    events = {e["node"]: e for e in node_events(done.stderr)}
    built = {label: e for label, e in events.items() if e["status"] == "built"}
    assert {label.split(":")[0] for label in built} == {
        f"{kind}-{name}" for kind in ("cmdline", "disk", "image") for name in PROFILES
    }
    assert all(e["worker"].startswith("tcp://127.0.0.1:") for e in built.values())
    ran_a, ran_b = worker_keys(a), worker_keys(b)
    assert not ran_a & ran_b, "a node ran on both workers"
    assert ran_a | ran_b == {e["key"] for e in built.values()}, "each built node ran once"
    disks = {e["key"] for label, e in built.items() if label.startswith("disk-")}
    assert disks <= ran_b, "disk images need the disk resource, which only b offers"
    assert ran_a, "the nodes that need nothing were shared"
    got = {name: sha256(world["client"] / name) for name in world["expected"]}
    assert got == world["expected"]
