"""``catalog``: the layer of a version's catalog image, as the Image Factory reads it.

A factory resolves a schematic's extension and overlay names through two images per
version: ``extensions:<version>`` holds ``image-digests`` (one ``<ref>@sha256:<digest>`` a
line) and ``descriptions.yaml`` (each extension's author and description), and
``overlays:<version>`` holds ``overlays.yaml`` (``overlays: [{name, image, digest}]``).

params.kind is ``extensions`` or ``overlays``; params.entries lists the published images,
each ``{target, image, source}``: the ``oci-publish`` need whose index it is (its digest is
the catalog's), the reference that names it, and its directory in the repository (the
extension's ``manifest.yaml`` or the overlay's ``overlay.yaml``, listed in sources). The
step writes the files as one deterministic tar, a whole layer for ``oci-image``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..engine.errors import StepFailedError
from ..engine.step import Role, StepContext, step
from . import check_epoch

KINDS = {"extensions": "manifest.yaml", "overlays": "overlay.yaml"}
"""Each catalog's kind, and the file of each entry's directory it reads."""
DIGESTS = "image-digests"
DESCRIPTIONS = "descriptions.yaml"
OVERLAYS = "overlays.yaml"


def _check(params: Mapping[str, Any]) -> None:
    check_epoch(params)
    if params.get("kind") not in KINDS:
        raise ValueError(f"params.kind must be one of {', '.join(KINDS)}")
    entries = params.get("entries")
    if not isinstance(entries, list) or not entries:
        raise ValueError("params.entries must list {target, image, source} mappings")
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != {"target", "image", "source"}:
            raise ValueError(f"params.entries: {entry!r} is not {{target, image, source}}")


def _roles(params: Mapping[str, Any]) -> list[Role]:
    return [Role(entry["target"]) for entry in params.get("entries") or []]


def repository(image: str) -> str:
    """The name a catalog lists an image by: its reference without registry and tag
    (``ghcr.io/siderolabs/gvisor:v1`` is ``siderolabs/gvisor``)."""
    from ..oci import reference

    return reference.parse(image).repository


@step("catalog", version=1, check=_check, inputs=_roles)
def catalog(ctx: StepContext) -> None:
    """Write the catalog of params.entries as a layer tar."""
    from ..oci.layout import tar_from_directory

    kind = ctx.params["kind"]
    tree = ctx.out_dir.parent / "catalog"
    tree.mkdir()
    listed = []
    for entry in ctx.params["entries"]:
        digest = "sha256:" + hashlib.sha256(ctx.input(entry["target"]).read_bytes()).hexdigest()
        listed.append((entry, digest, _read(ctx, entry["source"], KINDS[kind])))
    if kind == "extensions":
        lines = [f"{entry['image']}@{digest}\n" for entry, digest, _ in listed]
        (tree / DIGESTS).write_text("".join(lines))
        descriptions = {
            repository(entry["image"]): {
                "author": manifest["metadata"].get("author", ""),
                "description": manifest["metadata"].get("description", ""),
            }
            for entry, _, manifest in listed
        }
        (tree / DESCRIPTIONS).write_text(yaml.safe_dump(descriptions, sort_keys=True))
    else:
        overlays = [
            {"name": overlay["name"], "image": repository(entry["image"]), "digest": digest}
            for entry, digest, overlay in listed
        ]
        (tree / OVERLAYS).write_text(yaml.safe_dump({"overlays": overlays}, sort_keys=False))
    (out,) = ctx.outputs
    tar_from_directory(tree, ctx.output(out), int(ctx.params["epoch"]))


def _read(ctx: StepContext, source: str, name: str) -> dict[str, Any]:
    wanted = (ctx.root / source / name).resolve()
    path = next((p for p in ctx.sources if p.resolve() == wanted), None)
    if path is None:
        raise StepFailedError(f"{source}/{name} is not among the target's sources",
                              hint=f"list {source}/{name} in sources")  # fmt: skip
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise StepFailedError(f"{source}/{name} is not a YAML mapping")
    return data
