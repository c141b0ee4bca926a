"""``cmdline``: the kernel command line of one platform and arch.

Defaults, the platform's own arguments and the arch's consoles come from params
(targets/ data); the user's ``--extra-kernel-arg`` values, from IMAGER_ARGS, edit them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..kernelargs import Cmdline, extra_from_imager_args
from . import StepContext, step

PARAMS = ("platform", "platform_key", "defaults", "platform_args", "consoles", "extra")


def _check(params: Mapping[str, Any]) -> None:
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise ValueError(f"unknown cmdline params {unknown}; known are {', '.join(PARAMS)}")
    for name in ("platform", "platform_key"):
        if not isinstance(params.get(name), str):
            raise ValueError(f"the cmdline step needs params.{name}, a string")
    extra = params.get("extra", "")
    if "${" not in extra:  # checked again once variables are in
        extra_from_imager_args(extra)


@step("cmdline", version=2, check=_check)
def cmdline(ctx: StepContext) -> None:
    """Write the kernel command line, edited by IMAGER_ARGS."""
    params = ctx.params
    key = params["platform_key"]
    words = [
        f"{key}={params['platform']}",
        *params.get("consoles", []),
        *params.get("defaults", []),
        *params.get("platform_args", []),
    ]
    extra = extra_from_imager_args(params.get("extra", ""))
    line = Cmdline(words).apply(extra, overwrite=("console", key))
    (name,) = ctx.outputs
    ctx.output(name).write_text(f"{line}\n")
