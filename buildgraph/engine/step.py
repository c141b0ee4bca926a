"""The step interface: what a step is, the context it runs in, and where to find one.

A step is a pure function of (inputs, params) that writes its declared outputs into
a scratch directory. Steps know nothing of doit, of keys or of the cache: the runner
gives them a :class:`StepContext` and stores what they leave behind. The engine ships
no step: the OS side names the module of each of its steps (:func:`provide`), and a
module is imported the first time a plan needs its step.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SpecError, StepFailedError


@dataclass(frozen=True)
class Step:
    name: str
    version: int
    run: Callable[[StepContext], None]
    tools: tuple[str, ...] = ()
    check: Callable[[Mapping[str, Any]], None] | None = None
    """Validates params, as written and again with variables substituted, before any step
    runs; raises ValueError with a message for the user."""
    doc: str = ""
    probe: Callable[[Probe], str] | None = None
    """Reads state outside the repo that the step's output depends on (a registry tag, a
    store entry) and returns it as a string; run at every plan, the string enters the key."""
    probe_settles: bool = False
    """The step itself brings what its probe watches where it wants it (it publishes):
    its result is recorded under the probe's answer after it ran, not before, so the next
    plan finds it cached, and a state like the one it found (nothing published) makes it
    run again."""


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
) -> Callable[[Callable[[StepContext], None]], Callable[[StepContext], None]]:
    """Register a step function. Bump ``version`` whenever its output may change."""

    def register(run: Callable[[StepContext], None]) -> Callable[[StepContext], None]:
        doc = (run.__doc__ or "").strip()
        REGISTRY[name] = Step(name, version, run, tuple(tools), check, doc, probe, probe_settles)
        return run

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

    def output(self, name: str) -> Path:
        """Path to write declared output ``name`` to."""
        if name not in self.outputs:
            raise StepFailedError(f"step wrote undeclared output {name!r}")
        path = self.out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def input(self, target: str) -> Path:
        """The one output of the dependency on ``target`` (of this arch, for per-arch ones).

        A ``%`` in ``target`` stands for a profile: ``cmdline-%`` finds ``cmdline-aws``.
        """
        found = self.optional_input(target)
        if found is None:
            raise StepFailedError(
                f"this step needs {target!r}: declare it in the target's needs",
            )
        return found

    def optional_input(self, target: str) -> Path | None:
        """Like :meth:`input`, but None when the need is not there (``when:``/``unless:``)."""
        prefix, percent, suffix = target.partition("%")
        for label, outputs in self.inputs.items():
            name, _, arch = label.partition(":")
            if percent:
                matched = name.startswith(prefix) and name.endswith(suffix)
            else:
                matched = name == target
            if matched and arch in ("", self.arch):
                if len(outputs) != 1:
                    raise StepFailedError(f"{label} has {len(outputs)} outputs, not one")
                return next(iter(outputs.values()))
        return None

    def input_files(self) -> list[Path]:
        """Every input file: sources first, then dependency outputs, in declaration order."""
        return [*self.sources, *(p for outs in self.inputs.values() for p in outs.values())]

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        """Run an external tool; a failure raises with the tool's own last words.

        The tool sees :func:`clean_env` unless ``env`` is given: nothing of the caller's
        environment may reach an output (mksquashfs, for one, reads SOURCE_DATE_EPOCH).
        """
        argv = [self.tool_paths.get(argv[0], argv[0]), *argv[1:]]
        kwargs.setdefault("cwd", self.out_dir)
        kwargs.setdefault("env", clean_env())
        kwargs.setdefault("stdout", subprocess.PIPE)  # or a file the tool writes to
        done = subprocess.run(argv, stderr=subprocess.PIPE, check=False, **kwargs)
        if done.returncode == -signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C reached the tool first: the build stops
        if done.returncode != 0:
            tail = (done.stderr or done.stdout or b"").decode(errors="replace").strip()
            tail = "\n".join(tail.splitlines()[-15:])
            how = (
                f"was killed by {signal.Signals(-done.returncode).name}"
                f" ({signal.strsignal(-done.returncode)})"
                if done.returncode < 0
                else f"exited with status {done.returncode}"
            )
            raise StepFailedError(f"{Path(argv[0]).name} {how}" + (f":\n{tail}" if tail else ""))
        return done
