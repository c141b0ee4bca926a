"""Changing files in partitions of a disk image offline, on a private copy.

The input is opened as a raw file (source.raw_image: a temporary one for any other
format or a compressed input, else a sparse copy), and every edit is planned (plan)
before a byte is written. Each edited partition's bytes are then copied out to a file
of their own (holes kept), edited there by its filesystem's writer, checked with fsck
and copied back at the same offset, so no tool can touch the GPT or another partition.
The disk is written out in the output's format and compression, the input's unless
told (output), and renamed into place: a failure leaves no output and no temporary file.

Every time written is one epoch: ``epoch``, else SOURCE_DATE_EPOCH, else 1980-01-01
(the first day FAT can hold), so the same inputs give the same bytes.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..engine import sparse
from ..engine.errors import BuildgraphError
from . import ext_write, fat_write, filesystems, gpt, writable
from .edits import PartitionEdit
from .output import check_format, format_of, write_image
from .plan import Step, plan
from .source import raw_image

DEFAULT_EPOCH = 315532800
"""1980-01-01T00:00:00Z."""
_WRITERS = {"fat": fat_write.apply, "ext": ext_write.apply}


@dataclass(frozen=True)
class Edited:
    output: Path
    format: str
    compression: str
    partitions: tuple[str, ...]
    """The partitions edited, as ``p9 ROOT``."""


@dataclass(frozen=True)
class _Job:
    partition: gpt.Partition
    writer: str
    steps: list[Step]


def edit(
    image: Path,
    edits: Sequence[PartitionEdit],
    output: Path,
    fmt: str | None = None,
    compression: str | None = None,
    epoch: int | None = None,
) -> Edited:
    """Write ``image`` (a GPT disk in any format source.raw_image opens) with ``edits``
    made to ``output``, as ``fmt`` (raw, qcow2, vmdk, vhd) compressed with
    ``compression`` (none, xz, zst, bz2, gz); None: as the input is. ``epoch``: the time
    of every timestamp written (None: SOURCE_DATE_EPOCH, else DEFAULT_EPOCH)."""
    idle = [item.partition for item in edits if not item.operations()]
    if not edits or idle:
        raise BuildgraphError(
            f"nothing to edit{f' in partition {idle[0]!r}' if idle else ''}",
            hint="give a --partition and, after it, what to do to it",
        )
    when = _epoch(epoch)
    dest = Path(output)
    if dest.is_dir() or not dest.parent.is_dir():
        raise BuildgraphError(
            f"{dest}: {'is a directory' if dest.is_dir() else 'its directory does not exist'}",
            hint="give the path of the image to write",
        )
    with raw_image(image) as raw, tempfile.TemporaryDirectory(prefix="buildgraph-edit-") as tmp:
        work = Path(tmp)
        given = format_of(raw.layers)
        fmt, compression = fmt or given[0], compression or given[1]
        check_format(fmt, compression)
        table = gpt.read(raw.path, str(image))
        disk = raw.path
        if not raw.layers:  # the input itself: edit a copy
            disk = work / "disk.raw"
            sparse.copy(raw.path, disk)
        jobs = [_job(Path(image), table, disk, item, work, edits) for item in edits]
        for job in jobs:
            _apply(disk, job, when, work)
        write_image(disk, dest, fmt, compression, when, str(table.disk_guid), work)
    return Edited(dest, fmt, compression, tuple(job.partition.ref() for job in jobs))


def _epoch(epoch: int | None) -> int:
    if epoch is not None:
        return epoch
    text = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not text:
        return DEFAULT_EPOCH
    if not text.isdigit():
        raise BuildgraphError(
            f"SOURCE_DATE_EPOCH={text!r} is not a number of seconds",
            hint="set it to seconds since 1970 (`git log -1 --format=%ct`), or unset it",
        )
    return int(text)


def find(table: gpt.Table, ref: str, image: Path) -> gpt.Partition:
    """The partition of ``table`` numbered or labelled ``ref``."""
    named = [
        part
        for part in table.partitions
        if (str(part.number) == ref if ref.isdigit() else part.name == ref)
    ]
    listed = ", ".join(part.ref() for part in table.partitions)
    if not named:
        raise BuildgraphError(
            f"{image} has no partition {ref!r}", hint=f"give a number or label of: {listed}"
        )
    if len(named) > 1:
        raise BuildgraphError(
            f"{image} has {len(named)} partitions labelled {ref!r}", hint="give its number"
        )
    return named[0]


def _job(
    image: Path,
    table: gpt.Table,
    disk: Path,
    item: PartitionEdit,
    work: Path,
    edits: Sequence[PartitionEdit],
) -> _Job:
    part = find(table, item.partition, image)
    if [find(table, other.partition, image) for other in edits].count(part) > 1:
        raise BuildgraphError(
            f"{part.ref()} is named by more than one --partition",
            hint="give all of its edits after one --partition",
        )
    filesystem = filesystems.detect(disk, part)
    why = writable.refusal(part, filesystem)
    reader = filesystems.open_reader(disk, part, filesystem)
    if why is not None or reader is None:
        raise BuildgraphError(
            f"{image}: {part.ref()} cannot be edited: {why}",
            hint="edit the partitions that hold configuration (EFI, OEM, ROOT), not /usr",
        )
    stage = work / f"p{part.number}-staged"
    stage.mkdir()
    writer = writable.WRITERS[filesystem]
    steps = plan(item, part.ref(), writer == "fat", reader.walk(), reader.case_sensitive, stage)
    return _Job(part, writer, steps)


def _apply(disk: Path, job: _Job, epoch: int, work: Path) -> None:
    part = job.partition
    piece = work / f"p{part.number}.img"
    with open(disk, "rb") as whole, open(piece, "wb") as out:
        os.truncate(out.fileno(), part.size)
        sparse.copy_range(whole.fileno(), part.offset, part.size, out.fileno(), 0)
    _WRITERS[job.writer](piece, job.steps, epoch, part.ref())
    if piece.stat().st_size != part.size:
        raise BuildgraphError(f"{part.ref()}: the edit changed the partition's size")
    with open(piece, "rb") as edited, open(disk, "r+b") as whole:
        sparse.copy_range(edited.fileno(), 0, part.size, whole.fileno(), part.offset)
    piece.unlink()
