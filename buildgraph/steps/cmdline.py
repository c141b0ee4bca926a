"""``cmdline``: the kernel command line of one platform and arch.

Defaults, the platform's own arguments and the arch's consoles come from params
(targets/ data), then an overlay's kernel arguments; the user's ``--extra-kernel-arg``
values (KERNEL_ARGS) edit the result. ``cmdline-meta`` adds META values to a command
line, for the boot media that have no META partition (ISO, PXE kernel/initramfs).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from ..engine.errors import StepFailedError
from ..engine.step import Role, StepContext, step
from ..formats import meta
from ..kernelargs import Cmdline
from . import check_types
from .overlay import load as load_overlay

MAX_LINE = 2047
"""COMMAND_LINE_SIZE - 1 on amd64 and arm64: the kernel cuts what is longer."""
PARAMS = ("platform", "platform_key", "defaults", "platform_args", "consoles", "extra",
          "overlay_name", "overlay_options")  # fmt: skip


def _check(params: Mapping[str, Any]) -> None:
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise ValueError(f"unknown cmdline params {unknown}; known are {', '.join(PARAMS)}")
    for name in ("platform", "platform_key"):
        if name not in params:
            raise ValueError(f"the cmdline step needs params.{name}, a string")
    check_types(params, texts=("platform", "platform_key", "extra", "overlay_name",
                               "overlay_options"),
                lists=("consoles", "defaults", "platform_args"))  # fmt: skip


@step("cmdline", version=3, check=_check, inputs=[Role("overlay", optional=True)])
def cmdline(ctx: StepContext) -> None:
    """Write the kernel command line, edited by KERNEL_ARGS."""
    params = ctx.params
    key = params["platform_key"]
    words = [
        f"{key}={params['platform']}",
        *params.get("consoles", []),
        *params.get("defaults", []),
        *params.get("platform_args", []),
    ]
    overlay = ctx.optional_input("overlay")
    if overlay is not None:
        found = load_overlay(overlay, params.get("overlay_name", ""),
                             params.get("overlay_options", ""))  # fmt: skip
        words += found.kernel_args
    extra = shlex.split(params.get("extra", ""))
    line = Cmdline(words).apply(extra, overwrite=("console", key))
    (name,) = ctx.outputs
    ctx.output(name).write_text(f"{line}\n")


def _check_meta(params: Mapping[str, Any]) -> None:
    if set(params) != {"meta"}:
        raise ValueError("the cmdline-meta step takes exactly params.meta (META words)")


@step("cmdline-meta", version=1, check=_check_meta, inputs=[Role("cmdline-%")])
def cmdline_meta(ctx: StepContext) -> None:
    """Copy a platform's command line (cmdline-%), with META as ``buildgraph.meta=`` at its end."""
    source = ctx.input("cmdline-%")
    values = meta.parse_words(shlex.split(ctx.params["meta"]))
    line = source.read_text().strip()
    param = meta.cmdline_param(values)
    if param:
        line = f"{line} {param}"
    if len(line) > MAX_LINE:
        raise StepFailedError(
            f"the kernel command line with META is {len(line)} bytes; the kernel keeps"
            f" {MAX_LINE} (META takes {len(param)} of them as {param[:24]}...)",
            hint="give less META for an ISO or PXE boot, or use a disk image, whose META"
            " partition holds up to 512 KiB",
        )
    (name,) = ctx.outputs
    ctx.output(name).write_text(f"{line}\n")
