"""``shell``: run a shell script, in the manner of Bazel's genrule.

The script sees ``$SRCS`` (source files), ``$DEPS`` (dependency outputs), ``$OUT``
(the directory to write the declared outputs into) and ``$ARCH``, and nothing of the
caller's environment but PATH, so that what it does is a function of its key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..engine.step import StepContext, clean_env, step


def _check(params: Mapping[str, Any]) -> None:
    if not isinstance(params.get("script"), str):
        raise ValueError("the shell step needs params.script, a string")


@step("shell", version=1, tools=("sh",), check=_check)
def shell(ctx: StepContext) -> None:
    """Run params.script with sh -eu."""
    env = clean_env(
        SRCS=" ".join(str(p) for p in ctx.sources),
        DEPS=" ".join(str(p) for outs in ctx.inputs.values() for p in outs.values()),
        OUT=str(ctx.out_dir),
        ARCH=ctx.arch or "",
    )
    ctx.call(["sh", "-eu", "-c", ctx.params["script"]], env=env)
