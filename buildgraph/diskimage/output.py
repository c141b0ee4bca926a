"""A raw disk written out in a format and a compression, reproducibly and atomically.

Formats are qemu-img's, with the image step's flags (formats.vdisk.QEMU_IMG; a vmdk is
the stream-optimized kind an OVA holds), and the bytes qemu-img stamps with the time or
at random set from the epoch and a name; compressions are source.COMPRESSIONS' tools.
The file is made beside its final path under a hidden name and renamed over it only
when whole, so a failure leaves no output (and no hidden file either).
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

from ..engine import sparse
from ..engine.errors import BuildgraphError
from ..formats import vdisk
from .run import run
from .source import COMPRESSIONS

FORMATS = {"raw": None, "qcow2": "qcow2", "vmdk": "ova", "vhd": "vhd"}
"""Output format -> its key in vdisk.QEMU_IMG (None: raw, no conversion)."""
_QEMU_NAMES = {"vpc": "vhd"}
COMPRESSION_NAMES = ("none", *(compression.name for compression in COMPRESSIONS))


def format_of(layers: tuple[str, ...]) -> tuple[str, str]:
    """(format, compression) of an input that source.raw_image undid ``layers`` of."""
    names = {compression.name for compression in COMPRESSIONS}
    packed = [layer for layer in layers if layer in names]
    formats = [_QEMU_NAMES.get(layer, layer) for layer in layers if layer not in names]
    return (formats[-1] if formats else "raw"), (packed[0] if packed else "none")


def check_format(fmt: str, compression: str) -> None:
    if fmt not in FORMATS:
        raise BuildgraphError(
            f"unknown output format {fmt!r}", hint=f"give --format {'|'.join(FORMATS)}"
        )
    if compression not in COMPRESSION_NAMES:
        raise BuildgraphError(
            f"unknown compression {compression!r}",
            hint=f"give --compression {'|'.join(COMPRESSION_NAMES)}",
        )


def write_image(
    disk: Path, dest: Path, fmt: str, compression: str, epoch: int, name: str, work: Path
) -> None:
    """Write the raw ``disk`` to ``dest`` as ``fmt`` compressed with ``compression``;
    ``name`` (and ``epoch``) give the bytes a VHD or VMDK would have at random."""
    check_format(fmt, compression)
    hidden = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        os.close(os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        converted = disk
        if FORMATS[fmt] is not None:
            converted = hidden if compression == "none" else work / f"disk.{fmt}"
            run(["qemu-img", "convert", "-f", "raw", *vdisk.QEMU_IMG[FORMATS[fmt]],
                 str(disk), str(converted)], f"convert the edited disk to {fmt}")  # fmt: skip
            if fmt == "vhd":
                vdisk.fix_vhd(converted, epoch, name)
            elif fmt == "vmdk":
                vdisk.fix_vmdk(converted, name)
        if compression != "none":
            (pack,) = (c.pack for c in COMPRESSIONS if c.name == compression)
            with open(hidden, "wb") as out:
                run([*pack, str(converted)], f"compress the edited disk ({compression})",
                    stdout=out)  # fmt: skip
        elif converted != hidden:
            sparse.copy(converted, hidden)
        os.replace(hidden, dest)
    except BaseException:
        with suppress(FileNotFoundError):
            hidden.unlink()
        raise
