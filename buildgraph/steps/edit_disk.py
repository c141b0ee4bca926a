"""``edit-disk``: a raw disk with a profile's partition edits made (diskimage.edit).

params.edits is a list of partition edits as ``edit-image`` reads them from data
(``[{partition: BOOT, add: {src: targets/edits/x.cfg, dest: grub/custom.cfg}}]``), each
``src`` and ``archive`` a file of the repository, named from its root. The step tells the
engine it reads them (``reads``), so they are the node's sources: keyed by digest, and
shipped to a cluster worker as any source is. No edits: the disk passes through
unchanged (the same bytes, so the cache holds it once).

What a checkout does not fix is fixed here, so that every machine makes the same bytes:
an added file is owned by 0:0 and has mode 0755 or 0644 as git keeps it (executable or
not), unless its record says otherwise; every timestamp is params.epoch.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..diskimage import edits as records
from ..engine.errors import BuildgraphError
from ..engine.step import ParamError, Role, StepContext, step
from . import check_epoch


def _edits(params: Mapping[str, Any]) -> list[records.PartitionEdit]:
    given = params.get("edits", [])
    if not isinstance(given, list) or not all(isinstance(item, Mapping) for item in given):
        raise ParamError("edits", f"params.edits must be a list of partition edits, not {given!r}")
    for record in given:
        for op in ("add", "mkdir"):
            items = record.get(op, [])
            for item in items if isinstance(items, list) else [items]:
                if isinstance(item, Mapping) and not isinstance(item.get("mode", ""), str):
                    raise ParamError(
                        "edits",
                        f"the mode of {op} {item.get('dest', item.get('path'))!r} is the number"
                        f' {item["mode"]!r}: give it as quoted octal, e.g. "0644" (YAML reads 644'
                        " as decimal, and 0644 only in YAML 1.1)",
                    )
    try:
        return records.from_data(given)
    except BuildgraphError as err:
        raise ParamError("edits", err.message + (f" ({err.hint})" if err.hint else "")) from None


def _check(params: Mapping[str, Any]) -> None:
    check_epoch(params)
    if "${" not in str(params.get("edits", "")):
        _reads(params)


def _reads(params: Mapping[str, Any]) -> list[str]:
    """The repository files the edits add, in order; a path leaving the repository is
    refused."""
    edits = _edits(params)
    named = [
        *(item.src for edit in edits for item in edit.add),
        *(item.archive for edit in edits for item in edit.tar),
    ]
    for name in named:
        if name.is_absolute() or ".." in name.parts:
            raise ParamError(
                "edits",
                f"{name}, which an edit adds to the disk, is not a path in the repository:"
                " name the file from the repository root",
            )
    return [name.as_posix() for name in named]


def _fixed(edit: records.PartitionEdit, root: Path) -> records.PartitionEdit:
    """``edit`` with repository paths made absolute and owners and modes made fixed."""
    added = tuple(
        dataclasses.replace(
            item,
            src=root / item.src,
            mode=item.mode
            if item.mode is not None
            else 0o755
            if os.access(root / item.src, os.X_OK)
            else 0o644,
            owner=item.owner or (0, 0),
        )
        for item in edit.add
    )
    archives = tuple(dataclasses.replace(item, archive=root / item.archive) for item in edit.tar)
    return dataclasses.replace(edit, add=added, tar=archives)


@step(
    "edit-disk",
    version=1,
    tools=("debugfs", "e2fsck", "mcopy", "mmd", "mdel", "mrd", "mdir", "fsck.vfat"),
    check=_check,
    reads=_reads,
    inputs=[Role("disk-%")],
    resources=("disk",),
)
def edit_disk(ctx: StepContext) -> None:
    """Make the profile's partition edits to its raw disk (disk-%)."""
    from ..diskimage.edit import edit

    (out,) = ctx.outputs
    disk = ctx.input("disk-%")
    edits = [_fixed(item, ctx.root) for item in _edits(ctx.params)]
    if not edits:
        os.link(disk, ctx.output(out))
        return
    edit(disk, edits, ctx.output(out), fmt="raw", compression="none",
         epoch=int(ctx.params["epoch"]))  # fmt: skip
