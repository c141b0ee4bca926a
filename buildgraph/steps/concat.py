"""``concat``: join input files and a text into each declared output.

Pure Python and deterministic, so small graphs (examples, tests, benchmarks) need no
external tool. ``strip: true`` strips each input first, which makes an edit that only
adds white space produce identical bytes: the case early cutoff exists for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..engine.step import StepContext, step


def _check(params: Mapping[str, Any]) -> None:
    unknown = set(params) - {"text", "strip"}
    if unknown:
        raise ValueError(f"unknown concat params {sorted(unknown)}; known are text, strip")
    if not isinstance(params.get("text", ""), str):
        raise ValueError("concat params.text must be a string")


@step("concat", version=1, check=_check)
def concat(ctx: StepContext) -> None:
    """Concatenate every input, then params.text, into each output."""
    parts = []
    for path in ctx.input_files():
        data = path.read_bytes()
        parts.append(data.strip() + b"\n" if ctx.params.get("strip") else data)
    parts.append(str(ctx.params.get("text", "")).encode())
    body = b"".join(parts)
    for name in ctx.outputs:
        ctx.output(name).write_bytes(body)
