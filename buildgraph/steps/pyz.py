"""``pyz``: a Python zip application of the target's sources, byte-reproducible.

The installer image ships its program this way: ``installer/__main__.py`` and the few
buildgraph modules the disk step imports, one file that any ``python3`` runs with the
standard library alone. The sources are the target's ``sources:``, so their digests key
the node. Each goes in under its path in the repo, ``params.main`` as ``__main__.py``.
The bytes depend on the sources' contents only (and on the zlib that deflates them):
``#!/usr/bin/env python3``, then the entries sorted by name, each dated 1980-01-01 (the
earliest a zip holds), mode 0644, deflated at level 9; the file itself is mode 0755.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..engine.errors import StepFailedError
from ..engine.step import StepContext, step

SHEBANG = b"#!/usr/bin/env python3\n"
DATE = (1980, 1, 1, 0, 0, 0)
LEVEL = 9
UNIX = 3  # ZipInfo.create_system: the mode in external_attr is a Unix mode


def _check(params: Mapping[str, Any]) -> None:
    unknown = set(params) - {"main"}
    if unknown:
        raise ValueError(f"unknown pyz params {sorted(unknown)}; known is main")
    main = params.get("main")
    if not isinstance(main, str) or not main.endswith(".py"):
        raise ValueError(
            "params.main must name the program's .py file among the sources,"
            " e.g. installer/__main__.py"
        )


@step("pyz", version=1, check=_check)
def pyz(ctx: StepContext) -> None:
    """Pack the sources into one zip application, params.main as its __main__.py."""
    if len(ctx.outputs) != 1:
        raise StepFailedError(f"pyz writes one output, not {len(ctx.outputs)}")
    entries = _entries(ctx.sources, ctx.root, ctx.params["main"])
    path = ctx.output(ctx.outputs[0])
    with open(path, "wb") as f:
        f.write(SHEBANG)
        with zipfile.ZipFile(f, "w") as zf:
            for name in sorted(entries):
                info = zipfile.ZipInfo(name, date_time=DATE)
                info.create_system = UNIX
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, entries[name].read_bytes(), compresslevel=LEVEL)
    os.chmod(path, 0o755)


def _entries(sources: list[Path], root: Path, main: str) -> dict[str, Path]:
    """Name in the zip -> source file; refuses what would not import from the zip."""
    names = {path.relative_to(root).as_posix(): path for path in sources}
    if main not in names:
        raise StepFailedError(
            f"params.main {main!r} is not among the target's sources",
            hint="list it in sources:, so it keys the node",
        )
    if "__main__.py" in names and main != "__main__.py":
        raise StepFailedError(f"both {main} and the source __main__.py would be __main__.py")
    entries: dict[str, Path] = {}
    for name, path in names.items():
        if "__pycache__" in name.split("/") or name.endswith((".pyc", ".pyo")):
            raise StepFailedError(
                f"source {name} is compiled bytecode",
                hint="list the .py files in sources:, not their directories",
            )
        entries["__main__.py" if name == main else name] = path
    for name in (n for n in entries if n.endswith(".py")):
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            init = "/".join(parts[:depth]) + "/__init__.py"
            if init not in entries:
                raise StepFailedError(
                    f"source {name} is in a package whose {init} is not among the sources",
                    hint=f"add {init} to sources:, or its package will not import from the zip",
                )
    return entries
