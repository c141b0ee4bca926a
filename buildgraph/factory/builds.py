"""Builds on demand: one build per asset however many ask, a bounded number at once.

Requests for the same asset share one build (single flight): the first starts it, the
others wait for the same result. The build runs in its own process (:mod:`.worker`) into a
directory of its own, named by what it builds, so concurrent builds of different assets
never meet. At most ``max_builds`` run at once; ``max_waiting`` more may wait for a slot,
and beyond that a request is refused as busy (503 with Retry-After). A build is shielded
from its requests: a client that goes away cancels nothing others wait for.

A finished build is remembered by its key; its output is a hard link into the content
store, immutable, so the next request streams it without asking the engine again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from ..engine.errors import BuildgraphError
from .request import Build

log = structlog.get_logger("factory")
Outputs = dict[str, list[Path]]


class BuildFailedError(BuildgraphError):
    """A build that failed: the message is the engine's, naming the node (500)."""


class BusyError(BuildgraphError):
    """Every build slot and every waiting place is taken (503)."""


@dataclass
class Metrics:
    """Counters for /metrics."""

    builds: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0})
    build_seconds: float = 0.0
    cache_hits: int = 0
    """Assets served without running a step: remembered, or every node cached."""
    running: int = 0
    waiting: int = 0


class Builder:
    def __init__(self, root: Path, state: Path, max_builds: int = 2, max_waiting: int = 32) -> None:
        self.root = root
        self.state = state
        self.max_builds, self.max_waiting = max_builds, max_waiting
        self.slots = asyncio.Semaphore(max_builds)
        self.metrics = Metrics()
        self._flights: dict[str, asyncio.Task[Outputs]] = {}
        self._done: dict[str, Outputs] = {}

    async def output(self, build: Build) -> Path:
        """The path of ``build``'s asset, building it if no one has."""
        (path,) = (await self.outputs(build))[build.target]
        return path

    async def outputs(self, build: Build) -> Outputs:
        """The outputs of each target of ``build``'s goal, building them if no one has."""
        key = _key(build)
        done = self._done.get(key)
        if done is not None and all(p.exists() for paths in done.values() for p in paths):
            self.metrics.cache_hits += 1
            return done
        flight = self._flights.get(key)
        if flight is None:
            if len(self._flights) >= self.max_builds + self.max_waiting:
                raise BusyError(
                    f"{self.metrics.running} builds are running and {self.metrics.waiting}"
                    " waiting", hint="retry later")  # fmt: skip
            flight = asyncio.get_running_loop().create_task(self._run(key, build))
            self._flights[key] = flight
            flight.add_done_callback(lambda _task: self._flights.pop(key, None))
        return await asyncio.shield(flight)

    async def _run(self, key: str, build: Build) -> Outputs:
        self.metrics.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.metrics.waiting -= 1
        self.metrics.running += 1
        started = time.monotonic()
        try:
            answer = await self._work(key, build)
        finally:
            self.metrics.running -= 1
            self.slots.release()
            seconds = time.monotonic() - started
            self.metrics.build_seconds += seconds
        if "error" in answer:
            self.metrics.builds["failed"] += 1
            log.warning("factory build failed", key=key, error=answer["error"])
            raise BuildFailedError(answer["error"], hint=answer.get("hint"))
        self.metrics.builds["ok"] += 1
        if answer.get("built") == 0:
            self.metrics.cache_hits += 1
        outputs = {t: [Path(p) for p in paths] for t, paths in answer["outputs"].items()}
        log.info("factory build", key=key, target=build.target, built=answer.get("built"),
                 duration=round(seconds, 3))  # fmt: skip
        self._done[key] = outputs
        return outputs

    async def _work(self, key: str, build: Build) -> dict:
        job = {"root": str(self.root), "out": str(self.state / "out" / key),
               "goal": list(build.goal), "variables": build.variables}  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "buildgraph.factory.worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        try:
            stdout, _ = await process.communicate(json.dumps(job).encode())
        finally:
            if process.returncode is None:  # the factory is stopping: so is the build
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                await process.wait()
        lines = stdout.decode(errors="replace").strip().splitlines()
        try:
            return json.loads(lines[-1])
        except (IndexError, ValueError):
            return {"error": f"the build of {build.target} ended (exit {process.returncode})"
                    " without an answer", "hint": "see the factory's log"}  # fmt: skip


def _key(build: Build) -> str:
    text = json.dumps([build.goal, build.variables], sort_keys=True).encode()
    return hashlib.sha256(text).hexdigest()[:32]
