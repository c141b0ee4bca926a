"""``oci-image`` and ``oci-publish``: OCI images of build outputs, named, stored and pushed.

``oci-image`` makes one arch's image and writes it as an OCI archive (an image layout in
a tar, what ``skopeo copy oci-archive:...`` reads): the layers of a ``base`` image (an
``oci-image`` dependency, or the image params.base_image names: BASE_INSTALLER_IMAGE,
resolved to a digest by the probe) as they are, then one layer per entry of params.layers, each
either a dependency's tar taken as it is (``tar: pkg-grub``), a directory of the repo
(``tree: targets/extensions/hello``, its files listed in the target's sources; modes 0755
or 0644 from each file's exec bit, directories 0755), or dependency outputs placed
at paths (``files: {usr/install/{arch}/vmlinuz: kernel}``; ``{arch}`` takes every arch of
that dependency present, for images that carry several arches' boot assets), or params
written as JSON files (``json: {usr/install/{arch}/disk.json: {...}}``). Layers are
uncompressed and every date is params.epoch, so equal inputs give equal digests.

``oci-publish`` gathers the per-arch archives of one image into a multi-arch index, names
it ``<name>:<tag>`` in the embedded store, and pushes it when params.push is true. Its
probe reports what the store (and the registry, when pushing) hold under that name, so a
wiped store or a registry whose tag moved makes it run again; the probe settles (see
steps.Step.probe_settles), so a publish is not repeated once it is done.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..engine.errors import BuildgraphError
from ..engine.step import Probe, Role, StepContext, step
from ..formats import untar
from . import check_epoch

LAYER_KINDS = ("tar", "tree", "files", "json")
WHOLE_LAYERS = ("tar", "tree")
"""Kinds that make a layer alone."""


def _check_image(params: Mapping[str, Any]) -> None:
    check_epoch(params)
    if not isinstance(params.get("tag"), str) or not params["tag"]:
        raise ValueError("params.tag must be text")
    layers = params.get("layers", [])
    if not isinstance(layers, list):
        raise ValueError("params.layers must be a list")
    for layer in layers:
        kinds = set(layer) - {"mode"} if isinstance(layer, dict) else set()
        whole = kinds & set(WHOLE_LAYERS)
        if not kinds or not kinds <= set(LAYER_KINDS) or (whole and len(kinds) > 1):
            raise ValueError(
                f"layer {layer!r}: give tar or tree alone, or files and/or json (and"
                " optionally mode)"
            )
        tree = layer.get("tree", "")
        if not isinstance(tree, str) or tree.startswith("/") or ".." in tree.split("/"):
            raise ValueError(f"a tree layer names a directory of the repo, not {tree!r}")
        for kind in ("files", "json"):
            if kind in layer and not isinstance(layer[kind], dict):
                raise ValueError(f"a {kind} layer maps image paths to what goes there")
        if not all(isinstance(need, str) and need for need in _layer_needs(layer)):
            raise ValueError(f"layer {layer!r}: tar and files name the needs they take")


def _layer_needs(layer: Mapping[str, Any]) -> list[Any]:
    return [layer["tar"]] if "tar" in layer else list(layer.get("files", {}).values())


def _image_roles(params: Mapping[str, Any]) -> list[Role]:
    """The needs the params name: the base image's (params.base) and the layers'."""
    names = [params["base"]] if params.get("base") else []
    for layer in params.get("layers", []):
        names += _layer_needs(layer)
    return [Role(name) for name in dict.fromkeys(names)]


def _created(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _probe_image(probe: Probe) -> str:
    from .imagefile import probe_ref

    return probe_ref(probe, probe.params.get("base_image") or "", "BASE_INSTALLER_IMAGE")


def _base(ctx: StepContext, work: Path) -> tuple[list[Path], dict[str, Any]]:
    """The base image's layers and config: a dependency's archive, or params.base_image."""
    params = ctx.params
    if params.get("base_image"):
        from .imagefile import image_manifest

        base, manifest = image_manifest(ctx, params["base_image"], "BASE_INSTALLER_IMAGE")
    elif params.get("base"):
        base = open_archive(ctx.input(params["base"]), work / "base")
        _entry, manifest = _only_image(base, params["base"])
    else:
        return [], {}
    layers = [base.blob_path(layer["digest"]) for layer in manifest["layers"]]
    return layers, dict(base.read_json(manifest["config"]["digest"]).get("config") or {})


@step("oci-image", version=1, check=_check_image, probe=_probe_image, inputs=_image_roles)
def oci_image(ctx: StepContext) -> None:
    """Stack the base image's layers and the params' layers; write one arch's OCI archive."""
    from ..oci.layout import Image, Layout

    assert ctx.arch is not None
    params = ctx.params
    epoch = int(params["epoch"])
    work = ctx.out_dir.parent
    layers, config = _base(ctx, work)
    for number, layer in enumerate(params.get("layers", [])):
        layers.append(_layer(ctx, layer, work / f"layer-{number}", epoch))
    config.update(params.get("config") or {})
    layout = Layout(work / "layout")
    layout.write_manifest(params["tag"], ctx.arch, Image(layers, config, _created(epoch)))
    write_archive(layout, ctx.output(ctx.outputs[0]), epoch)


def _layer(ctx: StepContext, layer: Mapping[str, Any], work: Path, epoch: int) -> Path:
    from ..oci.layout import canonical_json, tar_from_directory

    if "tar" in layer:
        return ctx.input(layer["tar"])
    tree = work / "tree"
    if "tree" in layer:
        return _tree_layer(ctx, layer["tree"], tree, epoch)
    mode = int(str(layer.get("mode", "0644")), 8)

    def place(path: str, arch: str) -> Path:
        dest = tree / path.strip("/").replace("{arch}", arch)
        dest.parent.mkdir(parents=True, exist_ok=True)
        return dest

    for path, value in sorted(layer.get("json", {}).items()):
        place(path, ctx.arch or "").write_bytes(canonical_json(value))
    for path, target in sorted(layer.get("files", {}).items()):
        for arch, source in _by_arch(ctx, target):
            shutil.copyfile(source, place(path, arch))
    for file in [p for p in tree.rglob("*") if p.is_file()]:
        file.chmod(mode)
    for directory in [p for p in tree.rglob("*") if p.is_dir()]:
        directory.chmod(0o755)
    tar = work / "layer.tar"
    tar_from_directory(tree, tar, epoch)
    return tar


def _tree_layer(ctx: StepContext, directory: str, tree: Path, epoch: int) -> Path:
    """The target's sources under the repo's ``directory``, as a layer at the image's /."""
    from ..oci.layout import tar_from_directory

    base = ctx.root / directory
    files = [src for src in ctx.sources if src.is_relative_to(base)]
    if not files:
        raise BuildgraphError(
            f"a tree layer names {directory!r}, but no source of the target lies there",
            hint=f"list its files in the target's sources, e.g. {directory}/**",
        )
    for src in files:
        dest = tree / src.relative_to(base)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        dest.chmod(0o755 if src.stat().st_mode & 0o100 else 0o644)
    for path in [tree, *(p for p in tree.rglob("*") if p.is_dir())]:
        path.chmod(0o755)
    tar = tree.with_name("layer.tar")
    tar_from_directory(tree, tar, epoch)
    return tar


def _by_arch(ctx: StepContext, target: str) -> list[tuple[str, Path]]:
    """(arch, output) of each node of ``target`` among the inputs, in arch order."""
    found = [(arch or ctx.arch or "", path) for arch, path in ctx.inputs_of(target)]
    if not found:
        raise BuildgraphError(f"a files layer names {target!r}: declare it in the target's needs")
    return sorted(found)


def open_archive(archive: Path, dest: Path):
    """The image layout inside an OCI archive, unpacked at ``dest``."""
    from ..oci.layout import Layout

    untar.extract(archive, dest, "data")
    return Layout(dest)


def write_archive(layout, out: Path, epoch: int) -> None:
    """An OCI archive of ``layout``: its layout file, index.json and blobs, deterministic."""
    from ..oci.layout import tar_from_directory

    for scratch in (layout.path / ".tmp", layout.path / ".index.lock"):
        if scratch.is_dir():
            shutil.rmtree(scratch)
        else:
            scratch.unlink(missing_ok=True)
    tar_from_directory(layout.path, out, epoch)


def _only_image(layout, what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(index.json entry, manifest) of the one image an archive holds."""
    entries = json.loads((layout.path / "index.json").read_bytes())["manifests"]
    if len(entries) != 1:
        raise BuildgraphError(f"the OCI archive of {what} holds {len(entries)} images, not one")
    return entries[0], layout.read_json(entries[0]["digest"])


def _check_publish(params: Mapping[str, Any]) -> None:
    for key in ("name", "tag", "image"):
        if not isinstance(params.get(key), str) or not params[key]:
            raise ValueError(f"params.{key} must be text")
    if params.get("push") not in ("true", "false") and "${" not in str(params.get("push")):
        raise ValueError("params.push must be true or false")


def _name(params: Mapping[str, Any]) -> str:
    return f"{params['name']}:{params['tag']}"


def _destination(params: Mapping[str, Any]):
    from ..oci.reference import parse

    dest = parse(_name(params))
    if dest.is_local:
        raise BuildgraphError(
            f"PUSH=true, but {dest} names the embedded store, not a registry",
            hint="set IMAGE_REGISTRY (or REGISTRY) to the registry to push to,"
            " e.g. REGISTRY=127.0.0.1:5005",
        )
    return dest


def _probe_publish(probe: Probe) -> str:
    """What the store, and the registry when pushing, hold under the image's name now."""
    from ..oci.layout import Layout
    from ..oci.registry import NotFoundError, resolve_digest

    found = Layout(probe.cache_dir / "oci").lookup(_name(probe.params))
    state = f"store {found.digest if found else 'none'}"
    if probe.params["push"] == "true":
        try:
            state += f" registry {resolve_digest(_destination(probe.params))}"
        except NotFoundError:
            state += " registry none"
    return state


@step(
    "oci-publish",
    version=1,
    check=_check_publish,
    probe=_probe_publish,
    probe_settles=True,
    inputs=lambda params: [Role(params["image"])],
)
def oci_publish(ctx: StepContext) -> None:
    """Index the per-arch archives of params.image, store the index, push it if asked."""
    from ..oci.layout import Layout
    from ..oci.push import push

    assert ctx.cache_dir is not None
    store = Layout(ctx.cache_dir / "oci")
    work = ctx.out_dir.parent
    entries = []
    for arch, archive_path in sorted(ctx.inputs_of(ctx.params["image"])):
        label = f"{ctx.params['image']}:{arch}"
        archive = open_archive(archive_path, work / label.replace(":", "-"))
        entry, manifest = _only_image(archive, label)
        for blob in (manifest["config"], *manifest["layers"], entry):
            store.put_blob_file(archive.blob_path(blob["digest"]), blob["mediaType"])
        entries.append({k: v for k, v in entry.items() if k != "annotations"})
    top = store.write_index(_name(ctx.params), entries)
    shutil.copyfile(store.blob_path(top.digest), ctx.output(ctx.outputs[0]))
    if ctx.params["push"] == "true":
        ctx.progress(push(store, _name(ctx.params), _destination(ctx.params)).summary())
