"""``package``: a package image's root filesystem, as one tar, from wherever it lives.

A package image (PKG_KERNEL, PKG_BASE, ...) is an OCI image reference:

- in the embedded store (``local/...``, the default): used as it is; when the default
  reference is missing there, it is built from the Debian packages pinned in the lock
  file and stored, so the next build, a push or a user finds it;
- in a registry (``127.0.0.1:5005/me/kernel:v1``, ``ghcr.io/...``): pulled.

The probe turns the reference into what it means right now (a pin, a store digest, a
registry digest), so a moved tag or a re-pinned package changes the key and a switch
back is a cache hit.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import debian
from ..errors import BuildgraphError
from . import Probe, StepContext, step

PIN_ANNOTATION = "dev.buildgraph.debian-pins"


def _check(params: Mapping[str, Any]) -> None:
    for name in ("name", "ref", "default", "lock"):
        if not isinstance(params.get(name), str) or not params[name]:
            raise ValueError(f"the package step needs params.{name}, a string")
    if "${" not in params["ref"]:
        from ..oci.reference import parse

        parse(params["ref"])


def _store(cache_dir: Path):
    from ..oci.layout import Layout

    return Layout(cache_dir / "oci")


def _source(params: Mapping[str, Any], arch: str, root: Path, cache_dir: Path) -> tuple[str, Any]:
    """("pins", [Pin]) | ("store", digest) | ("registry", Reference)."""
    from ..oci.reference import parse

    try:
        ref = parse(params["ref"])
    except ValueError as err:
        raise BuildgraphError(
            f"package image reference {params['ref']!r} is malformed: {err}",
            hint=f"give PKG_{params['name'].upper()} as [registry/]repository[:tag][@sha256:...]",
        ) from None
    if ref.registry != "local":
        return "registry", ref
    pins = None
    if params["ref"] == params["default"]:
        pins = debian.pins_for(root / params["lock"], params["name"], arch)
    manifest = _store(cache_dir).manifest_for(str(ref), arch)
    if manifest is not None:
        stored_pins = manifest.get("annotations", {}).get(PIN_ANNOTATION)
        if pins is None or stored_pins != debian.pins_digest(pins):
            return "store", manifest
    if pins is not None:
        return "pins", pins
    raise BuildgraphError(
        f"package image {ref} ({arch}) is not in the embedded store",
        hint=f"put it there first, or set PKG_{params['name'].upper()} to a registry reference",
    )


def _probe(probe: Probe) -> str:
    assert probe.arch is not None
    kind, what = _source(probe.params, probe.arch, probe.root, probe.cache_dir)
    if kind == "pins":
        return f"debian {debian.pins_digest(what)}"
    if kind == "store":
        return f"store {what['config']['digest']}"
    from ..oci import registry

    return f"registry {what.digest or registry.resolve_digest(what)}"


def _import_pins(ctx: StepContext, pins: list[debian.Pin], store, ref: str, scratch: Path) -> None:
    from ..oci.layout import Image, tar_from_directory

    apt = debian.Apt(ctx.cache_dir / "apt", ctx.arch)
    tree = scratch / "tree"
    tree.mkdir()
    for pin in pins:
        ctx.progress(f"downloading {pin.name} {pin.version}")
        debs = scratch / pin.name
        debs.mkdir()
        debian.extract(apt.download(pin, debs), tree)
    layer = scratch / "layer.tar"
    tar_from_directory(tree, layer, mtime=0)
    image = Image(layers=[layer], config={"architecture": ctx.arch, "os": "linux"})
    store.put_arch(ref, ctx.arch, image, {PIN_ANNOTATION: debian.pins_digest(pins)})


@step("package", version=1, check=_check, probe=_probe)
def package(ctx: StepContext) -> None:
    """Flatten package image params.ref for this arch into the single declared output."""
    assert ctx.arch is not None and ctx.cache_dir is not None
    (out,) = ctx.outputs
    store = _store(ctx.cache_dir)
    kind, what = _source(ctx.params, ctx.arch, ctx.root, ctx.cache_dir)
    ref = ctx.params["ref"]
    with tempfile.TemporaryDirectory(dir=ctx.out_dir.parent) as scratch:
        if kind == "pins":
            _import_pins(ctx, what, store, ref, Path(scratch))
        elif kind == "registry":
            from ..oci import registry

            ctx.progress(f"pulling {what}")
            registry.pull(what, ctx.arch, store, store_as=ref)
        store.flatten(ref, ctx.arch, ctx.output(out))
