"""A version's official extensions and overlays, read from its catalog images.

The graph publishes ``extensions:<version>`` (``image-digests``, ``descriptions.yaml``) and
``overlays:<version>`` (``overlays.yaml``), see :mod:`buildgraph.steps.catalog`. A
schematic names extensions and overlays without versions; the catalog of the version asked
for says which image each name is, pinned by digest.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..engine.errors import BuildgraphError
from ..steps.catalog import DESCRIPTIONS, DIGESTS, OVERLAYS, repository
from ..variables import ARCHES


class UnknownNameError(BuildgraphError):
    """A schematic names an extension or overlay the version's catalog does not list."""


@dataclass(frozen=True)
class Extension:
    name: str
    ref: str
    """``registry/name:tag@sha256:digest``, as image-digests lists it."""
    author: str = ""
    description: str = ""

    def to_json(self) -> dict[str, str]:
        reference, _, digest = self.ref.partition("@")
        return {"name": self.name, "ref": reference, "digest": digest,
                "author": self.author, "description": self.description}  # fmt: skip


@dataclass(frozen=True)
class Overlay:
    name: str
    image: str
    digest: str
    ref: str
    """The pullable reference: the image in the version's registry, pinned."""

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "image": self.image, "ref": self.ref.partition("@")[0],
                "digest": self.digest}  # fmt: skip


@dataclass(frozen=True)
class Catalog:
    extensions: dict[str, Extension] = field(default_factory=dict)
    overlays: tuple[Overlay, ...] = ()

    def extension(self, name: str) -> str:
        """The pinned reference of the extension ``name``."""
        found = self.extensions.get(name)
        if found is None:
            known = ", ".join(sorted(self.extensions)) or "none"
            raise UnknownNameError(
                f"customization.systemExtensions.officialExtensions: unknown extension {name!r}",
                hint=f"official extensions: {known}",
            )
        return found.ref

    def overlay(self, image: str, name: str) -> str:
        """The pinned reference of the overlay image ``image`` that has ``name``."""
        for overlay in self.overlays:
            if overlay.image == image and overlay.name == name:
                return overlay.ref
        known = ", ".join(f"{o.name} ({o.image})" for o in self.overlays) or "none"
        raise UnknownNameError(
            f"overlay: unknown overlay {name!r} of image {image!r}",
            hint=f"official overlays: {known}",
        )

    def check(self, extensions: tuple[str, ...], overlay: Any) -> None:
        """Refuse names this catalog does not list."""
        for name in extensions:
            self.extension(name)
        if overlay is not None:
            self.overlay(overlay.image, overlay.name)


def union(catalogs: list[Catalog]) -> Catalog:
    """What any of ``catalogs`` lists (a name's latest entry where several list it)."""
    extensions: dict[str, Extension] = {}
    overlays: list[Overlay] = []
    for each in catalogs:
        extensions.update(each.extensions)
        overlays += [o for o in each.overlays if o not in overlays]
    return Catalog(extensions, tuple(overlays))


def read(extensions_layer: Path, overlays_layer: Path, registry: str, tag: str) -> Catalog:
    """The catalog of the two catalog layers; overlays are pulled from ``registry`` at
    ``tag`` (the catalog lists them without either, as the public one does)."""
    files = {**_files(extensions_layer), **_files(overlays_layer)}
    descriptions = yaml.safe_load(files.get(DESCRIPTIONS, b"")) or {}
    extensions = {}
    for line in files.get(DIGESTS, b"").decode().splitlines():
        if not line.strip():
            continue
        name = repository(line.partition("@")[0])
        about = descriptions.get(name) or {}
        extensions[name] = Extension(name, line.strip(), str(about.get("author", "")),
                                     str(about.get("description", "")))  # fmt: skip
    listed = (yaml.safe_load(files.get(OVERLAYS, b"")) or {}).get("overlays") or []
    overlays = tuple(
        Overlay(o["name"], o["image"], o["digest"], f"{registry}/{o['image']}:{tag}@{o['digest']}")
        for o in listed
    )
    return Catalog(extensions, overlays)


def _files(layer: Path) -> dict[str, bytes]:
    try:
        with tarfile.open(layer) as tar:
            return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    except (OSError, tarfile.TarError) as err:
        raise BuildgraphError(f"catalog layer {layer}: {err}") from None


def pulled_layer(image: str, cache: Path) -> Path:
    """The top layer of the catalog image ``image``, pulled from its registry into the
    embedded store of ``cache``: where a release's catalog is read from."""
    from ..oci import reference, registry
    from ..oci.layout import Layout

    store, ref = Layout(cache / "oci"), reference.parse(image)
    for arch in ARCHES:  # a catalog is the same for every arch it is built for
        try:
            registry.pull(ref, arch, store)
        except registry.RegistryError:
            if arch == ARCHES[-1]:
                raise
            continue
        manifest = store.manifest_for(str(ref), arch)
        if manifest is not None:
            return store.blob_path(manifest["layers"][-1]["digest"])
    raise BuildgraphError(f"catalog image {image} has no layer", hint="publish it again")
