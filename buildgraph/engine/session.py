"""One build of one goal in one checkout: plan it, then run what must run.

Planning walks the goal's nodes in topological order and computes each key it can:
a node whose dependencies are all known and whose key is in the action cache is
``cached`` and its outputs are placed in ``_out/``; every other node must ``run``.
Running a node computes its key again now that its dependencies' outputs exist, so an
upstream rebuild that produced the same bytes ends in a cache hit (early cutoff).

The compiled plan (specs loaded, variables substituted, globs expanded, graph sorted)
is itself cached, keyed by the spec files' stats, the variables it read and the
directories its globs walked, so a no-op run neither parses YAML nor builds a graph.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import marshal
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from . import cluster, execute, log, remote, tools
from . import step as steps
from .errors import BuildgraphError, StepFailedError
from .hashing import (
    PLAIN,
    RS,
    US,
    Component,
    FileDigests,
    digest_bytes,
    encode,
    key_of,
    key_of_encoded,
    stamp,
)
from .nodeplan import NodePlan, static_components
from .specs_files import spec_files
from .state import State, load_marshal, save_marshal, workspace_dir
from .store import Outputs, Store, atomic_write, default_cache_dir
from .variables import Values, may_be_variable, resolve

PLAN_FORMAT = 1
"""Bump when a compiled plan's shape changes."""
FAST_FORMAT = 2
"""Bump when a fast-path stamp's shape changes."""
CODE: set[Path] = {Path(__file__).parent}
"""Directories whose Python files a compiled plan depends on: the engine's, and those the
OS side adds (its steps' checks and versions, its variables' validators)."""
TOUCH_EVERY = 3600
"""Seconds between LRU touches of an action entry that the workspace index hits."""


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cycle collector: loading and planning make ~10 containers per node, none
    cyclic, and collections triggered by them cost a third of a large no-op run."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Session:
    def __init__(
        self,
        root: Path,
        goal: Iterable[str],
        cmdline: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
        cache_dir: Path | None = None,
        use_remote: bool = True,
        out: Path | None = None,
    ) -> None:
        """``use_remote``: ask the remote cache the environment names, if any (not when
        rebuilding on purpose). ``out``: where outputs are placed instead of ``_out/``; it
        is a workspace of its own, so builds into different directories never meet."""
        self.root = Path(root).resolve()
        self.out = Path(out).resolve() if out is not None else self.root / "_out"
        self.out_prefix = f"{self.out}{os.sep}"
        self.store = Store(cache_dir or default_cache_dir())
        self.steps_cache = self.store.root / "steps"
        self.probes: dict[str, str] = {}
        with _no_gc():
            workspace = self.root if out is None else self.out
            self.state = State(workspace_dir(self.store.root, workspace))
            self.values, self.nodes, self.asked = self._compile(
                list(goal), dict(cmdline or {}), dict(os.environ if environ is None else environ)
            )
        self.goal = list(dict.fromkeys(label for labels in self.asked.values() for label in labels))
        """The goal's labels; ``asked`` has them by goal item, as typed (``images``, ``iso``)."""
        self._goal = set(self.goal)
        self.remote = (
            remote.from_environment(os.environ if environ is None else environ)
            if use_remote
            else None
        )
        self.remote_status: dict[str, str] = {}
        """What the remote cache said of a node at planning: hit, miss, or rejected: why."""
        self.downloaded: dict[str, int] = {}
        """Bytes fetched from the remote cache, by node."""
        self._remote_entries: dict[str, bytes] = {}
        self.order = [node.label for node in self.nodes]
        self.by_label = {node.label: node for node in self.nodes}
        self.source_digests: dict[str, str] = {}
        self.resolved: dict[str, tuple[str, Outputs]] = {}
        self.dep_encoded: dict[str, str] = {}
        self.status: dict[str, str] = {}
        self.tool_info: dict[str, tuple[str, str]] = {}
        self._planner = os.getpid()
        self._planned = False
        """A full plan that was not dry ran here: only then may finish() stamp the plan."""

    @functools.cached_property
    def digests(self) -> FileDigests:
        return FileDigests(self.state.files)

    # -- compiling -------------------------------------------------------------
    def _compile(
        self, goal: list[str], cmdline: dict[str, str], environ: dict[str, str]
    ) -> tuple[Values, list[NodePlan], dict[str, list[str]]]:
        relevant_env = {k: v for k, v in environ.items() if may_be_variable(k)}
        plan_id = digest_bytes(
            json.dumps([goal, sorted(cmdline.items()), sorted(relevant_env.items())]).encode()
        )
        plan_path = self.state.directory / "plans" / plan_id
        self._fast_path_file = plan_path.with_suffix(".fast")
        try:
            raw = plan_path.read_bytes()
            cached = marshal.loads(raw)
        except (OSError, ValueError, EOFError, TypeError):
            raw, cached = b"", None
        known = cached.get("read", []) if isinstance(cached, dict) else []
        if isinstance(cached, dict) and cached.get("fingerprint") == _fingerprint(self.root, known):
            values = resolve(
                cmdline, environ, self.root, cached["data_defaults"], frozenset(cached["packages"])
            )
            if _still_valid(cached, values, self.root):
                self._plan_identity = digest_bytes(raw)
                return values, [NodePlan(*node) for node in cached["nodes"]], cached["goal"]
        from .graph import compile_nodes, expand
        from .specs import load_specs

        specs = load_specs(self.root)
        values = resolve(cmdline, environ, self.root, specs.variables, specs.packages)
        if not goal:
            goal = specs.default
            if not goal:
                raise BuildgraphError(
                    "no target given and targets/ sets no default",
                    hint="name a target: `doit list` shows them",
                )
        graph, asked = expand(specs, values, goal)
        nodes, walked = compile_nodes(graph, values, self.root)
        read = {name: values[name] for name in sorted(values.read)}
        read_files = sorted(str(path) for path in specs.files)
        self._fast_path_file.unlink(missing_ok=True)
        raw = marshal.dumps(
            {
                "fingerprint": _fingerprint(self.root, read_files),
                "read": read_files,
                "data_defaults": specs.variables,
                "packages": sorted(specs.packages),
                "vars": read,
                "walked": walked,
                "nodes": [tuple(node) for node in nodes],
                "goal": asked,
            }
        )
        atomic_write(plan_path, raw)
        self._plan_identity = digest_bytes(raw)
        return values, nodes, asked

    # -- planning --------------------------------------------------------------
    def plan(self, dry: bool = False, fast: bool = True) -> list[str]:
        """Classify every node as cached or run; returns the labels to run, in order.

        Unless ``dry``, cached outputs are placed in ``_out/`` and cached nodes are logged.
        ``fast``: after a complete build of this plan, if no source, output or tool has
        changed since (their stats say), every node is cached without keying any.
        """
        with _no_gc():
            if fast and not dry and self._fast_path():
                return []
            if not dry:
                self.forget_fast_path()  # stale: finish() stamps this plan anew when complete
                self._planned = True
            return self._plan(dry)

    def _fast_path(self) -> bool:
        """Every node cached, by the stamp :meth:`_stamp_fast_path` left; False to plan."""
        stamp_ = load_marshal(self._fast_path_file)
        if not isinstance(stamp_, dict) or stamp_.get("format") != FAST_FORMAT:
            return False
        if time.time() - stamp_["made"] > TOUCH_EVERY:  # let a full plan touch the entries
            return False
        if stamp_["plan"] != self._plan_identity:  # the very plan whose keys it stamped
            return False
        root = str(self.root) + os.sep
        try:
            for path, *then in stamp_["files"]:
                if stamp(os.stat(root + path)) != tuple(then):
                    return False
            for name, *then in stamp_["outputs"]:
                if _placed_stamp(os.stat(self.out_prefix + name)) != tuple(then):
                    return False
            for tool, path, *then in stamp_["tools"]:
                if shutil.which(tool) != path or _placed_stamp(os.stat(path)) != tuple(then):
                    return False
        except OSError:
            return False
        self.status = dict.fromkeys(self.order, "cached")
        if log.wants_cached():
            for label, key in zip(self.order, stamp_["keys"], strict=True):
                node = self.by_label[label]
                log.node(label, node.target, node.arch, key, "cached", 0.0)
        return True

    def _stamp_fast_path(self) -> None:
        """After a complete build with no probed node and no racy source, record the stats
        of everything the plan's keys were computed from, for :meth:`_fast_path`."""
        if not self._planned or self._planner != os.getpid():
            return
        if any(self.status.get(label) not in ("cached", "built") for label in self.order):
            return
        if any(node.probed for node in self.nodes):
            return
        files = []
        root = len(str(self.root) + os.sep)
        for path, then in self.digests.stamps.items():
            trusted = self.digests.table.get(path)
            if trusted is None or tuple(trusted[:4]) != then:
                return  # racily clean: its digest must be taken again next time
            files.append((path[root:], *then))
        outputs = []
        for node in self.nodes:
            for name in node.outputs:
                placed = self.state.placed.get(name)
                digest = self.resolved[node.label][1][name][0]
                left_remote = placed is None and node.label not in self._goal
                if left_remote and not self.store.has_object(digest):
                    continue  # left in the remote cache: nothing in _out/ to check
                if placed is None or placed[0] != digest:
                    return
                outputs.append((name, *placed[1:]))
        # Each tool as it was when its version was read for the keys, not as it is now.
        tools_ = [(tool, *self.state.tools[tool][:4]) for tool in sorted(self.tool_info)]
        save_marshal(
            self._fast_path_file,
            {
                "format": FAST_FORMAT,
                "made": int(time.time()),
                "files": sorted(files),
                "outputs": outputs,
                "tools": tools_,
                "plan": self._plan_identity,
                "keys": [self.resolved[label][0] for label in self.order],
            },
        )

    def forget_fast_path(self) -> None:
        """Make the next plan of this goal key every node."""
        self._fast_path_file.unlink(missing_ok=True)

    def _plan(self, dry: bool) -> list[str]:
        self.store.reap_scratch()
        needed_by = {t: n.label for n in self.nodes for t in n.tools}
        self.tool_info = tools.resolve(needed_by, self.state.tools, needed_by)
        digests = self.digests
        root = str(self.root) + os.sep
        shared: dict[tuple[str, ...], str] = {}
        """Encoded vars and tools, by the names a node reads: most nodes share a few sets."""
        asking: dict[str, tuple[str, str]] = {}
        """Nodes the local cache lacks, to ask the remote cache in one batch: (key, inputs)."""
        for node in self.nodes:
            parts = [node.static_encoded]
            if node.vars:
                parts.append(self._shared_encoding(shared, "var", node.vars))
            try:
                for src in node.sources:
                    digest = self.source_digests[src] = digests.digest(root + src)
                    parts.append(f"file{US}{src}{US}{digest}")
            except FileNotFoundError as err:
                raise BuildgraphError(
                    f"source {os.path.relpath(err.filename, self.root)} of {node.label} is missing",
                    hint="restore the file, or remove it from the target's sources",
                ) from None
            if node.tools:
                parts.append(self._shared_encoding(shared, "tool", node.tools))
            if node.probed:
                parts.append(encode(self._probe(node)))
            if asking and any(dep in asking for dep in node.deps):
                self._ask_remote(asking, dry)
            if not all(dep in self.resolved for dep in node.deps):
                self.status[node.label] = "run"
                continue
            parts.extend(self.dep_encoded[dep] for dep in node.deps if self.dep_encoded[dep])
            key = key_of_encoded(parts)
            outputs = self._lookup(node.label, key)
            if outputs is None and self.remote is not None:
                asking[node.label] = (key, RS.join(parts))
                continue
            self._take(node, key, outputs, dry)
        if asking:
            self._ask_remote(asking, dry)
        self.state.dirty |= digests.changed
        self._demand_objects(dry)
        if not dry:
            for label in self.order:
                if self.status[label] != "cached":
                    continue
                node, key = self.by_label[label], self.resolved[label][0]
                if self.remote_status.get(label) == "hit":
                    fetched = self.downloaded.get(label, 0)
                    log.node(label, node.target, node.arch, key, "remote", 0.0, fetched)
                elif log.wants_cached():
                    log.node(label, node.target, node.arch, key, "cached", 0.0)
        return [label for label in self.order if self.status[label] == "run"]

    def _take(self, node: NodePlan, key: str, outputs: Outputs | None, dry: bool) -> None:
        """Cached if the cache had ``outputs`` and they could be placed; else run."""
        if outputs is not None and (dry or self._place(node, key, outputs)):
            self._resolve(node.label, key, outputs)
            self.status[node.label] = "cached"
        else:
            self.status[node.label] = "run"

    def _ask_remote(self, asking: dict[str, tuple[str, str]], dry: bool) -> None:
        """Ask the remote cache for every node in ``asking`` at once, and empty it."""
        assert self.remote is not None
        asked = [
            (key, remote.action_digest(inputs), self.store.get_remote(key))
            for key, inputs in asking.values()
        ]
        answers = self.remote.lookup(asked)
        now = int(time.time())
        for label, (key, _inputs) in asking.items():
            node = self.by_label[label]
            answer = _matching(node.outputs, answers.get(key, remote.Miss()))
            if isinstance(answer, remote.Hit):
                self.remote_status[label] = "hit"
                self._remote_entries[key] = answer.entry
                outputs = _declared_order(node, answer.outputs)
                if not dry:
                    self.store.put_remote(key, answer.entry)
                    self.state.record(label, (key, outputs, now))
                self._take(node, key, outputs, dry)
            else:
                self.remote_status[label] = (
                    f"rejected: {answer.reason}" if answer.reason else "miss"
                )
                self.status[label] = "run"
        asking.clear()

    def _shared_encoding(self, shared: dict, kind: str, names: tuple[str, ...]) -> str:
        encoded = shared.get((kind, *names))
        if encoded is None:
            encoded = shared[(kind, *names)] = encode(self._runtime(kind, names))
        return encoded

    def _runtime(self, kind: str, names: tuple[str, ...]) -> list[Component]:
        if kind == "var":
            return [("var", name, self.values[name]) for name in names]
        return [("tool", name, self.tool_info[name][1]) for name in names]

    def _probe(self, node: NodePlan) -> list[Component]:
        value = self.probes.get(node.label)
        if value is None:
            probe = steps.get(node.step, node.label).probe
            assert probe is not None, node.step
            context = steps.Probe(node.params, node.arch, self.root, self.steps_cache)
            try:
                value = self.probes[node.label] = probe(context)
            except BuildgraphError as err:
                err.message = f"{node.label}: {err.message}"
                raise
            except Exception as err:
                raise BuildgraphError(
                    f"{node.label}: the probe of step {node.step} crashed:"
                    f" {type(err).__name__}: {err}"
                ) from err
        return [("probe", node.step, value)]

    def components(self, node: NodePlan, known_only: bool = False) -> list[Component]:
        """Every input of a node, in key order (the planner encodes the same, in pieces).

        ``known_only`` leaves out dependencies that have not been resolved yet.
        """
        components = static_components(node)
        components += self._runtime("var", node.vars)
        components += [("file", src, self.source_digests[src]) for src in node.sources]
        components += self._runtime("tool", node.tools)
        if node.probed:
            components += self._probe(node)
        for dep in node.deps:
            if known_only and dep not in self.resolved:
                continue
            _key, outputs = self._dep_result(dep)
            components += _dep_components(dep, outputs)
        return components

    def _resolve(self, label: str, key: str, outputs: Outputs) -> None:
        self.resolved[label] = (key, outputs)
        self.dep_encoded[label] = encode(_dep_components(label, outputs))

    def _dep_result(self, dep: str) -> tuple[str, Outputs]:
        found = self.resolved.get(dep)
        if found is None:
            journaled = self.state.read_journal(dep)
            if journaled is None:
                raise BuildgraphError(f"the result of {dep} is missing; run the build again")
            self._resolve(dep, journaled[0][0], journaled[0][1])
            found = self.resolved[dep]
        return found

    def _lookup(self, label: str, key: str) -> Outputs | None:
        last = self.state.nodes.get(label)
        now = int(time.time())
        if last is not None and last[0] == key:
            if now - last[2] > TOUCH_EVERY:
                self.store.touch_action(key)
                self.state.record(label, (key, last[1], now))
            return last[1]
        entry = self.store.get_action(key)
        if entry is None:
            return None
        outputs = _declared_order(self.by_label[label], entry["outputs"])
        self.state.record(label, (key, outputs, now))
        return outputs

    def _place(self, node: NodePlan, key: str, outputs: Outputs) -> bool:
        """Make ``_out/`` hold this node's outputs; False if the cache lost an object.

        An output only the remote cache holds is fetched for the goal's nodes; another
        node's stays there, and ``_out/`` holds no stale copy of it.
        """
        for name in node.outputs:
            digest = outputs[name][0]
            placed = self.state.placed.get(name)
            if placed is not None and placed[0] == digest:
                try:
                    if _placed_stamp(os.stat(self.out_prefix + name)) == placed[1:]:
                        continue
                except OSError:
                    pass
            if not self.store.has_object(digest):
                entry = self._remote_entry(key)
                if entry is None:
                    return False
                if node.label not in self._goal:
                    self._unplace(name)
                    continue
                if not self._fetch(node.label, entry, name, digest):
                    return False
            try:
                st = self.store.materialize(digest, self.out / name)
            except FileNotFoundError:
                return False
            self.state.placed[name] = (digest, *_placed_stamp(st))
            self.state.dirty = True
        return True

    def _demand_objects(self, dry: bool) -> None:
        """A node that runs reads its dependencies from the CAS: they must be there, if
        need be fetched from the remote cache (not by a dry run: it is enough that the
        remote cache has them)."""
        for label in reversed(self.order):
            if self.status[label] != "run":
                continue
            for dep in self.by_label[label].deps:
                if self.status[dep] != "cached":
                    continue
                key, outputs = self.resolved[dep]
                if all(self.store.has_object(digest) for digest, _size in outputs.values()):
                    continue
                entry = self._remote_entry(key)
                if entry is not None and (dry or self._fetch_missing(dep, entry, outputs)):
                    continue
                self.status[dep] = "run"
                del self.resolved[dep]

    def _remote_entry(self, key: str) -> bytes | None:
        """The remote cache's entry for ``key`` this machine verified, if it can fetch."""
        if self.remote is None:
            return None
        entry = self._remote_entries.get(key)
        if entry is None:
            entry = self.store.get_remote(key)
        return entry

    def _fetch_missing(self, label: str, entry: bytes, outputs: Outputs) -> bool:
        """Fetch every output of a remote hit the CAS lacks; False if one is lost."""
        return all(
            self.store.has_object(digest) or self._fetch(label, entry, name, digest)
            for name, (digest, _size) in outputs.items()
        )

    def _fetch(self, label: str, entry: bytes, name: str, digest: str) -> bool:
        """Put output ``name`` of a remote hit into the CAS; False (said) if it is lost."""
        assert self.remote is not None
        try:
            count = remote.fetch_object(self.remote, self.store, entry, name, digest)
        except remote.LostError as err:
            log.warning(f"{label}: {err}; running it here instead")
            return False
        self.downloaded[label] = self.downloaded.get(label, 0) + count
        return True

    def _unplace(self, name: str) -> None:
        """Remove what an earlier build placed as ``_out/name``, if nobody replaced it."""
        placed = self.state.placed.pop(name, None)
        if placed is None:
            return
        self.state.dirty = True
        with contextlib.suppress(OSError):
            if _placed_stamp(os.stat(self.out_prefix + name)) == placed[1:]:
                os.unlink(self.out_prefix + name)

    # -- running ---------------------------------------------------------------
    def run_node(self, label: str) -> str:
        """Build one node whose dependencies are done; returns "built" or "cached"."""
        started = time.monotonic()
        node, key, components = self.keyed(label)
        found = self.known(node, key, components)
        if found is None:
            try:
                outputs = self._execute(node, key, components)
            except BuildgraphError:
                log.node(label, node.target, node.arch, key, "failed", time.monotonic() - started)
                raise
            found = (outputs, "built", {})
            if steps.get(node.step, label).probe_settles:
                key = self._settle(node, outputs)
            elif self.remote is not None and self.remote.writable:
                self._upload(key, encode(components), outputs)
        return self.record(node, key, *found, started)

    def keyed(self, label: str) -> tuple[NodePlan, str, list[Component]]:
        """A node whose dependencies are done, its key and its inputs."""
        node = self.by_label[label]
        components = self.components(node)
        return node, key_of(components), components

    def known(
        self, node: NodePlan, key: str, components: list[Component]
    ) -> tuple[Outputs, str, dict[str, int]] | None:
        """Outputs the local or the remote cache has for ``key``, how, and what it cost;
        None if the node must run."""
        entry = self.store.get_action(key)
        if entry is not None:
            return _declared_order(node, entry["outputs"]), "cached", {}
        found = self._remote_hit(node, key, components)
        if found is not None:
            return found, "remote", {"downloaded": self.downloaded.get(node.label, 0)}
        return None

    def record(
        self,
        node: NodePlan,
        key: str,
        outputs: Outputs,
        status: str,
        said: dict[str, Any],
        started: float,
    ) -> str:
        """Place a node's outputs, remember them, and log it; returns its status."""
        label = node.label
        if not self._place(node, key, outputs):
            raise BuildgraphError(f"{label}: the cache lost an output while placing it; run again")
        result = (key, outputs, int(time.time()))
        self._resolve(label, key, outputs)
        self.status[label] = "cached" if status == "remote" else status
        self.state.record(label, result)
        if os.getpid() != self._planner:  # a doit worker: the planner cannot see our memory
            placed = {name: self.state.placed[name] for name in node.outputs}
            self.state.write_journal(label, result, placed)
        log.node(label, node.target, node.arch, key, status, time.monotonic() - started, **said)
        return status

    def _remote_hit(self, node: NodePlan, key: str, components: list) -> Outputs | None:
        """A node keyed only now (an upstream ran): the remote cache's outputs, fetched
        here at once, since a step here is likely to read them; None to run it."""
        if self.remote is None:
            return None
        answer = self.remote.lookup([(key, remote.action_digest(encode(components)), None)])
        hit = _matching(node.outputs, answer.get(key, remote.Miss()))
        if not isinstance(hit, remote.Hit):
            return None
        self.store.put_remote(key, hit.entry)
        outputs = _declared_order(node, hit.outputs)
        return outputs if self._fetch_missing(node.label, hit.entry, outputs) else None

    def _upload(self, key: str, inputs: str, outputs: Outputs) -> bool:
        """Give the remote cache a result this machine has; False if it had it already."""
        assert self.remote is not None
        files = {
            name: (digest, size, self.store.object_path(digest))
            for name, (digest, size) in outputs.items()
        }
        return self.remote.upload(key, remote.action_digest(inputs), files)

    def push_remote(self) -> tuple[list[str], list[str]]:
        """Upload what the local cache holds for the goal: (labels sent, labels the remote
        cache had already); nodes that are not cached here are left out."""
        if self.remote is None or not self.remote.writable:
            raise BuildgraphError(
                "no writable remote cache is configured",
                hint="set BUILDGRAPH_REMOTE_CACHE=<registry>/<repository> and"
                " BUILDGRAPH_REMOTE_CACHE_KEY=<ed25519 private key file>",
            )
        self.plan(dry=True, fast=False)
        sent, present = [], []
        for label in self.order:
            if self.status[label] != "cached" or self.remote_status.get(label) == "hit":
                continue
            if steps.get(self.by_label[label].step, label).probe_settles:
                continue  # its effect is outside its outputs: each machine publishes for itself
            key, outputs = self.resolved[label]
            if not all(self.store.has_object(digest) for digest, _size in outputs.values()):
                continue
            components = self.components(self.by_label[label])
            (sent if self._upload(key, encode(components), outputs) else present).append(label)
        return sent, present

    # -- sharing with cluster workers --------------------------------------------
    def entry_of(self, label: str) -> bytes:
        """The remote cache's entry for a done node's outputs, uploaded first if only this
        machine has them (say, built before a remote cache was configured)."""
        key, outputs = self._dep_result(label)
        files = {n: (d, s, self.store.object_path(d)) for n, (d, s) in outputs.items()}
        return self._share(label, key, lambda: encode(self.components(self.by_label[label])),
                           files)  # fmt: skip

    def sources_entry(self, node: NodePlan) -> tuple[Outputs, bytes] | None:
        """The node's source files as a remote cache entry, by their paths; None if none."""
        if not node.sources:
            return None
        components = [("file", src, self.source_digests[src]) for src in node.sources]
        files = {}
        for src in node.sources:
            path = self.root / src
            cas = self.source_digests[src].removesuffix(PLAIN)  # as the CAS names the bytes
            files[src] = (cas, path.stat().st_size, path)
        entry = self._share(f"the sources of {node.label}", key_of(components),
                            lambda: encode(components), files)  # fmt: skip
        return {name: (digest, size) for name, (digest, size, _p) in files.items()}, entry

    def _share(self, what: str, key: str, inputs: Callable[[], str], files: dict) -> bytes:
        """The verified entry for ``key``, uploading ``files`` first if the remote cache
        has none; ``inputs`` makes the encoded inputs, needed only then."""
        entry = self._remote_entry(key)
        if entry is not None:
            return entry
        assert self.remote is not None
        encoded = inputs()
        self.remote.upload(key, remote.action_digest(encoded), files)
        return self._trusted(what, key, encoded, tuple(files)).entry

    def _trusted(self, what: str, key: str, inputs: str, names: tuple[str, ...]) -> remote.Hit:
        """The entry the remote cache now holds for ``key``, verified; an error if none."""
        assert self.remote is not None
        answer = self.remote.lookup([(key, remote.action_digest(inputs), None)])
        found = _matching(names, answer.get(key, remote.Miss()))
        if not isinstance(found, remote.Hit):
            raise BuildgraphError(
                f"{what}: the remote cache {self.remote.where} holds no trusted entry for it"
                f" ({found.reason or 'none was found'})",
                hint="check that the registry is reachable, and that the public key of every"
                " worker's BUILDGRAPH_REMOTE_CACHE_KEY is in BUILDGRAPH_REMOTE_CACHE_TRUST",
            )
        self.store.put_remote(key, found.entry)
        self._remote_entries[key] = found.entry
        return found

    def adopt(
        self, node: NodePlan, key: str, components: list[Component], worker: str, started: float
    ) -> str:
        """Record a node a cluster worker built, by the remote cache's entry for it."""
        hit = self._trusted(f"{node.label} (built on {worker})", key, encode(components),
                            node.outputs)  # fmt: skip
        outputs = _declared_order(node, hit.outputs)
        return self.record(node, key, outputs, "built", {"worker": worker}, started)

    def demand(self, label: str) -> None:
        """Fetch what a node about to run here reads and only the remote cache has."""
        for dep in self.by_label[label].deps:
            key, outputs = self._dep_result(dep)
            if all(self.store.has_object(digest) for digest, _size in outputs.values()):
                continue
            entry = self._remote_entry(key)
            if entry is None or not self._fetch_missing(dep, entry, outputs):
                raise BuildgraphError(f"{label}: the outputs of {dep} are lost; run again")

    def _settle(self, node: NodePlan, outputs: Outputs) -> str:
        """Record a publishing node's result under what its probe answers now that it ran,
        and only so: the state it found (say, nothing published) must make it run again.
        Returns that key."""
        self.probes.pop(node.label, None)
        components = self.components(node)
        key = key_of(components)
        self.store.put_action(key, outputs, components)
        return key

    def _execute(self, node: NodePlan, key: str, components: list[Component]) -> Outputs:
        sources = [str(self.root / src) for src in node.sources]
        with self.store.scratch(reuse=os.getpid() == self._planner) as scratch:
            self._check_sources(node, sources, "since the build was planned")
            outputs = execute.run_step(
                self.store,
                node,
                scratch,
                self.root,
                {dep: self._dep_result(dep)[1] for dep in node.deps},
                {t: self.tool_info[t][0] for t in node.tools},
                self.probes.get(node.label),
                lambda: self._check_sources(node, sources, "while its step ran"),
            )
        if not steps.get(node.step, node.label).probe_settles:
            self.store.put_action(key, outputs, components)  # a publish: under the state it leaves
        return outputs

    def _check_sources(self, node: NodePlan, sources: list[str], when: str) -> None:
        """A source edited after its digest was taken would key the wrong bytes.

        ctime is left out: a step that hard-links a source changes it, not the bytes.
        """
        for path in sources:
            try:
                ino, _ctime, mtime, size = stamp(os.stat(path))
                now: tuple | None = (ino, mtime, size)
            except OSError:
                now = None
            then = self.digests.stamps.get(path)
            if then is None or now != (then[0], then[2], then[3]):
                raise StepFailedError(
                    f"{node.label}: source {os.path.relpath(path, self.root)} changed {when}",
                    hint="run the build again",
                )

    def finish(self) -> None:
        self.state.save()
        self.store.drop_scratch()
        if self.status and not self._fast_path_file.exists():
            self._stamp_fast_path()

    def build(self, on: cluster.Settings | None = None) -> dict[str, str]:
        """Plan and run every pending node, here in order or ``on`` a cluster; returns
        label -> status."""
        try:
            pending = self.plan()
            if on is None or not cluster.run(self, pending, on):
                for label in pending:
                    self.run_node(label)
        finally:
            self.finish()
        return dict(self.status)


def _placed_stamp(st: os.stat_result) -> tuple[int, int, int]:
    """What says a placed file (or a tool) is the one seen before: a hard link into the
    CAS keeps its inode and its sealed mtime while nobody writes through it."""
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def forget_fast_paths(workspace: Path) -> None:
    """Make the next plan of every goal key every node: after nodes were forgotten, a
    goal that holds them must find out, not trust the stats of its last build."""
    for stamp_file in (workspace / "plans").glob("*.fast"):
        stamp_file.unlink(missing_ok=True)


def _matching(names: Iterable[str], answer: remote.Hit | remote.Miss) -> remote.Hit | remote.Miss:
    """A hit whose entry names other outputs than ``names`` (a node's) is no hit."""
    if isinstance(answer, remote.Hit) and set(answer.outputs) != set(names):
        return remote.Miss(f"its entry holds {', '.join(sorted(answer.outputs))}")
    return answer


def _dep_components(label: str, outputs: Outputs) -> list[Component]:
    return [("dep", f"{label}/{name}", outputs[name][0]) for name in sorted(outputs)]


def _declared_order(node: NodePlan, stored: dict[str, list]) -> Outputs:
    """Outputs in the order the spec declares them, whatever order the entry kept.

    Steps see dependency outputs in this order, so it must not depend on whether a
    dependency was built just now or found in the cache.
    """
    return {name: (stored[name][0], stored[name][1]) for name in node.outputs}


def _fingerprint(root: Path, read: list[str]) -> list:
    """Stats of the engine's code, the spec files there are, and every file a compile read.

    ctime is in, so that an edit which restores size and mtime still counts.
    """
    code = {str(p) for directory in sorted(CODE) for p in directory.glob("*.py")}
    paths = sorted({*map(str, spec_files(root)), *read} | code)
    stamps: list = [("plan format", PLAN_FORMAT)]
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            stamps.append((path, None))
            continue
        stamps.append((path, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size))
    return stamps


def _still_valid(cached: dict, values: Values, root: Path) -> bool:
    try:
        for name, value in cached["vars"].items():
            if values[name] != value:
                return False
        for directory, mtime in cached["walked"].items():
            if os.stat(root / directory).st_mtime_ns != mtime:
                return False
    except (OSError, KeyError):
        return False
    return True
