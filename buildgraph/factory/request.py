"""A schematic and an asset as a build: the imager's profile, and so the imager's keys.

The factory translates what a URL asks into an imager profile and hands it to
:func:`buildgraph.imager.profile.build_request`, the imager's own translation, so an asset
the factory builds is the node ``buildgraph imager`` would build for the same inputs: the
same keys, one cache. What the imager has no field for is a variable: a disk image in
another format than its platform profile's is ``IMAGE_SUFFIX``.

Which customizations reach which asset follows the public factory: kernel arguments and
META reach what boots with a command line of its own (ISO, disk image, UKI, installer,
cmdline), never the kernel or the initramfs; extensions reach everything but the kernel and
the command line. Every asset with extensions carries the schematic itself as one more, a
tarball named ``schematic`` whose version is the schematic's ID, so a booted machine says
which schematic built it.
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..engine.errors import BuildgraphError
from ..imager.profile import build_request, image_output
from .assets import Asset
from .catalog import Catalog
from .schematic import Schematic
from .versions import Version

_ARGS_REACH = ("iso", "image", "uki", "installer", "cmdline")
_EXTENSIONS_REACH = ("initramfs", "iso", "image", "uki", "installer")
_OVERLAY_REACH = ("image", "iso", "installer", "uki", "cmdline")
"""An overlay's options reach the kernel command line: every asset that holds one."""
SCHEMATIC_FILE = "usr/local/share/schematic/schematic.yaml"


class UnservedError(BuildgraphError):
    """An asset this graph does not build (404), saying which it does."""


@dataclass(frozen=True)
class Build:
    """What to build for one asset: the goal, its variables, and which target's output
    the asset is."""

    goal: tuple[str, ...]
    variables: dict[str, str]
    target: str


def build_for(
    schematic: Schematic,
    asset: Asset,
    catalog: Catalog,
    platforms: dict[str, dict],
    extension_dir: Path,
    keys: Path | None,
    release: Version | None = None,
) -> Build:
    """The build of ``asset`` with ``schematic``'s customizations, of the checkout or of
    a ``release`` (its imager image's kernel and initramfs, its version); UnservedError
    for an asset this graph does not make, BuildgraphError for a schematic it cannot
    apply."""
    _check_served(asset, platforms, keys)
    profile: dict[str, Any] = {"arch": asset.arch, "platform": asset.platform,
                               "output": {"kind": asset.kind}}  # fmt: skip
    inputs: dict[str, Any] = {}
    if release is not None and release.imager is not None:
        profile["version"] = release.name
        inputs = {"kernel": {"imageRef": release.imager}, "initramfs": {"imageRef": release.imager}}
    if asset.secureboot:
        profile["secureboot"] = True
    if asset.kind in _ARGS_REACH:
        customization: dict[str, Any] = {}
        if schematic.extra_kernel_args:
            customization["extraKernelArgs"] = list(schematic.extra_kernel_args)
        if schematic.meta:
            customization["metaContents"] = [{"key": k, "value": v} for k, v in schematic.meta]
        if customization:
            profile["customization"] = customization
    if asset.kind in _EXTENSIONS_REACH:
        refs = [{"imageRef": catalog.extension(name)} for name in schematic.official_extensions]
        tarball = schematic_extension(schematic, extension_dir)
        inputs["systemExtensions"] = [*refs, {"tarballPath": str(tarball)}]
    if inputs:
        profile["input"] = inputs
    if schematic.overlay is not None and asset.kind in _OVERLAY_REACH:
        overlay = schematic.overlay
        profile["overlay"] = {"image": {"imageRef": catalog.overlay(overlay.image, overlay.name)},
                              "name": overlay.name}  # fmt: skip
        if overlay.options:
            profile["overlay"]["options"] = dict(overlay.options)
    request = build_request(profile, platforms)
    variables = dict(request.variables)
    if keys is not None and asset.secureboot:
        variables["SECUREBOOT_KEYS"] = str(keys)
    if asset.kind == "image":
        native = _native_suffix(platforms, request.target.removeprefix("image-"))
        if asset.suffix != native:
            variables["IMAGE_SUFFIX"] = asset.suffix
    target = request.cmdline_target if asset.kind == "cmdline" else request.target
    assert target is not None
    return Build((target,), variables, target)


def _native_suffix(platforms: dict[str, dict], name: str) -> str:
    output = image_output(platforms[name])
    return output["imageOptions"]["diskFormat"] + output["outFormat"]


def _check_served(asset: Asset, platforms: dict[str, dict], keys: Path | None) -> None:
    known = sorted({p["platform"] for p in platforms.values()})
    if asset.platform not in known:
        raise UnservedError(
            f"unknown platform {asset.platform!r}", hint=f"known: {', '.join(known)}"
        )
    arches = {a for p in platforms.values() if p["platform"] == asset.platform for a in p["arches"]}
    if asset.arch not in arches:
        raise UnservedError(f"{asset.platform} images are not built for {asset.arch}")
    if asset.kind in ("iso", "installer") and asset.platform != "metal":
        raise UnservedError(f"{asset.kind} assets are built for metal, not {asset.platform}")
    if asset.secureboot and keys is None:
        raise UnservedError(
            "this factory serves no secure boot assets: it was started without keys",
            hint="start it with --secureboot-keys DIR (buildgraph secureboot keys DIR)",
        )
    if asset.kind == "uki" and not asset.secureboot:
        raise UnservedError(
            "a UKI is a secure boot asset: ask for <platform>-<arch>-secureboot-uki.efi"
        )


def schematic_extension(schematic: Schematic, directory: Path) -> Path:
    """The schematic as a system extension tarball in ``directory``, written once: the
    same schematic gives the same bytes, so the same keys."""
    path = directory / f"schematic-{schematic.id}.tar"
    if path.is_file():
        return path
    manifest = {"version": "v1alpha1", "metadata": {
        "name": "schematic", "version": schematic.id, "author": "Image Factory",
        "description": "The schematic this image was built from."}}  # fmt: skip
    files = {
        "manifest.yaml": yaml.safe_dump(manifest, sort_keys=False).encode(),
        f"rootfs/{SCHEMATIC_FILE}": schematic.marshal(),
    }
    directories = sorted(
        {"/".join(p.split("/")[:n]) for p in files for n in range(1, p.count("/") + 1)}
    )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for entry in sorted([*directories, *files]):
            info = tarfile.TarInfo(entry)
            info.mode, info.mtime = 0o755, 0
            if entry in files:
                info.size, info.mode = len(files[entry]), 0o644
                tar.addfile(info, io.BytesIO(files[entry]))
            else:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)
    return path
