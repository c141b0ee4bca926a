"""``image``: a raw disk in a cloud's format and compression, byte-reproducible.

params.format is ``raw``, ``qcow2``, ``vhd`` (fixed, sized to whole MiB, as Azure wants)
or ``ova`` (an OVF descriptor and a stream-optimized VMDK in a tar); params.compression
is what follows it in the file name: empty, ``.zst`` (zstd -T0 at params.zstd_level),
``.xz`` (xz -T0), ``.gz`` or ``.tar.gz`` (a sparse tar holding ``disk.raw``, GCP's
convention). A non-empty params.suffix (IMAGE_SUFFIX: ``qcow2``, ``raw.xz``) gives both
at once, in place of the profile's. Conversions are qemu-img's; the bytes it stamps with
the time or at random are then set from params.epoch and params.name.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..engine import sparse
from ..engine.errors import BuildgraphError
from ..engine.step import ParamError, Role, StepContext, clean_env, step
from ..formats import vdisk
from . import check_epoch

FORMATS = ("raw", "qcow2", "vhd", "ova")
COMPRESSIONS = ("", ".zst", ".xz", ".gz", ".tar.gz")


def split(suffix: str) -> tuple[str, str]:
    """A file name's suffix as (format, compression): ``raw.tar.gz`` is (raw, .tar.gz)."""
    fmt, dot, compression = suffix.partition(".")
    return fmt, dot + compression


SUFFIXES = tuple(
    f + c for f in FORMATS for c in COMPRESSIONS
    if not (f == "ova" and c) and not (c == ".tar.gz" and f != "raw")
)  # fmt: skip
"""Every format and compression the step makes, as file name suffixes."""


def _format(params: Mapping[str, Any]) -> tuple[Any, Any]:
    if params.get("suffix"):
        return split(str(params["suffix"]))
    return params.get("format"), params.get("compression", "")


def _check(params: Mapping[str, Any]) -> None:
    check_epoch(params)
    _check_format(params.get("format"), params.get("compression", ""))
    suffix = str(params.get("suffix") or "")
    if suffix and "${" not in suffix and suffix not in SUFFIXES:
        raise ParamError("suffix", f"unknown image suffix {suffix!r}; known: {', '.join(SUFFIXES)}")
    if not isinstance(params.get("name"), str) or not params["name"]:
        raise ParamError("name", "the image step needs params.name, its name inside its format")
    level = str(params.get("zstd_level", ""))
    if _format(params)[1] == ".zst" and "${" not in level and not 1 <= int(level or 0) <= 19:
        raise ValueError("params.zstd_level must be a zstd level from 1 to 19")


def _check_format(fmt: Any, compression: Any) -> None:
    if "${" in f"{fmt}{compression}":
        return
    if fmt not in FORMATS:
        raise ParamError("format", f"unknown disk format {fmt!r}; known: {', '.join(FORMATS)}")
    if compression not in COMPRESSIONS:
        raise ParamError(
            "compression",
            f"unknown compression {compression!r};"
            f" known: none (''), {', '.join(c for c in COMPRESSIONS if c)}"
        )
    if fmt == "ova" and compression:
        raise ValueError("an ova is already a tar: give it no compression")
    if compression == ".tar.gz" and fmt != "raw":
        raise ValueError(".tar.gz holds a raw disk (disk.raw): use it with format raw")


@step(
    "image",
    version=5,
    tools=("qemu-img", "zstd", "xz", "gzip", "tar", "debugfs", "mdir", "mcopy"),
    check=_check,
    inputs=[Role("edit-%")],
)
def image(ctx: StepContext) -> None:
    """Convert the raw disk of the profile (edit-%: the disk with its edits), linting it
    first with params.lint, then compress it."""
    (out,) = ctx.outputs
    params = ctx.params
    epoch = int(params["epoch"])
    work = ctx.out_dir.parent
    raw = ctx.input("edit-%")
    if params.get("lint") == "true":
        _lint(raw)
    converted = work / "disk.raw"
    fmt, compression = _format(params)
    if fmt == "raw" and compression == ".tar.gz":
        sparse.canonical_copy(raw, converted)  # tar --sparse records where the holes are
    elif fmt == "raw":
        os.link(raw, converted)
    else:
        converted = _convert(ctx, raw, work, fmt, params["name"], epoch)
    target = ctx.output(out)
    if not compression:
        sparse.copy(converted, target)
    elif compression == ".tar.gz":
        ctx.run(["tar", "--create", "--sparse", "--format=oldgnu", f"--mtime=@{epoch}",
                 "--owner=0", "--group=0", "--numeric-owner", "--mode=0644",
                 "--use-compress-program=gzip -n", "-f", str(target),
                 "-C", str(work), converted.name])  # fmt: skip
    else:
        argv = {
            ".zst": ["zstd", "-T0", f"-{params['zstd_level']}", "-q", "-c"],
            ".xz": ["xz", "-T0", "-c"],
            ".gz": ["gzip", "-n", "-c"],
        }[compression]
        with open(target, "wb") as sink:
            ctx.run([*argv, str(converted)], stdout=sink, env=clean_env())


def _lint(raw: Path) -> None:
    from ..diskimage.lint import lint

    report = lint(raw)
    if report.errors:
        raise BuildgraphError(
            "LINT=true: the disk has what would make its instances identical or open:\n"
            + "\n".join(report.lines()),
            hint="remove it from the disk (its profile's edits, the rootfs), or build with"
            " LINT=false",
        )


def _convert(ctx: StepContext, raw: Path, work: Path, fmt: str, name: str, epoch: int) -> Path:
    target = work / ("disk.vmdk" if fmt == "ova" else f"disk.{fmt}")
    ctx.run(["qemu-img", "convert", "-f", "raw", *vdisk.QEMU_IMG[fmt], str(raw), target.name],
            cwd=work)  # fmt: skip
    if fmt == "vhd":
        vdisk.fix_vhd(target, epoch, name)
    if fmt != "ova":
        return target
    vdisk.fix_vmdk(target, name)
    descriptor = work / f"{name}.ovf"
    capacity = raw.stat().st_size
    descriptor.write_text(vdisk.ovf(name, target.name, target.stat().st_size, capacity))
    ova = work / f"{name}.ova"
    with tarfile.open(ova, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member in (descriptor, target):  # the descriptor comes first in an OVA
            info = tar.gettarinfo(member, arcname=member.name)
            info.mtime, info.mode = epoch, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(member, "rb") as f:
                tar.addfile(info, f)
    return ova
