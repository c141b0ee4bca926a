"""One build on many machines: the nodes that must run go to a Dask distributed cluster.

The client plans as always, then hands every node that must run, as soon as its
dependencies are done, to the scheduler (``BUILDGRAPH_SCHEDULER``) as a
:class:`~buildgraph.engine.dispatch.Task`. Bytes go through the remote cache, never
through Dask: the client shares what workers will read, workers share what they built,
and the client records each node by the remote cache's signed entry, fetching only the
goal's files for ``_out/``.

Placement: a node's step names the resources it needs, and Dask places it only on
workers that advertise them; a worker that still cannot run it as keyed (a tool missing
or of another version) refuses, and the node goes to another worker. A node prefers the
worker that built its largest input, which holds it already. A worker dying
mid-step makes the scheduler run the node elsewhere, up to its ``allowed-failures``;
then the build stops, naming the node and the last worker. A step that publishes (its
probe settles) runs here, as its effect is outside its outputs.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import dispatch, log
from . import step as steps
from .errors import BuildgraphError
from .hashing import Component
from .nodeplan import NodePlan

if TYPE_CHECKING:
    from distributed import Client, Future

    from .session import Session

CONNECT_SECONDS = 10
NEAR_BYTES = 1 << 20
"""An input this large makes the worker that built it the node's preferred place."""
WORKERS_SECONDS = 30
"""How long a build waits for the first worker to join the scheduler."""


@dataclass(frozen=True)
class Settings:
    scheduler: str
    fallback: bool
    """Build here, with a warning, when the scheduler cannot be reached."""


NAMES = ("BUILDGRAPH_SCHEDULER", "BUILDGRAPH_SCHEDULER_FALLBACK")
"""The settings, given in the environment or as NAME=value on doit's command line."""


def split(
    assigned: Mapping[str, str], environ: Mapping[str, str]
) -> tuple[Settings | None, dict[str, str]]:
    """The cluster settings of a command line (NAME=value words, which win) and the
    environment; and the command line's other words, the build's variables."""
    given = {**{n: environ[n] for n in NAMES if n in environ}, **assigned}
    rest = {name: value for name, value in assigned.items() if name not in NAMES}
    return settings(given), rest


def settings(given: Mapping[str, str]) -> Settings | None:
    """The cluster settings in ``given``, checked; None when no scheduler is named."""
    address = given.get("BUILDGRAPH_SCHEDULER", "")
    fallback = given.get("BUILDGRAPH_SCHEDULER_FALLBACK", "")
    if fallback not in ("", "local"):
        raise BuildgraphError(
            f"BUILDGRAPH_SCHEDULER_FALLBACK={fallback!r} is not valid",
            hint="give local (build here when the scheduler is unreachable), or leave it unset",
        )
    if not address:
        return None
    scheme, _, rest = address.partition("://")
    host, _, port = rest.rpartition(":")
    if scheme not in ("tcp", "tls") or not host or not port.isdigit():
        raise BuildgraphError(
            f"BUILDGRAPH_SCHEDULER={address!r} is not valid",
            hint="give the Dask scheduler's address, as tcp://HOST:PORT or tls://HOST:PORT",
        )
    return Settings(address, fallback == "local")


def run(session: Session, pending: list[str], given: Settings) -> bool:
    """Run ``pending`` (planned, in order) on the cluster; False if the scheduler is
    unreachable and the settings fall back to a local build, which the caller does."""
    if not pending:
        return True
    if session.remote is None or not session.remote.writable:
        raise BuildgraphError(
            "a cluster build needs a writable remote cache: its workers read and write"
            " outputs there",
            hint="set BUILDGRAPH_REMOTE_CACHE=<registry>/<repository> and"
            " BUILDGRAPH_REMOTE_CACHE_KEY=<ed25519 private key file>, on the workers too",
        )
    try:
        client = _connect(given.scheduler)
    except BuildgraphError as err:
        if not given.fallback:
            raise
        log.warning(f"{err.message}; building here instead (BUILDGRAPH_SCHEDULER_FALLBACK=local)")
        return False
    try:
        _Dispatcher(session, client, given.scheduler).run(pending)
    finally:
        client.close()
    return True


def _connect(address: str) -> Client:
    from distributed import Client

    try:
        client = Client(address, timeout=CONNECT_SECONDS, set_as_default=False)
    except (OSError, TimeoutError) as err:
        raise BuildgraphError(
            f"the Dask scheduler {address} is unreachable: {err}",
            hint="start it (`dask scheduler`) and its workers, check BUILDGRAPH_SCHEDULER,"
            " or set BUILDGRAPH_SCHEDULER_FALLBACK=local to build here when it is down",
        ) from None
    try:
        client.wait_for_workers(1, timeout=WORKERS_SECONDS)
        _check_versions(client)
    except BaseException as err:
        client.close()
        if isinstance(err, TimeoutError):
            raise BuildgraphError(
                f"no worker joined the Dask scheduler {address} in {WORKERS_SECONDS} s",
                hint="start workers: dask worker " + address,
            ) from None
        raise
    return client


def _check_versions(client: Client) -> None:
    """Every worker runs the client's buildgraph, or the build does not start."""
    try:
        theirs = client.run(dispatch.hello, tuple(dispatch.INSTALL))
    except Exception as err:  # whatever a worker raised, said as one line
        raise BuildgraphError(
            f"a Dask worker cannot run buildgraph: {type(err).__name__}: {err}",
            hint="install this buildgraph in every worker's Python environment",
        ) from None
    mine = dispatch.identity()
    other = sorted(address for address, code in theirs.items() if code != mine)
    if other:
        raise BuildgraphError(
            f"worker {', '.join(other)} runs other buildgraph code than this client"
            f" ({theirs[other[0]][:12]}, here {mine[:12]})",
            hint=dispatch.SAME_CODE,
        )


@dataclass
class _Attempt:
    node: NodePlan
    key: str
    components: list[Component]
    task: dispatch.Task
    started: float
    refused: dict[str, str]
    """Worker -> why it refused the node."""
    number: int = 0


class _Dispatcher:
    def __init__(self, session: Session, client: Client, address: str) -> None:
        from distributed import as_completed

        self.session = session
        self.client = client
        self.address = address
        self.futures = as_completed(loop=client.loop)
        self.attempts: dict[Future, _Attempt] = {}
        self.workers: dict[str, Any] | None = None
        self.built_on: dict[str, str] = {}
        """Label -> the worker that built it here."""

    def run(self, pending: list[str]) -> None:
        """Start each node of ``pending`` (in order) once the nodes it needs are done."""
        waiting = set(pending)
        missing: dict[str, int] = {}
        dependents: dict[str, list[str]] = {}
        for label in pending:
            deps = [dep for dep in self.session.by_label[label].deps if dep in waiting]
            missing[label] = len(deps)
            for dep in deps:
                dependents.setdefault(dep, []).append(label)
        ready = deque(label for label in pending if not missing[label])
        done = 0

        def release(label: str) -> None:
            nonlocal done
            done += 1
            for dependent in dependents.get(label, ()):
                missing[dependent] -= 1
                if not missing[dependent]:
                    ready.append(dependent)

        try:
            with log.progress(f"{len(pending)} nodes on {self.address}") as say:
                while ready or self.attempts:
                    while ready:
                        label = ready.popleft()
                        if self._start(label):
                            release(label)
                    if self.attempts:
                        finished = self._finish(next(self.futures))
                        if finished:
                            release(finished)
                        say(f"{done} done, {len(self.attempts)} running")
        finally:
            for future in self.attempts:
                future.cancel()
        assert done == len(pending), (done, len(pending))

    def _start(self, label: str) -> bool:
        """Key the node now that its dependencies are done; True if it is done already
        (a cache hit, or a publish run here), else it is on the cluster."""
        session = self.session
        started = time.monotonic()
        node, key, components = session.keyed(label)
        found = session.known(node, key, components)
        if found is not None:
            session.record(node, key, *found, started)
            return True
        if steps.get(node.step, label).probe_settles:
            session.demand(label)
            session.run_node(label)
            return True
        task = self._task(node, components)
        self._submit(_Attempt(node, key, components, task, started, {}))
        return False

    def _task(self, node: NodePlan, components: list[Component]) -> dispatch.Task:
        session = self.session
        assert session.remote is not None
        deps = {}
        for dep in node.deps:
            entry = session.entry_of(dep)
            deps[dep] = dispatch.Fetchable(session.resolved[dep][1], entry)
        sources = session.sources_entry(node)
        return dispatch.Task(
            code=dispatch.identity(),
            install=tuple(dispatch.INSTALL),
            where=session.remote.where,
            node=tuple(node),
            components=components,
            deps=deps,
            sources=dispatch.Fetchable(*sources) if sources else None,
            tools={tool: session.tool_info[tool][1] for tool in node.tools},
            probed=session.probes.get(node.label),
        )

    def _submit(self, attempt: _Attempt) -> None:
        node = attempt.node
        needs = steps.get(node.step, node.label).resources
        able = self._able(needs, fresh=bool(attempt.refused))
        if not able:
            raise BuildgraphError(
                f"{node.label} needs a worker with {', '.join(needs)}; none of the"
                f" workers of {self.address} offers it",
                hint=f"start one with: dask worker {self.address} --resources"
                f' "{" ".join(f"{name}=1" for name in needs)}"',
            )
        willing = [address for address in able if address not in attempt.refused]
        if not willing:
            said = "; ".join(f"{w}: {why}" for w, why in sorted(attempt.refused.items()))
            raise BuildgraphError(
                f"{node.label}: every worker able to run it refused: {said}",
                hint="install what the workers lack, or start a worker that has it",
            )
        attempt.number += 1
        near = None if attempt.refused else self._near(node, willing)
        future = self.client.submit(
            dispatch.work,
            attempt.task,
            key=f"{node.label}@{attempt.key[:16]}#{attempt.number}",
            resources=dict.fromkeys(needs, 1) or None,
            workers=willing if attempt.refused else [near] if near else None,
            allow_other_workers=near is not None,
            pure=False,
        )
        self.attempts[future] = attempt
        self.futures.add(future)

    def _near(self, node: NodePlan, willing: list[str]) -> str | None:
        """The worker that built the node's largest input, which holds it in its own cache:
        where the scheduler should place the node if it can (a preference, not a rule)."""
        built = [
            (sum(size for _digest, size in self.session.resolved[dep][1].values()), dep)
            for dep in node.deps
            if self.built_on.get(dep) in willing
        ]
        size, dep = max(built, default=(0, ""))
        return self.built_on[dep] if size >= NEAR_BYTES else None

    def _able(self, needs: tuple[str, ...], fresh: bool) -> list[str]:
        """The workers that offer ``needs``, as the scheduler last said (asked again when
        ``fresh``: a round trip, so not for every node)."""
        if fresh or self.workers is None:
            self.workers = self.client.scheduler_info(n_workers=-1)["workers"]
        return [
            address
            for address, info in self.workers.items()
            if all(info.get("resources", {}).get(name, 0) >= 1 for name in needs)
        ]

    def _finish(self, future: Future) -> str | None:
        """Take a finished future's answer: its node's label if it is done, None if it was
        placed again."""
        from distributed import KilledWorker

        attempt = self.attempts.pop(future)
        node = attempt.node
        try:
            answer: dict[str, Any] = future.result()
        except KilledWorker as err:
            deaths = err.allowed_failures + 1
            raise BuildgraphError(
                f"{node.label}: {deaths} worker{'s' if deaths > 1 else ''} died running it,"
                f" the last {err.last_worker.address}",
                hint="read that worker's log; the scheduler's"
                " distributed.scheduler.allowed-failures sets how many deaths a node may cost",
            ) from None
        if "refused" in answer:
            log.warning(f"{node.label}: worker {answer['worker']} refused it: {answer['refused']}")
            attempt.refused[answer["worker"]] = answer["refused"]
            self._submit(attempt)
            return None
        if "error" in answer:
            log.node(node.label, node.target, node.arch, attempt.key, "failed",
                     time.monotonic() - attempt.started)  # fmt: skip
            raise BuildgraphError(answer["error"], hint=answer["hint"])
        self.built_on[node.label] = answer["worker"]
        self.session.adopt(node, attempt.key, attempt.components, answer["worker"], attempt.started)
        return node.label
