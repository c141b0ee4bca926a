"""The doit front end: ``doit <target> [NAME=value ...]``.

``pyproject.toml`` names :class:`Loader` as doit's task loader. Unlike a plain dodo
file, a loader sees the command and its positional arguments before any task exists,
so a run plans the goal first and hands doit only the nodes that must run: nodes
already cached cost a stat each, never a doit task.

Other commands (``list``, ``clean``, ``info``, ...) get every target, one task per
target and one subtask per arch (``iso:amd64``), with the spec's doc, and one task per
alias, whose clean removes what its targets placed.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from pathlib import Path
from typing import Any

from doit import doit_cmd
from doit.cmd_base import DodoTaskLoader
from doit.exceptions import InvalidDodoFile, TaskFailed
from doit.task import Task

from .errors import BuildgraphError
from .session import Session
from .state import workspace_dir
from .store import default_cache_dir

_SESSION: Session | None = None


class Loader(DodoTaskLoader):
    """Loads ``dodo.py`` for its ``BUILDGRAPH_ROOT``, then builds tasks from targets/."""

    def load_doit_config(self) -> dict[str, Any]:
        config = dict(self.namespace.get("DOIT_CONFIG", {}))
        state_dir = workspace_dir(default_cache_dir(), self._root())
        state_dir.mkdir(parents=True, exist_ok=True)
        # Buildgraph's tasks have no doit dependencies; doit only records that they ran.
        # sqlite reads nothing up front, where dbm.dumb parses every entry at start-up.
        config.setdefault("dep_file", str(state_dir / "doit.sqlite"))
        config.setdefault("backend", "sqlite3")
        return config

    def load_tasks(self, cmd: Any, pos_args: list[str]) -> list[Task]:
        try:
            if cmd.execute_tasks:
                return _planned_tasks(self._root(), _goal(pos_args), _cmdline_vars())
            return _all_tasks(self._root(), _cmdline_vars())
        except BuildgraphError as err:
            sys.stderr.write(f"buildgraph: error: {err}\n")
            raise SystemExit(err.exit_code) from None

    def _root(self) -> Path:
        return Path(self.namespace.get("BUILDGRAPH_ROOT", os.getcwd())).resolve()


def task_buildgraph() -> dict[str, Any]:
    """Reached only when doit runs without buildgraph's loader."""
    raise InvalidDodoFile(
        "buildgraph's doit loader is not active: run doit in the repository root, where "
        'pyproject.toml selects it ([tool.doit] loader = "buildgraph")'
    )


def _cmdline_vars() -> dict[str, str]:
    return dict(doit_cmd._CMDLINE_VARS or {})


def _goal(pos_args: list[str]) -> list[str]:
    return [arg for arg in pos_args if not arg.startswith("-")]


def _planned_tasks(root: Path, goal: list[str], cmdline: dict[str, str]) -> list[Task]:
    global _SESSION
    session = _SESSION = Session(root, goal, cmdline)
    pending = session.plan()
    session.finish()
    atexit.register(session.finish)
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
                [(_run_node, [label])],
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


def _run_node(label: str) -> bool | TaskFailed:
    assert _SESSION is not None
    if threading.current_thread() is not threading.main_thread():
        message = (
            "doit's thread workers (-P thread) would share one umask between steps:"
            " use process workers (the default -P process)"
        )
        os.write(sys.stderr.fileno(), f"buildgraph: error: {message}\n".encode())
        return TaskFailed(message, report=False)
    try:
        _SESSION.run_node(label)
    except BuildgraphError as err:
        # Said once, as every buildgraph error is; doit's reporter is told not to repeat it.
        os.write(sys.stderr.fileno(), f"buildgraph: error: {err}\n".encode())
        return TaskFailed(str(err), report=False)
    return True


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
