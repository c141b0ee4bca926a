"""doit's own commands, each with buildgraph's meaning or refused with what to use instead.

doit's versions read and write doit's database, which records nothing here: a node is
cached when the action cache holds its key (see doit_bridge.py). So ``forget`` drops
action-cache entries, ``info`` and ``list --status`` answer from a plan, and the
commands whose only subject is that database (``ignore``, ``reset-dep``, ``dumpdb``,
``strace``, ``clean --forget``) stop with one message: none may leave an output stale.
pyproject.toml installs them over doit's own as command plugins.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from doit import cmd_clean, cmd_completion, cmd_forget, cmd_help, cmd_info, cmd_list
from doit.cmd_base import Command, DoitCmdBase

from .doit_bridge import cmdline_vars, fail
from .errors import BuildgraphError
from .explain import explain
from .forget import forget, forget_all
from .session import Session
from .store import Store, default_cache_dir


def _refusal(command: str, why: str, instead: str) -> BuildgraphError:
    return BuildgraphError(f"`doit {command}` is not supported: {why}", hint=instead)


class _Refused(Command):
    """A doit command that would only touch doit's database: says what to use instead."""

    refusal: BuildgraphError

    def execute(self, opt_values: Any, pos_args: list[str]) -> int:
        return fail(self.refusal)


class Ignore(_Refused):
    doc_purpose = "not supported: would keep a node's old output after its inputs change"
    refusal = _refusal(
        "ignore",
        "an ignored node would keep its old output in _out/ after its inputs change",
        "build a smaller goal instead (`doit TARGET:ARCH`, or only the targets you need)",
    )


class ResetDep(_Refused):
    name = "reset-dep"
    doc_purpose = "not supported: nodes are keyed by their inputs' content"
    refusal = _refusal(
        "reset-dep",
        "nodes are keyed by the content of their inputs, so there is no doit state to reset",
        "`doit forget TARGET` makes nodes rebuild; `buildgraph explain TARGET` shows their inputs",
    )


class DumpDB(_Refused):
    doc_purpose = "not supported: buildgraph keeps no doit database"
    refusal = _refusal(
        "dumpdb",
        "buildgraph keeps no doit database; each node's inputs are in its action-cache entry",
        "`buildgraph explain TARGET` shows what each node read; `buildgraph cache stats` the cache",
    )


class Strace(_Refused):
    doc_purpose = "not supported: nodes declare what they read"
    refusal = _refusal(
        "strace",
        "a node's inputs are declared in targets/ and its step runs in a scratch directory",
        "`buildgraph explain TARGET` lists each node's inputs",
    )


def _guarded(run: Callable[[], int]) -> int:
    """``run()``, with a buildgraph error, a failed write, Ctrl-C or a closed stdout said
    in one message instead of doit's traceback."""
    try:
        code = run()
        sys.stdout.flush()  # a closed pipe is said here, not by Python at exit
        return code
    except (BuildgraphError, OSError, KeyboardInterrupt) as err:
        return fail(err)


class _Guard(DoitCmdBase):
    """Runs doit's own command, with its failures said as :func:`_guarded` says them."""

    def execute(self, params: Any, args: list[str]) -> int:
        return _guarded(lambda: super(_Guard, self).execute(params, args))


class Help(_Guard, cmd_help.Help):
    pass


class TabCompletion(_Guard, cmd_completion.TabCompletion):
    pass


class _Planning(DoitCmdBase):
    """A command that answers from buildgraph's plan of a goal, not from doit's tasks."""

    def execute(self, params: Any, args: list[str]) -> int:
        self.loader.setup(params)
        return _guarded(lambda: self.answer(params, args, cmdline_vars()))

    def session(self, goal: list[str], cmdline: dict[str, str]) -> Session:
        return Session(self.loader.root(), goal, cmdline)

    def answer(self, params: Any, args: list[str], cmdline: dict[str, str]) -> int:
        raise NotImplementedError


class Forget(_Planning):
    doc_purpose = "drop nodes' action-cache entries, so that the next build rebuilds them"
    doc_usage = "[TARGET ...]"
    cmd_options = tuple(
        {**option, "help": text}
        for option, text in zip(
            cmd_forget.Forget.cmd_options,
            (
                "forget the nodes the targets depend on too",
                "with no TARGET, refuse instead of forgetting the default targets",
                "forget every node this checkout has built",
            ),
            strict=True,
        )
    )

    def answer(self, params: Any, args: list[str], cmdline: dict[str, str]) -> int:
        if params["forget_all"]:
            dropped = forget_all(self.loader.root(), Store(default_cache_dir()))
            self.outstream.write(f"forgot {len(dropped)} nodes\n")
            return 0
        if not args and params["forget_disable_default"]:
            raise BuildgraphError(
                "no target given", hint="name targets, or pass --enable-default or --all"
            )
        session = self.session(args, cmdline)
        labels = session.order if params["forget_sub"] else session.goal
        dropped = set(forget(session, labels))
        for label in labels:
            self.outstream.write(
                f"forgot {label}\n" if label in dropped else f"{label} was not cached\n"
            )
        return 0


class Info(_Planning):
    doc_purpose = "show a target's doc and whether each of its nodes is cached or would run"
    doc_usage = "TARGET"
    cmd_options = cmd_info.Info.cmd_options

    def answer(self, params: Any, args: list[str], cmdline: dict[str, str]) -> int:
        if len(args) != 1:
            raise BuildgraphError("`doit info` takes one target", hint="e.g. `doit info iso`")
        session = self.session(args, cmdline)
        for label in session.goal:
            node = session.by_label[label]
            self.outstream.write(f"{label}: {node.doc}\n" if node.doc else f"{label}\n")
            if node.deps:
                self.outstream.write(f"  needs {', '.join(node.deps)}\n")
        if params["hide_status"]:
            return 0
        for line in explain(session, only=set(session.goal)):
            self.outstream.write(line + "\n")
        # doit's convention: info exits 1 when the task would run
        return 0 if all(session.status[label] == "cached" for label in session.goal) else 1


class List(_Guard, cmd_list.List):
    """doit's list, whose ``--status`` says U for cached and R for would run, from a plan."""

    _status: dict[str, str]

    def _execute(
        self,
        subtasks: bool = False,
        quiet: bool = True,
        status: bool = False,
        private: bool = False,
        list_deps: bool = False,
        template: str | None = None,
        sort: str = "name",
        pos_args: list[str] | None = None,
    ) -> int:
        if status:
            self._status = self._plan_status()
        return super()._execute(
            subtasks, quiet, status, private, list_deps, template, sort, pos_args
        )

    def _plan_status(self) -> dict[str, str]:
        nodes = [task.name for task in self.task_list if (task.meta or {}).get("node")]
        session = Session(self.loader.root(), nodes, cmdline_vars())
        session.plan(dry=True)
        status = {label: "U" if session.status[label] == "cached" else "R" for label in nodes}
        tasks = {task.name: task for task in self.task_list}

        def of(name: str) -> str:
            if name not in status:
                deps = [of(dep) for dep in tasks[name].task_dep]
                status[name] = "R" if "R" in deps else "U"
            return status[name]

        for name in tasks:
            of(name)
        return status

    def _print_task(self, template: str, task: Any, status: bool, list_deps: bool, tasks) -> None:
        line = {"name": task.name, "doc": task.doc}
        if status:
            line["status"] = self._status[task.name]
        self.outstream.write(template.format(**line))


class Clean(_Guard, cmd_clean.Clean):
    """doit's clean, which removes what targets placed in _out/; ``--forget`` is refused."""

    def _execute(
        self,
        dryrun: bool,
        cleandep: bool,
        cleanall: bool,
        cleanforget: bool,
        pos_args: list[str] | None = None,
    ) -> int | None:
        if cleanforget:
            return fail(
                _refusal(
                    "clean --forget",
                    "doit's database records nothing here",
                    "`doit clean TARGET` then `doit forget TARGET`",
                )
            )
        return super()._execute(dryrun, cleandep, cleanall, cleanforget, pos_args)
