"""One build on a real Dask cluster (a scheduler and workers, each its own process on
127.0.0.1) sharing bytes through a real registry: nodes run once, on workers that can run
them, and give the bytes a local build gives."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dask_cluster import WorkerSpec, joined_project, serve_cluster
from project import doit, environment, log_events, node_events
from realgraph import clone, sha256
from registry_server import serve_registry

from buildgraph.engine.store import Store
from buildgraph.remote.entry import decode, keygen

pytestmark = pytest.mark.slow

DEPS = ("kernel", "initramfs", "pkg-grub")
"""Built by the client before the cluster runs: what every disk image reads."""
PROFILES = ("metal", "aws", "gcp")
GOAL = tuple(f"image-{name}" for name in PROFILES)
AMD64 = {"PLATFORM": "linux/amd64"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A registry, a signing key, a client clone whose cache holds DEPS (and the remote
    cache too), and the bytes of GOAL from a plain local build in another clone."""
    base = tmp_path_factory.mktemp("distributed")
    with serve_registry(base / "registry") as registry:
        keygen(base / "key.pem")  # as `buildgraph cache keygen` does
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
        expected = {name: sha256(local / name) for name in files}
        yield {"base": base, "registry": registry, "remote": remote, "client": client,
               "local": local, "expected": expected}  # fmt: skip


def summary(stderr: str) -> dict:
    (event,) = log_events(stderr, "summary")
    return event


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
        again = run_on(world, cluster, *GOAL)
    assert again.returncode == 0, again.stderr[-6000:]
    assert {e["status"] for e in node_events(again.stderr)} <= {"cached"}, "a no-op ran nodes"
    events = {e["node"]: e for e in node_events(done.stderr)}
    built = {label: e for label, e in events.items() if e["status"] == "built"}
    assert {label.split(":")[0] for label in built} == {
        f"{kind}-{name}" for kind in ("cmdline", "disk", "edit", "image") for name in PROFILES
    }
    assert all(e["worker"].startswith("tcp://127.0.0.1:") for e in built.values())
    ran_a, ran_b = worker_keys(a), worker_keys(b)
    assert not ran_a & ran_b, "a node ran on both workers"
    assert ran_a | ran_b == {e["key"] for e in built.values()}, "each built node ran once"
    disks = {e["key"] for label, e in built.items() if label.startswith(("disk-", "edit-"))}
    assert disks <= ran_b, "disks and their edits need the disk resource, which only b offers"
    assert ran_a, "the nodes that need nothing were shared"
    got = {name: sha256(world["client"] / name) for name in world["expected"]}
    assert got == world["expected"]


def local_bytes(world, **variables: str) -> dict[str, str]:
    """GOAL's files from a plain local build with ``variables``, in the local clone."""
    done = doit(world["local"], world["base"] / "local-cache", *GOAL, env={**AMD64, **variables})
    assert done.returncode == 0, done.stderr[-4000:]
    return {name: sha256(world["local"] / name) for name in summary(done.stderr)["outputs"]}


def path_without(directory: Path, missing: str) -> str:
    """A PATH of links to every program there is but ``missing``."""
    directory.mkdir(parents=True, exist_ok=True)
    for bin_dir in ("/usr/local/bin", "/usr/bin", "/usr/sbin", "/bin", "/sbin"):
        for program in Path(bin_dir).iterdir() if Path(bin_dir).is_dir() else ():
            link = directory / program.name
            if program.name != missing and not link.exists():
                link.symlink_to(program)
    return str(directory)


def test_a_worker_without_a_tool_refuses_and_its_nodes_go_to_one_that_has_it(world):
    base = world["base"]
    lacking, able = base / "worker-lacking", base / "worker-able"
    env = {"PATH": path_without(base / "no-sgdisk", "sgdisk"), **world["remote"]}
    specs = [WorkerSpec("lacking", lacking, resources="disk=1", env=env),
             WorkerSpec("able", able, resources="disk=1", env=world["remote"])]  # fmt: skip
    with serve_cluster(base / "cluster-2", specs, {"PATH": os.environ["PATH"]}) as cluster:
        done = run_on(world, cluster, *GOAL, KERNEL_ARGS="refusal.test=1")
    assert done.returncode == 0, done.stderr[-6000:]
    built = {e["node"]: e for e in node_events(done.stderr) if e["status"] == "built"}
    disks = {e["key"] for label, e in built.items() if label.startswith("disk-")}
    assert len(disks) == len(PROFILES)
    assert disks <= worker_keys(able) and not disks & worker_keys(lacking)
    assert "refused it: tool 'sgdisk' is not installed" in done.stderr
    assert {n: sha256(world["client"] / n) for n in world["expected"]} == local_bytes(
        world, KERNEL_ARGS="refusal.test=1"
    )


def test_when_no_worker_can_run_a_node_the_build_stops_naming_it_and_why(world):
    base = world["base"]
    env = {"PATH": path_without(base / "no-sgdisk", "sgdisk"), **world["remote"]}
    specs = [WorkerSpec("lacking", base / "worker-alone", resources="disk=1", env=env)]
    with serve_cluster(base / "cluster-3", specs, {"PATH": os.environ["PATH"]}) as cluster:
        done = run_on(world, cluster, "image-metal", KERNEL_ARGS="nobody.can=1")
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("buildgraph: error")]
    assert len(errors) == 1, done.stderr[-4000:]
    assert "disk-metal:amd64: every worker able to run it refused" in errors[0]
    assert "sgdisk" in errors[0]


STEP_TOOLS = {"mke2fs", "debugfs", "sgdisk", "mcopy", "mkfs.fat", "mkfs.vfat", "grub-mkimage",
              "qemu-img", "zstd", "tar", "gzip"}  # fmt: skip


def build_killing_a_worker(world, cluster, names: tuple[str, ...], kernel_args: str):
    """Run the cluster build of GOAL, SIGKILL the first worker seen running a step's tool;
    (the build's exit status, its stderr, the worker killed or None)."""
    env = {**AMD64, **world["remote"], "KERNEL_ARGS": kernel_args}
    build = subprocess.Popen(
        [sys.executable, "-m", "doit", *GOAL, f"BUILDGRAPH_SCHEDULER={cluster.address}"],
        cwd=world["client"], env=environment(world["base"] / "client-cache", env=env),
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and build.poll() is None and time.monotonic() < deadline:
        for name in names:
            worker = cluster.worker_process(name)
            if any(p.name() in STEP_TOOLS for p in worker.children(recursive=True)):
                killed = name
                os.kill(worker.pid, signal.SIGKILL)
                break
        time.sleep(0.02)
    _out, stderr = build.communicate(timeout=600)
    return build.returncode, stderr, killed


def test_a_worker_killed_mid_step_costs_a_retry_not_the_build_nor_a_bad_entry(world):
    base = world["base"]
    specs = [WorkerSpec(name, base / f"worker-{name}", resources="disk=1", env=world["remote"])
             for name in ("x", "y")]  # fmt: skip
    with serve_cluster(base / "cluster-4", specs, {"PATH": os.environ["PATH"]}) as cluster:
        code, stderr, killed = build_killing_a_worker(world, cluster, ("x", "y"), "killed.worker=1")
    assert killed, "no step was seen running on a worker"
    assert code == 0, stderr[-6000:]
    assert {n: sha256(world["client"] / n) for n in world["expected"]} == local_bytes(
        world, KERNEL_ARGS="killed.worker=1"
    )
    client, local = Store(base / "client-cache"), Store(base / "local-cache")
    try:
        for event in node_events(stderr):
            if event["status"] != "built":
                continue
            kept = json.loads(client.get_remote(event["key"]))  # the entry the client trusted
            shared = decode(kept["entry"].encode()).outputs
            made_here = local.get_action(event["key"])["outputs"]
            assert {n: o.digest for n, o in shared.items()} == {
                n: digest for n, (digest, _size) in made_here.items()
            }, f"the remote cache's {event['node']} is not what a local build makes"
    finally:
        client.close()
        local.close()


def test_a_node_whose_workers_keep_dying_stops_the_build_naming_it_and_the_worker(world):
    base = world["base"]
    specs = [WorkerSpec("z", base / "worker-z", resources="disk=1", env=world["remote"])]
    env = {"PATH": os.environ["PATH"], "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    with serve_cluster(base / "cluster-5", specs, env) as cluster:
        code, stderr, killed = build_killing_a_worker(world, cluster, ("z",), "dying.worker=1")
    assert killed and code != 0
    said = [line for line in stderr.splitlines() if line.startswith("buildgraph: error")]
    assert len(said) == 1, stderr[-4000:]
    assert re.match(r"buildgraph: error: \S+:amd64: 1 worker died running it, the last"
                    r" tcp://127\.0\.0\.1:\d+$", said[0]), said[0]  # fmt: skip


def test_a_node_with_sources_gets_them_through_the_remote_cache(world, tmp_path):
    root = joined_project(tmp_path / "repo")
    specs = [WorkerSpec("s", tmp_path / "worker", env=world["remote"])]
    with serve_cluster(tmp_path / "cluster", specs, {"PATH": os.environ["PATH"]}) as cluster:
        done = doit(root, tmp_path / "cache", f"BUILDGRAPH_SCHEDULER={cluster.address}",
                    env=world["remote"])  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert [e["status"] for e in node_events(done.stderr)] == ["built"]
    assert (root / "_out" / "joined.txt").read_text() == "a\necho b\n"
