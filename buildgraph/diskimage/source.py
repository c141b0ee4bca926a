"""Any disk image as a raw file to read: compressed or not, raw, qcow2, vmdk or vhd.

Compression is told by magic bytes, never by name, and undone into a sparse temporary
file (by Python's lzma, bz2 and gzip; by the zstd tool for zstd). A format qemu-img
knows other than raw is converted with ``qemu-img convert -O raw`` (sparse too). Layers
stack: a ``.qcow2.zst`` is unzstd'ed, then converted. The temporary files live in a
private directory under TMPDIR, removed on leaving the context; nothing is written next
to the input, and a raw, uncompressed input is read in place.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..engine import sparse
from ..engine.errors import BuildgraphError
from .run import run

_CHUNK = 1 << 20
_MAX_LAYERS = 4


def _stream(opener: Callable[[BinaryIO], BinaryIO]) -> Callable[[BinaryIO], Iterator[bytes]]:
    """The chunks of a stdlib decompressor, which raises EOFError on a truncated input."""

    def chunks(file: BinaryIO) -> Iterator[bytes]:
        with opener(file) as stream:
            while chunk := stream.read(_CHUNK):
                yield chunk

    return chunks


@dataclass(frozen=True)
class Compression:
    name: str
    magic: bytes
    chunks: Callable[[BinaryIO], Iterator[bytes]] | None
    """None: the zstd tool decompresses it (zstandard's Python readers end a truncated
    input without a word; the tool fails)."""
    pack: tuple[str, ...]
    """The tool that compresses a file to stdout again; its output depends on the input
    alone (no names, no times)."""


COMPRESSIONS = (
    Compression("xz", b"\xfd7zXZ\x00", _stream(lzma.open), ("xz", "-T0", "-c")),
    Compression("zst", b"\x28\xb5\x2f\xfd", None, ("zstd", "-T0", "-q", "-c")),
    Compression("bz2", b"BZh", _stream(bz2.open), ("bzip2", "-c")),
    Compression("gz", b"\x1f\x8b", _stream(gzip.open), ("gzip", "-n", "-c")),
)
_READ_ERRORS = (EOFError, OSError, lzma.LZMAError)


@dataclass(frozen=True)
class RawImage:
    path: Path
    """A raw disk image: the input itself, or a temporary file made from it."""
    layers: tuple[str, ...]
    """What was undone to get it, outermost first: ``("zst", "qcow2")``; () for raw."""


@contextmanager
def raw_image(path: Path) -> Iterator[RawImage]:
    """The input at ``path`` as a raw disk image, for the time of the ``with``."""
    path = Path(path)
    if not path.exists():
        raise BuildgraphError(f"{path}: no such file", hint="give the path of a disk image")
    if not path.is_file():
        raise BuildgraphError(f"{path} is not a file", hint="give the path of a disk image")
    with tempfile.TemporaryDirectory(prefix="buildgraph-image-") as scratch:
        current, layers = path, []
        while (compression := _compression(current)) is not None:
            if len(layers) == _MAX_LAYERS:
                raise BuildgraphError(
                    f"{path}: compressed {len(layers)} times over", hint="decompress it first"
                )
            out = Path(scratch) / f"layer{len(layers)}.raw"
            _decompress(path, current, compression, out)
            if current != path:
                current.unlink()
            current = out
            layers.append(compression.name)
        form = _format(path, current)
        if form != "raw":
            out = Path(scratch) / "converted.raw"
            run(
                ["qemu-img", "convert", "-U", "-f", form, "-O", "raw", str(current), str(out)],
                f"convert {path} from {form} to raw",
                hint="the image may be damaged: `qemu-img check` it",
            )
            current = out
            layers.append(form)
        yield RawImage(current, tuple(layers))


def _compression(path: Path) -> Compression | None:
    with open(path, "rb") as file:
        head = file.read(8)
    for compression in COMPRESSIONS:
        if head.startswith(compression.magic):
            if compression.name == "bz2" and head[3:4] not in b"123456789":
                continue  # "BZh" and a block size digit, not any text starting BZh
            return compression
    return None


def _decompress(origin: Path, src: Path, compression: Compression, dst: Path) -> None:
    if compression.chunks is None:
        run(["zstd", "-d", "-q", "--sparse", str(src), "-o", str(dst)],
            f"decompress {origin} ({compression.name})",
            hint="the file is damaged or truncated: fetch or build it again")  # fmt: skip
        return
    with open(src, "rb") as packed, open(dst, "wb") as out:
        offset = 0
        chunks = compression.chunks(packed)
        while True:
            try:
                chunk = next(chunks, b"")
            except _READ_ERRORS as err:
                raise BuildgraphError(
                    f"{origin}: its {compression.name} data does not decompress: {err}",
                    hint="the file is damaged or truncated: fetch or build it again",
                ) from None
            if not chunk:
                break
            sparse.write_into(chunk, out.fileno(), offset)
            offset += len(chunk)
        os.truncate(out.fileno(), offset)


def _format(origin: Path, path: Path) -> str:
    done = run(
        ["qemu-img", "info", "-U", "--output=json", str(path)], f"tell the format of {origin}"
    )
    return str(json.loads(done.stdout)["format"])
