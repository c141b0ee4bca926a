"""The doit front end: ``doit <target> [NAME=value ...]``.

``pyproject.toml`` names :class:`Loader` as doit's task loader. Unlike a plain dodo
file, a loader sees the command and its positional arguments before any task exists,
so a run plans the goal first and hands doit only the nodes that must run: nodes
already cached cost a stat each, never a doit task.

Other commands (``list``, ``clean``, ``info``, ...) get every target, one task per
target and one subtask per arch (``iso:amd64``), with the spec's doc, and one task per
alias, whose clean removes what its targets placed. doit's commands that would mean
something else here are replaced (``run`` below, the rest in doit_commands.py).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from doit import cmd_run, doit_cmd
from doit.cmd_base import DodoTaskLoader
from doit.exceptions import TaskFailed
from doit.reporter import ConsoleReporter
from doit.task import Task

from . import cluster, log
from .errors import BuildgraphError, report
from .forget import forget, forget_now
from .session import Session
from .store import default_cache_dir

_SESSION: Session | None = None


class Reporter(ConsoleReporter):
    """doit's console reporter without its ``.  <task>`` line: buildgraph's log already
    prints one line per node it builds."""

    desc = "buildgraph: one line per built node"

    def execute_task(self, task: Task) -> None:
        pass

    def skip_uptodate(self, task: Task) -> None:
        pass


DOIT_CONFIG: dict[str, Any] = {"dep_file": ":memory:", "backend": "sqlite3", "reporter": Reporter}
"""doit's settings, for dodo.py too. doit's database lives in memory: a buildgraph task has
no doit dependencies, so doit has nothing worth keeping, and nothing it keeps (a doit
``ignore`` mark, say) could outlive a change of inputs."""


def fail(err: BuildgraphError | OSError | KeyboardInterrupt, root: Path | None = None) -> int:
    """Say ``err`` once, as every front end does; returns the exit status."""
    root = root or (_SESSION.root if _SESSION is not None else Path.cwd())
    return report(err, default_cache_dir(), root / "_out")


class Run(cmd_run.Run):
    """doit's run: ``-a`` rebuilds the goal's nodes, ``-s`` is refused, Ctrl-C is one line,
    and the build ends with a summary."""

    def execute(self, params: Any, args: list[str]) -> int:
        if params.get("single"):
            return fail(
                BuildgraphError(
                    "doit -s/--single is not supported: a node is built from its"
                    " dependencies' current outputs, so they are brought up to date first",
                    hint="`doit TARGET` builds only what changed; `doit TARGET:ARCH` one arch",
                )
            )
        started = time.monotonic()
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _interrupted)
        try:
            code = super().execute(params, args)
            if _SESSION is not None:
                _SESSION.finish()
        except (OSError, KeyboardInterrupt) as err:
            if _SESSION is not None:
                with contextlib.suppress(OSError):
                    _SESSION.finish()  # keep what finished; the next run merges it anyway
            return fail(err)
        if _SESSION is not None:
            ran = {task.name: task.values["status"] for task in self.task_list if task.values}
            log.summary(_SESSION, {**_SESSION.status, **ran}, started)
        return code


def _interrupted(_signum: int, _frame: Any) -> None:
    """Ctrl-C: doit's workers got it too. They clean up (scratch, temp files) as their
    nodes unwind; doit terminates them as soon as the planner stops, so it waits first."""
    for worker in multiprocessing.active_children():
        worker.join(timeout=10)
    raise KeyboardInterrupt


class Loader(DodoTaskLoader):
    """Loads ``dodo.py`` for its ``BUILDGRAPH_ROOT``, then builds tasks from targets/."""

    options: dict[str, Any] = {}

    def setup(self, opt_values: dict[str, Any]) -> None:
        super().setup(opt_values)
        self.options = opt_values

    def load_doit_config(self) -> dict[str, Any]:
        return {**DOIT_CONFIG, **self.namespace.get("DOIT_CONFIG", {})}

    def load_tasks(self, cmd: Any, pos_args: list[str]) -> list[Task]:
        try:
            if cmd.execute_tasks:
                rebuild = bool(self.options.get("always"))
                return _planned_tasks(self.root(), _goal(pos_args), cmdline_vars(), rebuild)
            return _all_tasks(self.root(), cmdline_vars())
        except (BuildgraphError, OSError, KeyboardInterrupt) as err:
            raise SystemExit(fail(err, self.root())) from None

    def root(self) -> Path:
        return Path(self.namespace.get("BUILDGRAPH_ROOT", os.getcwd())).resolve()


def task_buildgraph() -> dict[str, Any]:
    """Reached only when doit runs without buildgraph's loader: doit reads pyproject.toml
    from the directory it starts in, so ``doit -k`` from a subdirectory misses it."""
    root = os.getcwd()
    raise SystemExit(
        fail(
            BuildgraphError(
                f"doit must be started in the repository root {root}, where pyproject.toml"
                " makes buildgraph doit's task loader",
                hint=f"cd {root} && doit ...",
            )
        )
    )


def cmdline_vars() -> dict[str, str]:
    """The NAME=value words of doit's command line."""
    return dict(doit_cmd._CMDLINE_VARS or {})


def _goal(pos_args: list[str]) -> list[str]:
    return [arg for arg in pos_args if not arg.startswith("-")]


def _planned_tasks(
    root: Path, goal: list[str], cmdline: dict[str, str], rebuild: bool = False
) -> list[Task]:
    global _SESSION
    on, cmdline = cluster.split(cmdline, os.environ)
    if rebuild and on is not None:
        raise BuildgraphError(
            "doit -a does not run on a cluster: it rebuilds without the remote cache that"
            " the workers share",
            hint="drop BUILDGRAPH_SCHEDULER to rebuild here",
        )
    if rebuild:
        first = Session(root, goal, cmdline, use_remote=False)
        forget(first, first.order)
    session = _SESSION = Session(root, goal, cmdline, use_remote=not rebuild)
    try:
        pending = session.plan()
        if on is not None and cluster.run(session, pending, on):
            pending = []  # built on the cluster: doit has nothing left to run
    finally:
        session.finish()
    session.store.close()  # doit may fork workers now: each opens its own connection
    waiting = set(pending)
    tasks: list[Task] = []
    subtasks: dict[str, list[str]] = {}
    for label in pending:
        node = session.by_label[label]
        if node.arch:
            subtasks.setdefault(node.target, []).append(label)
        tasks.append(
            Task(
                label,
                [(_run_node, [label, rebuild])],
                task_dep=[dep for dep in node.deps if dep in waiting],
                subtask_of=node.target if node.arch else None,
                doc=node.doc,
            )
        )
    for label in session.goal:
        node = session.by_label[label]
        if label not in waiting:
            tasks.append(Task(label, None, subtask_of=node.target if node.arch else None))
        if node.arch:
            subtasks.setdefault(node.target, [])
    for target, labels in subtasks.items():
        tasks.append(
            Task(target, None, task_dep=labels, has_subtask=True, doc=_doc(session, target))
        )
    named = {task.name for task in tasks}
    for item, labels in session.asked.items():
        if item not in named:  # an alias, as ``images`` or ``images:amd64``: doit must know it
            tasks.append(Task(item, None, task_dep=labels))
    return tasks


def _doc(session: Session, target: str) -> str:
    return next((n.doc for n in session.nodes if n.target == target), "")


def _run_node(label: str, rebuild: bool) -> dict[str, str] | TaskFailed:
    assert _SESSION is not None
    if threading.current_thread() is not threading.main_thread():
        message = (
            "doit's thread workers (-P thread) would share one umask between steps:"
            " use process workers (the default -P process)"
        )
        os.write(sys.stderr.fileno(), f"buildgraph: error: {message}\n".encode())
        return TaskFailed(message, report=False)
    try:
        if rebuild:
            forget_now(_SESSION, label)
        status = _SESSION.run_node(label)
    except (BuildgraphError, OSError) as err:
        fail(err)  # doit's reporter is told not to repeat it
        return TaskFailed(str(err), report=False)
    return {"status": status}


def _all_tasks(root: Path, cmdline: dict[str, str]) -> list[Task]:
    from .graph import expand, output_names
    from .specs import load_specs
    from .variables import resolve

    specs = load_specs(root)
    values = resolve(cmdline, os.environ, root, specs.variables, specs.packages)
    graph, _asked = expand(specs, values, sorted(specs.targets), strict=False)
    out = root / "_out"
    tasks = []
    placed: dict[str, list[str]] = {}
    """Target -> the paths its nodes place in _out/."""
    for name in sorted(specs.targets):
        spec = specs.targets[name]
        if spec.name != name:  # a profile's expansion that shares another's target
            tasks.append(Task(name, None, task_dep=[spec.name], doc=f"the same as {spec.name}"))
            continue
        labels = sorted(label for label in graph if graph.nodes[label]["spec"].name == name)
        for label in labels:
            paths = [str(out / o) for o in output_names(spec, graph.nodes[label]["arch"], values)]
            placed.setdefault(name, []).extend(paths)
            tasks.append(
                Task(
                    label,
                    None,
                    task_dep=sorted(graph.predecessors(label)),
                    clean=[(_remove, [paths])],
                    subtask_of=name if spec.per_arch else None,
                    doc=spec.doc,
                    meta={"node": True},
                )
            )
        if spec.per_arch:
            tasks.append(Task(name, None, task_dep=labels, has_subtask=True, doc=spec.doc))
    for alias, members in sorted(specs.aliases.items()):
        tasks.append(
            Task(
                alias,
                None,
                task_dep=list(members),
                clean=[(_remove, [[path for m in members for path in placed.get(m, [])]])],
                doc="alias of " + ", ".join(members),
            )
        )
    return tasks


def _remove(paths: list[str]) -> None:
    for path in paths:
        if os.path.lexists(path):
            os.unlink(path)
            print(f"removed {os.path.relpath(path)}")
