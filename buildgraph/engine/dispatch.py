"""A node's step as a task for another machine: what it carries, and what a worker does.

A :class:`Task` is plain data: the node, its inputs (which make its key), and for every
byte it reads (dependency outputs, source files) the remote cache entry it can be fetched
by. The worker fetches those into its own CAS, runs the step as a local build would
(execute.py), uploads the outputs to the same remote cache, and answers with digests
only. Bytes never travel with the task or its answer.

A worker refuses a task it cannot run as keyed (a tool missing, or another version of
it): the answer says why, and the client places the task on another worker. Anything
else that goes wrong is the node's failure, said as a local build says it.
"""

from __future__ import annotations

import importlib
import os
import socket
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from . import execute, remote, tools
from .errors import BuildgraphError, ToolMissingError
from .hashing import Component, digest_bytes, encode, key_of
from .nodeplan import NodePlan
from .store import Outputs, Store, default_cache_dir

INSTALL: list[str] = []
"""``module:function`` that installs the front end's steps and remote cache; the front end
(plugin.py) names itself here, and a worker calls it before its first task."""
CODE: set[Path] = {Path(__file__).parent}
"""Package directories whose Python files make up "the same buildgraph"; the front end
adds its own."""


SAME_CODE = "install the same buildgraph on the client and every worker, then restart them"
"""What to do when a worker runs other code than its client."""
_TOOLS: dict[str, tuple] = {}
"""This worker's tool versions, by the binaries' stats (dpkg is asked once per binary)."""


class Fetchable(NamedTuple):
    """Files a task reads: name -> (digest, size), and the remote entry holding them."""

    outputs: Outputs
    entry: bytes


class Task(NamedTuple):
    code: str
    """:func:`identity` of the client: a worker running other code refuses the build."""
    install: tuple[str, ...]
    where: str
    """The remote cache the client uses; the worker must use the same one."""
    node: tuple
    """The :class:`NodePlan`, as a tuple."""
    components: list[Component]
    """The node's inputs, in key order: its key and action digest are made from them."""
    deps: dict[str, Fetchable]
    sources: Fetchable | None
    """The node's source files, named by their path in the checkout."""
    tools: dict[str, str]
    """Tool -> the version the key holds."""
    probed: str | None


def identity() -> str:
    """A digest of this machine's buildgraph code, file by file."""
    return _identity(frozenset(CODE))


def hello(install: tuple[str, ...]) -> str:
    """A worker's answer when a client connects: its :func:`identity`, front end installed."""
    for name in install:
        _install(name)
    return identity()


@cache
def _identity(code: frozenset[Path]) -> str:
    parts = []
    for directory in sorted(code):
        for path in sorted(directory.rglob("*.py")):
            parts.append(f"{path.relative_to(directory.parent)}\0{digest_bytes(path.read_bytes())}")
    return digest_bytes("\n".join(parts).encode())


def work(task: Task) -> dict[str, Any]:
    """Run ``task`` on this worker. Answers ``{"outputs", "worker"}``, or
    ``{"refused": why}`` (place it elsewhere), or ``{"error", "hint"}`` (the build fails)."""
    worker = _address()
    if hello(task.install) != task.code:
        return _error(
            f"worker {worker} runs other buildgraph code than the client"
            f" ({identity()[:12]}, the client {task.code[:12]})",
            SAME_CODE,
        )
    cache = remote.from_environment(os.environ)
    if cache is None or not cache.writable or cache.where != task.where:
        return _error(
            f"worker {worker} does not write to the build's remote cache {task.where}"
            f" (it has {getattr(cache, 'where', 'none')}"
            f"{'' if cache is None or cache.writable else ', read-only'})",
            f"start the worker with BUILDGRAPH_REMOTE_CACHE={task.where} and"
            " BUILDGRAPH_REMOTE_CACHE_KEY=<a trusted signing key>",
        )
    node = NodePlan(*task.node)
    try:
        found = tools.resolve(node.tools, _TOOLS, dict.fromkeys(node.tools, node.label))
    except ToolMissingError as err:
        return {"refused": f"{err.message}; {err.hint}", "worker": worker}
    for tool, (_path, version) in sorted(found.items()):
        if version != task.tools[tool]:
            return {
                "refused": f"its {tool} is {version}, the build keys {task.tools[tool]}",
                "worker": worker,
            }
    key = key_of(task.components)
    store = Store(default_cache_dir())
    try:
        store.reap_scratch()  # what a worker killed mid-step left
        entry = store.get_action(key)
        if entry is not None and all(store.has_object(d) for d, _ in entry["outputs"].values()):
            outputs = {name: (d, s) for name, (d, s) in entry["outputs"].items()}
        else:
            outputs = _run(store, cache, task, node, {t: p for t, (p, _v) in found.items()})
            store.put_action(key, outputs, task.components)
        files = {n: (d, s, store.object_path(d)) for n, (d, s) in outputs.items()}
        cache.upload(key, remote.action_digest(encode(task.components)), files)
    except BuildgraphError as err:
        return _error(err.message, err.hint)
    except remote.LostError as err:
        return _error(f"{node.label}: {err}", "run the build again")
    finally:
        store.close()
    return {"outputs": outputs, "worker": worker}


def _run(
    store: Store, cache: remote.RemoteCache, task: Task, node: NodePlan, tool_paths: dict
) -> Outputs:
    with store.scratch(reuse=False) as scratch:
        for fetchable in (*task.deps.values(), *([task.sources] if task.sources else [])):
            for name, (digest, _size) in fetchable.outputs.items():
                if not store.has_object(digest):
                    remote.fetch_object(cache, store, fetchable.entry, name, digest)
        root = scratch / "root"
        if task.sources:
            for name, (digest, _size) in task.sources.outputs.items():
                store.materialize(digest, root / name)
        deps = {dep: fetchable.outputs for dep, fetchable in task.deps.items()}
        return execute.run_step(store, node, scratch, root, deps, tool_paths, task.probed)


def _error(message: str, hint: str | None) -> dict[str, Any]:
    return {"error": message, "hint": hint}


def _address() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return socket.gethostname()


@cache
def _install(name: str) -> None:
    module, _, function = name.partition(":")
    getattr(importlib.import_module(module), function)()
