"""A real Dask distributed cluster on 127.0.0.1 for tests and benchmarks: ``dask
scheduler`` and ``dask worker`` processes, as a user starts them, stopped by their PIDs."""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from processes import serving
from project import make_project
from registry_server import free_port

DASK = str(Path(sys.executable).with_name("dask"))
JOINED = """
default: [joined]
targets:
  joined:
    step: concat
    sources: [a.txt, tool.sh]
    outputs: [joined.txt]
"""
"""A one-node project with two sources, one executable: what a cluster build of the
smallest kind builds."""


def joined_project(root: Path) -> Path:
    """A project of JOINED at ``root``: its output is the two sources, joined."""
    made = make_project(root, JOINED, {"a.txt": "a\n", "tool.sh": "echo b\n"})
    (made / "tool.sh").chmod(0o755)
    return made


@dataclass
class WorkerSpec:
    name: str
    cache: Path
    """Its BUILDGRAPH_CACHE."""
    resources: str = ""
    """``--resources``, e.g. ``disk=1``."""
    env: dict[str, str] = field(default_factory=dict)
    cpus: tuple[int, ...] = ()
    """CPUs to pin it to with taskset; empty: any."""


@dataclass
class Cluster:
    address: str
    workers: dict[str, psutil.Process]
    """Name -> the nanny process of each worker."""
    logs: dict[str, Path]

    def worker_process(self, name: str) -> psutil.Process:
        """The worker process the nanny ``name`` runs (and restarts when it dies)."""
        for child in self.workers[name].children():  # beside it: multiprocessing's tracker
            if "spawn_main" in " ".join(child.cmdline()):
                return child
        raise AssertionError(f"worker {name} has no worker process")

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")


def _listening(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


@contextlib.contextmanager
def serve_cluster(base: Path, workers: list[WorkerSpec], env: dict[str, str]) -> Iterator[Cluster]:
    """A scheduler and ``workers``, each its own process, until the block ends."""
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    quiet = {**env, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    argv = [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]
    leftovers: list[psutil.Process] = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            serving(argv, base, quiet, base / "scheduler.log", lambda: _listening(port))
        )
        running, logs = {}, {}
        for spec in workers:
            log = logs[spec.name] = base / f"worker-{spec.name}.log"
            argv = [DASK, "worker", address, "--name", spec.name, "--nthreads", "1",
                    "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1"]  # fmt: skip
            if spec.resources:
                argv += ["--resources", spec.resources]
            if spec.cpus:
                argv = ["taskset", "-c", ",".join(map(str, spec.cpus)), *argv]
            worker_env = {**quiet, "BUILDGRAPH_CACHE": str(spec.cache), **spec.env}
            process = stack.enter_context(
                serving(
                    argv, base, worker_env, log, lambda log=log: "Registered to" in log.read_text()
                )
            )
            running[spec.name] = psutil.Process(process.pid)
        try:
            yield Cluster(address, running, logs)
        finally:
            for nanny in running.values():
                with contextlib.suppress(psutil.NoSuchProcess):
                    leftovers += nanny.children(recursive=True)
    for process in leftovers:  # what a nanny stopped by SIGKILL left behind
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
