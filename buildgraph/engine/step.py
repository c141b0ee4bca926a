"""The step interface: what a step is, the context it runs in, and where to find one.

A step is a pure function of (inputs, params) that writes its declared outputs into
a scratch directory. Steps know nothing of doit, of keys or of the cache: the runner
gives them a :class:`StepContext` and stores what they leave behind. The engine ships
no step: the OS side names the module of each of its steps (:func:`provide`), and a
module is imported the first time a plan needs its step.

A step declares the inputs it reads by role (:class:`Role`): the name of the need that
gives it, such as ``kernel``, or a pattern such as ``cmdline-%``. The spec loader checks
that a target's needs give every role its step requires, so a renamed target fails when
the specs load, not mid-build; and :meth:`StepContext.input` takes declared roles only.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SpecError, StepFailedError


class ParamError(ValueError):
    """A check's refusal of one param: the spec loader points at that param's line, and so
    at the profile field that gave its value when a pattern's param reads one."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Role:
    """An input a step reads, known by the need that gives it: a target name (``kernel``),
    or a pattern with one ``%`` for a profile's target (``cmdline-%``: ``cmdline-aws``)."""

    name: str
    optional: bool = False
    """The step copes without it (a need held only ``when:`` a variable is set)."""

    def given_by(self, target: str) -> bool:
        """Whether the need on ``target`` gives this role."""
        prefix, percent, suffix = self.name.partition("%")
        if not percent:
            return target == self.name
        fits = len(target) > len(prefix) + len(suffix)
        return fits and target.startswith(prefix) and target.endswith(suffix)


Roles = Sequence[Role] | Callable[[Mapping[str, Any]], Sequence[Role]]
"""A step's roles, or for a step whose params name its inputs, a function of them."""


@dataclass(frozen=True)
class Step:
    name: str
    version: int
    run: Callable[[StepContext], None]
    """Runs the step with its roles bound to the context (see :func:`step`)."""
    tools: tuple[str, ...] = ()
    check: Callable[[Mapping[str, Any]], None] | None = None
    """Validates params, as written and again with variables substituted, before any step
    runs; raises ValueError with a message for the user (:class:`ParamError` for one
    param). The types of the params are the step's to check: the engine gives them none."""
    doc: str = ""
    probe: Callable[[Probe], str] | None = None
    """Reads state outside the repo that the step's output depends on (a registry tag, a
    store entry) and returns it as a string; run at every plan, the string enters the key."""
    probe_settles: bool = False
    """The step itself brings what its probe watches where it wants it (it publishes):
    its result is recorded under the probe's answer after it ran, not before, so the next
    plan finds it cached, and a state like the one it found (nothing published) makes it
    run again."""
    inputs: Roles = ()
    resources: tuple[str, ...] = ()
    """What a cluster worker must offer to run it (Dask worker resources, e.g. ``disk``):
    a node of this step is placed only on workers that advertise each one."""
    reads: Callable[[Mapping[str, Any]], Sequence[str]] | None = None
    """The repository files its params name (an edit's file, say), as paths from the
    root: they are the node's sources too, keyed and shipped as any source is."""

    def roles(self, params: Mapping[str, Any]) -> tuple[Role, ...]:
        """The roles the step reads with these params."""
        return tuple(self.inputs(params) if callable(self.inputs) else self.inputs)


REGISTRY: dict[str, Step] = {}
MODULES: dict[str, str] = {}
"""Step name -> the module whose import registers it (see :func:`provide`)."""


def provide(modules: Mapping[str, str]) -> None:
    """Make steps known by name before their modules are imported."""
    MODULES.update(modules)


def step(
    name: str,
    version: int,
    tools: Sequence[str] = (),
    check: Callable[[Mapping[str, Any]], None] | None = None,
    probe: Callable[[Probe], str] | None = None,
    probe_settles: bool = False,
    inputs: Roles = (),
    resources: Sequence[str] = (),
    reads: Callable[[Mapping[str, Any]], Sequence[str]] | None = None,
) -> Callable[[Callable[[StepContext], None]], Callable[[StepContext], None]]:
    """Register a step function. Bump ``version`` whenever its output may change.

    ``inputs``: the roles it reads with :meth:`StepContext.input`. The function is
    registered (and returned) with them bound to the context it is given, whoever runs it.
    """

    def register(run: Callable[[StepContext], None]) -> Callable[[StepContext], None]:
        doc = (run.__doc__ or "").strip()

        @functools.wraps(run)
        def bound(ctx: StepContext) -> None:
            run(dataclasses.replace(ctx, roles=found.roles(ctx.params)))

        found = Step(name, version, bound, tuple(tools), check, doc, probe, probe_settles,
                     inputs if callable(inputs) else tuple(inputs), tuple(resources),
                     reads)  # fmt: skip
        REGISTRY[name] = found
        return bound

    return register


def clean_env(**extra: str) -> dict[str, str]:
    """The environment steps run tools in: PATH, the C locale, and what they add."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", **extra}


def get(name: str, where: str) -> Step:
    found = REGISTRY.get(name)
    if found is None and name in MODULES:
        importlib.import_module(MODULES[name])
        found = REGISTRY.get(name)
    if found is None:
        raise SpecError(
            where,
            f"unknown step {name!r}; known steps are {', '.join(sorted({*MODULES, *REGISTRY}))}",
        )
    return found


def load_all() -> dict[str, Step]:
    """Every step provided, imported: for listing them, and for tests."""
    for module in sorted(set(MODULES.values())):
        importlib.import_module(module)
    return REGISTRY


@dataclass(frozen=True)
class Probe:
    """What a probe sees: the node's params and arch, the checkout, the steps' cache."""

    params: Mapping[str, Any]
    arch: str | None
    root: Path
    cache_dir: Path
    progress: Callable[[str], None] = lambda _message: None
    """Where a probe that fetches (pulls an image to check it) says so."""


@dataclass
class StepContext:
    """What a step sees: its params, its inputs (read-only) and where to write."""

    params: Mapping[str, Any]
    arch: str | None
    root: Path
    sources: list[Path]
    inputs: dict[str, dict[str, Path]]
    out_dir: Path
    outputs: tuple[str, ...]
    tool_paths: Mapping[str, str] = field(default_factory=dict)
    probed: str | None = None
    """What the step's probe reported when the node was keyed: act on this, not on a
    second look, or a tag moved in between would store other bytes under this key."""
    cache_dir: Path | None = None
    """Where steps keep their own caches (Go's build cache, apt lists, the embedded OCI
    store). Never a key input: what a step reads from it must not change its output."""
    progress: Callable[[str], None] = lambda _message: None
    roles: tuple[Role, ...] = ()
    """The roles the step declares (bound by :func:`step`): what :meth:`input` takes."""

    def output(self, name: str) -> Path:
        """Path to write declared output ``name`` to."""
        if name not in self.outputs:
            raise StepFailedError(f"step wrote undeclared output {name!r}")
        path = self.out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def input(self, role: str) -> Path:
        """The one output of the need that gives ``role`` (of this arch, for per-arch ones)."""
        found = self.optional_input(role)
        if found is None:
            raise StepFailedError(
                f"this step needs {role!r}: declare it in the target's needs",
            )
        return found

    def optional_input(self, role: str) -> Path | None:
        """Like :meth:`input`, but None when the need is not there (``when:``/``unless:``)."""
        for arch, path in self.inputs_of(role):
            if arch in ("", self.arch):
                return path
        return None

    def inputs_of(self, role: str) -> list[tuple[str, Path]]:
        """(arch, output) of each need that gives ``role``, every arch (``arches: all``);
        arch is "" for a need that is not per arch."""
        declared = next((r for r in self.roles if r.name == role), None)
        if declared is None:
            names = ", ".join(r.name for r in self.roles) or "none"
            raise StepFailedError(
                f"the step reads input {role!r}, which it does not declare (it declares {names})",
                hint="declare the role in the step's inputs=",
            )
        found = []
        for label, outputs in self.inputs.items():
            name, _, arch = label.partition(":")
            if declared.given_by(name):
                if len(outputs) != 1:
                    raise StepFailedError(f"{label} has {len(outputs)} outputs, not one")
                found.append((arch, next(iter(outputs.values()))))
        return found

    def input_files(self) -> list[Path]:
        """Every input file: sources first, then dependency outputs, in declaration order."""
        return [*self.sources, *(p for outs in self.inputs.values() for p in outs.values())]

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        """Run an external tool; a failure raises with the tool's own last words.

        The tool sees :func:`clean_env` unless ``env`` is given: nothing of the caller's
        environment may reach an output (mksquashfs, for one, reads SOURCE_DATE_EPOCH).
        """
        argv = self._argv(argv, kwargs)
        kwargs.setdefault("stdout", subprocess.PIPE)  # or a file the tool writes to
        done = subprocess.run(argv, stderr=subprocess.PIPE, check=False, **kwargs)
        _check_exit(argv, done.returncode, done.stderr or done.stdout or b"")
        return done

    def call(self, argv: Sequence[str], **kwargs: Any) -> None:
        """Run a tool for what it writes to files, as :meth:`run` does; what it prints
        is kept only to explain a failure.

        Its output goes to a file in memory that the process reuses, not through pipes:
        two pipes and the loop that drains them cost a trivial step a fifth of its time.
        Processes it leaves running in the background are waited for.
        """
        argv = self._argv(argv, kwargs)
        log = _output_file()
        os.ftruncate(log, 0)
        os.lseek(log, 0, os.SEEK_SET)
        # Every process the tool leaves behind (a script's `cmd &`) holds the write end
        # of this pipe: reading it to its end waits for them, as draining pipes did.
        done_r, done_w = os.pipe()
        try:
            process = subprocess.Popen(argv, stdout=log, stderr=log, pass_fds=(done_w,), **kwargs)
            os.close(done_w)
            done_w = -1
            try:
                code = process.wait()
                os.read(done_r, 1)
            except BaseException:
                process.kill()
                process.wait()
                raise
        finally:
            os.close(done_r)
            if done_w >= 0:
                os.close(done_w)
        if code != 0:
            size = os.fstat(log).st_size
            _check_exit(argv, code, os.pread(log, 1 << 16, max(0, size - (1 << 16))))

    def _argv(self, argv: Sequence[str], kwargs: dict[str, Any]) -> list[str]:
        kwargs.setdefault("cwd", self.out_dir)
        kwargs.setdefault("env", clean_env())
        return [self.tool_paths.get(argv[0], argv[0]), *argv[1:]]


_OUTPUT: tuple[int, int] | None = None
"""(pid, fd) of this process's file for tools' output: forked workers make their own."""


def _output_file() -> int:
    global _OUTPUT
    if _OUTPUT is None or _OUTPUT[0] != os.getpid():
        _OUTPUT = (os.getpid(), os.memfd_create("buildgraph-tool-output", os.MFD_CLOEXEC))
    return _OUTPUT[1]


def _check_exit(argv: Sequence[str], code: int, output: bytes) -> None:
    """Raise for a tool that did not exit 0, with the last lines it printed."""
    if code == -signal.SIGINT:
        raise KeyboardInterrupt  # Ctrl-C reached the tool first: the build stops
    if code == 0:
        return
    tail = output.decode(errors="replace").strip()
    tail = "\n".join(tail.splitlines()[-15:])
    how = (
        f"was killed by {signal.Signals(-code).name} ({signal.strsignal(-code)})"
        if code < 0
        else f"exited with status {code}"
    )
    raise StepFailedError(f"{Path(argv[0]).name} {how}" + (f":\n{tail}" if tail else ""))
