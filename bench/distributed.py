"""A build on a Dask cluster: two workers against one, and against a local ``doit -n 2``.

Why this exists: ``doit images BUILDGRAPH_SCHEDULER=...`` should spread independent nodes
over the workers of a cluster, so that two workers take about half the time of one, and
each node should cost the cluster little beyond its step. This script measures, in one
run, on this machine, with a real ``dask scheduler``, ``dask worker`` processes (each
``--nthreads 1``, pinned to one CPU with taskset) and CNCF Distribution on loopback:

* ``local -n 2``: ``doit -n 2 GOAL`` in the client's clone, no cluster, no remote cache;
* ``1 worker``: ``doit GOAL BUILDGRAPH_SCHEDULER=...`` with one worker on CPU 0;
* ``2 workers``: the same with workers on CPU 0 and CPU 1.

GOAL is ``image-<profile>`` for 8 profiles, amd64, ``ZSTD_LEVEL=3`` as in an edit loop:
32 nodes to run (cmdline, disk, edit and image of each), independent across profiles. Every
round of every peer gives a new ``KERNEL_ARGS``, so all 32 run; the kernel, initramfs
and GRUB package were built once beforehand (not timed), into the client's cache and the
remote cache, and each worker's own cache holds them after a warm-up round (not timed),
as a CI machine's would.

The per-node overhead: 40 independent trivial nodes (``concat`` of one fresh source file
each), ``buildgraph build`` here against ``buildgraph build --scheduler`` on one worker;
(cluster - local) / 40 is what a node costs on the cluster beyond its step: the task
round trip, uploads and downloads through the registry, the entry lookup.

The client, the registry and the scheduler share the machine's 2 CPUs with the workers.

Usage::

    .venv/bin/python bench/distributed.py [--repeat N]

It writes its section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from checkout import copy_checkout
from common import WORK, exclusive, host, revision, say, write_section
from dask_cluster import WorkerSpec, serve_cluster
from project import environment, make_project, node_events
from registry_server import serve_registry

from buildgraph.remote.entry import keygen

HERE = WORK / "distributed"
PROFILES = ("metal", "aws", "gcp", "azure", "exoscale", "openstack", "oracle", "vultr")
"""Eight whose images are zstd or gzip: xz would make the rounds minutes long."""
GOAL = [f"image-{name}" for name in PROFILES]
DEPS = ["kernel", "initramfs", "pkg-grub"]
AMD64 = {"PLATFORM": "linux/amd64", "ZSTD_LEVEL": "3"}
TRIVIAL = 40
PATH = {"PATH": os.environ["PATH"]}
BEGIN, END = "<!-- bench/distributed.py -->", "<!-- /bench/distributed.py -->"
TITLE = "## A build on a Dask cluster: 2 workers, 1, and local -n 2 (bench/distributed.py)"
HEADER = [
    "| peer | wall (s) | nodes built | speed-up over 1 worker | over local -n 2 |",
    "|---|---:|---:|---:|---:|",
]


def run(root: Path, cache: Path, argv: list[str], env: dict[str, str]) -> tuple[float, list]:
    """Run ``python -m ARGV`` in ``root``; (wall seconds, its node events)."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", *argv], cwd=root, capture_output=True,
                          text=True, check=False, env=environment(cache, env=env))  # fmt: skip
    wall = time.monotonic() - started
    if done.returncode:
        raise SystemExit(done.stderr[-4000:])
    return wall, node_events(done.stderr)


def built(events: list) -> int:
    return sum(1 for e in events if e["status"] == "built")


def trivial_project(root: Path, round_: int) -> Path:
    names = [f"n{i:02d}" for i in range(TRIVIAL)]
    specs = "targets:\n" + "".join(
        f"  {n}:\n    step: concat\n    sources: [src/{n}.txt]\n    outputs: [{n}.out]\n"
        for n in names
    )
    specs += f"aliases:\n  all: [{', '.join(names)}]\n"
    return make_project(root, specs, {f"src/{n}.txt": f"{n} {round_}\n" for n in names})


def measure(repeat: int) -> tuple[list[str], list[str]]:
    shutil.rmtree(HERE, ignore_errors=True)
    HERE.mkdir(parents=True)
    with serve_registry(HERE / "registry") as registry:
        key = HERE / "key.pem"
        keygen(key)
        remote = {"BUILDGRAPH_REMOTE_CACHE": f"{registry.host}/bench/cache",
                  "BUILDGRAPH_REMOTE_CACHE_KEY": str(key)}  # fmt: skip
        client, cache = copy_checkout(HERE / "client"), HERE / "client-cache"
        say("set-up: the boot assets every disk reads, here and in the remote cache (not timed)")
        run(client, cache, ["doit", *DEPS], {**AMD64, **remote})
        walls: dict[str, list[float]] = {"local -n 2": [], "1 worker": [], "2 workers": []}
        ran: dict[str, int] = {}
        clusters = {"1 worker": [(0,)], "2 workers": [(0,), (1,)]}
        specs = {
            peer: [WorkerSpec(f"w{i}", HERE / f"worker-{i}", env=remote, cpus=cpus,
                              resources="disk=1") for i, cpus in enumerate(cpu_sets)]
            for peer, cpu_sets in clusters.items()
        }  # fmt: skip
        for round_ in range(repeat + 1):
            warm_up = round_ == 0
            for peer in walls:
                args = {**AMD64, "KERNEL_ARGS": f"bench.{peer.split()[0]}={round_}"}
                if peer == "local -n 2":
                    wall, events = run(client, cache, ["doit", "-n", "2", *GOAL], args)
                else:
                    with serve_cluster(HERE / f"cluster-{peer[0]}", specs[peer], PATH) as cluster:
                        scheduler = f"BUILDGRAPH_SCHEDULER={cluster.address}"
                        wall, events = run(client, cache, ["doit", *GOAL, scheduler],
                                           {**args, **remote})  # fmt: skip
                say(f"round {round_}{' (warm-up)' if warm_up else ''}: {peer} {wall:.1f} s,"
                    f" {built(events)} built")  # fmt: skip
                if not warm_up:
                    walls[peer].append(wall)
                    ran[peer] = built(events)
        overhead = []
        with serve_cluster(HERE / "cluster-t", specs["1 worker"], PATH) as cluster:
            for round_ in range(repeat + 1):
                times = []
                for peer in ("local", "cluster"):
                    root = trivial_project(HERE / f"trivial-{peer}-{round_}", round_)
                    argv = ["buildgraph.cli", "build", "all"]
                    if peer == "cluster":
                        argv += ["--scheduler", cluster.address]
                    env = remote if peer == "cluster" else {}
                    wall, events = run(root, HERE / f"trivial-cache-{peer}", argv, env)
                    assert built(events) == TRIVIAL, events
                    times.append(wall)
                if round_:
                    overhead.append((times[1] - times[0]) / TRIVIAL)
                say(f"trivial round {round_}: local {times[0]:.1f} s, 1 worker {times[1]:.1f} s")
    median = {peer: statistics.median(values) for peer, values in walls.items()}
    rows = [
        f"| {peer} | {median[peer]:.1f} | {ran[peer]} "
        f"| {median['1 worker'] / median[peer]:.2f} | {median['local -n 2'] / median[peer]:.2f} |"
        for peer in walls
    ]
    notes = [
        f"Per-node overhead on the cluster ({TRIVIAL} trivial nodes, 1 worker against"
        f" `buildgraph build` here, median of {repeat}):"
        f" {statistics.median(overhead) * 1000:.0f} ms.",
    ]
    return rows, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="timed rounds (default 2)")
    args = parser.parse_args()
    with exclusive():
        rows, notes = measure(args.repeat)
    command = f"`.venv/bin/python bench/distributed.py --repeat {args.repeat}` at {revision()}"
    setting = (
        f"{command}, on {host()}; `doit` of {len(GOAL)} disk images (amd64, ZSTD_LEVEL=3),"
        " 32 nodes run per build; workers `--nthreads 1`, each pinned to one CPU; medians of"
        " the timed rounds, after a warm-up round."
    )
    section = "\n".join([TITLE, "", setting, "", *HEADER, *rows, "", *notes])
    write_section(BEGIN, END, section)
    print(section)


if __name__ == "__main__":
    main()
