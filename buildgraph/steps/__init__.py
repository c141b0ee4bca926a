"""The step registry and the context a step runs in.

A step is a pure function of (inputs, params) that writes its declared outputs into
a scratch directory. Steps know nothing of doit, of keys or of the cache: the runner
gives them a :class:`StepContext` and stores what they leave behind.
"""

from __future__ import annotations

import importlib
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SpecError, StepFailedError

BUILTIN_MODULES = ("shell", "concat", "cmdline")


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


REGISTRY: dict[str, Step] = {}


def step(
    name: str,
    version: int,
    tools: Sequence[str] = (),
    check: Callable[[Mapping[str, Any]], None] | None = None,
) -> Callable[[Callable[[StepContext], None]], Callable[[StepContext], None]]:
    """Register a step function. Bump ``version`` whenever its output may change."""

    def register(run: Callable[[StepContext], None]) -> Callable[[StepContext], None]:
        REGISTRY[name] = Step(name, version, run, tuple(tools), check, (run.__doc__ or "").strip())
        return run

    return register


def load_builtin() -> dict[str, Step]:
    for module in BUILTIN_MODULES:
        importlib.import_module(f"{__name__}.{module}")
    return REGISTRY


def get(name: str, where: str) -> Step:
    found = load_builtin().get(name)
    if found is None:
        raise SpecError(
            where,
            f"unknown step {name!r}; known steps are {', '.join(sorted(REGISTRY))}",
        )
    return found


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
    progress: Callable[[str], None] = lambda _message: None

    def output(self, name: str) -> Path:
        """Path to write declared output ``name`` to."""
        if name not in self.outputs:
            raise StepFailedError(f"step wrote undeclared output {name!r}")
        path = self.out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def input_files(self) -> list[Path]:
        """Every input file: sources first, then dependency outputs, in declaration order."""
        return [*self.sources, *(p for outs in self.inputs.values() for p in outs.values())]

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        """Run an external tool; a failure raises with the tool's own last words."""
        argv = [self.tool_paths.get(argv[0], argv[0]), *argv[1:]]
        kwargs.setdefault("cwd", self.out_dir)
        done = subprocess.run(argv, capture_output=True, check=False, **kwargs)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout or b"").decode(errors="replace").strip()
            tail = "\n".join(tail.splitlines()[-15:])
            raise StepFailedError(
                f"{Path(argv[0]).name} exited with status {done.returncode}"
                + (f":\n{tail}" if tail else "")
            )
        return done
