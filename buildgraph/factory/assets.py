"""The asset path grammar of ``/image/{schematic}/{version}/{path}``, as the public factory has it.

One table (:data:`KINDS`) lists the asset kinds in the order the grammar tries them, each
with its file name pattern; the first that matches wins, and a name no pattern takes is
read as a disk image from its end: compression, then format, then
``<platform>-<arch>[-secureboot]``. :func:`parse` returns what is asked, or raises
:class:`AssetError` saying why the name is not an asset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..engine.errors import BuildgraphError
from ..steps.image import COMPRESSIONS, FORMATS, SUFFIXES
from ..variables import ARCHES

_ARCH = "(?P<arch>" + "|".join(ARCHES) + ")"
_PLATFORM = r"(?P<platform>[a-z][a-z0-9]*(?:-[a-z0-9]+)*?)"
_SECURE = "(?P<secureboot>-secureboot)?"
KINDS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        ("kernel", f"kernel-{_ARCH}"),
        ("cmdline", f"cmdline-{_PLATFORM}-{_ARCH}{_SECURE}"),
        ("initramfs", rf"initramfs-{_ARCH}\.xz"),
        ("iso", rf"{_PLATFORM}-{_ARCH}{_SECURE}\.iso"),
        ("uki", rf"{_PLATFORM}-{_ARCH}{_SECURE}-uki\.efi"),
        ("installer", rf"installer-{_ARCH}{_SECURE}\.tar"),
        ("installer", rf"{_PLATFORM}-installer-{_ARCH}{_SECURE}\.tar"),
    )
)
"""Asset kinds in grammar order, each with the pattern of its file names."""
_DISK = re.compile(f"{_PLATFORM}-{_ARCH}{_SECURE}")
DEFAULT_SUFFIX = {
    "aws": "raw.xz", "nocloud": "raw.xz", "openstack": "raw.xz", "hcloud": "raw.xz",
    "upcloud": "raw.xz", "gcp": "raw.tar.gz", "azure": "vhd.xz", "digital-ocean": "raw.gz",
    "akamai": "raw.gz", "vmware": "ova", "oracle": "qcow2", "exoscale": "qcow2",
    "scaleway": "raw.zst", "metal": "raw.zst",
}  # fmt: skip
"""The disk image each platform's links offer by default, as the public factory's UI does."""


class AssetError(BuildgraphError):
    """A path that names no asset (400)."""


@dataclass(frozen=True)
class Asset:
    """One asset a path asks for."""

    kind: str
    arch: str
    platform: str = "metal"
    secureboot: bool = False
    suffix: str = ""
    """A disk image's format and compression, as its name ends (``raw.xz``)."""


def parse(path: str) -> Asset:
    """The asset ``path`` names; AssetError if it names none."""
    for kind, pattern in KINDS:
        match = pattern.fullmatch(path)
        if match is not None:
            return _asset(kind, match)
    return _disk(path)


def machine(path: str) -> Asset:
    """The ``<platform>-<arch>[-secureboot]`` a PXE path names, as its command line."""
    match = _DISK.fullmatch(path)
    if match is None:
        raise AssetError(f"invalid PXE path: {path!r}: not <platform>-<arch>[-secureboot]")
    return _asset("cmdline", match)


def _asset(kind: str, match: re.Match[str], suffix: str = "") -> Asset:
    found = match.groupdict()
    return Asset(
        kind,
        found["arch"],
        found.get("platform") or "metal",
        bool(found.get("secureboot")),
        suffix,
    )


def _disk(path: str) -> Asset:
    compression = next(
        (c for c in sorted(COMPRESSIONS, key=len, reverse=True) if c and path.endswith(c)), ""
    )
    stem = path.removesuffix(compression)
    fmt = next((f for f in FORMATS if stem.endswith(f".{f}")), None)
    if fmt is None:
        raise AssetError(f"invalid profile path: {path!r}")
    suffix = fmt + compression
    if suffix not in SUFFIXES:
        raise AssetError(
            f"invalid profile path: {path!r}: {fmt} images do not come as {compression}"
        )
    match = _DISK.fullmatch(stem.removesuffix(f".{fmt}"))
    if match is None:
        raise AssetError(f"invalid profile path: {path!r}: not <platform>-<arch>[-secureboot]")
    return _asset("image", match, suffix)


def name(asset: Asset) -> str:
    """The path that names ``asset``: :func:`parse`'s inverse."""
    secure = "-secureboot" if asset.secureboot else ""
    base = f"{asset.platform}-{asset.arch}{secure}"
    return {
        "kernel": f"kernel-{asset.arch}",
        "cmdline": f"cmdline-{base}",
        "initramfs": f"initramfs-{asset.arch}.xz",
        "iso": f"{base}.iso",
        "uki": f"{base}-uki.efi",
        "installer": f"installer-{asset.arch}{secure}.tar" if asset.platform == "metal"
        else f"{asset.platform}-installer-{asset.arch}{secure}.tar",
        "image": f"{base}.{asset.suffix}",
    }[asset.kind]  # fmt: skip
