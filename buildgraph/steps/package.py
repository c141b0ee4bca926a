"""``package``: a package image's root filesystem, as one tar, from wherever it lives.

A package image (PKG_KERNEL, PKG_BASE, ...) is an OCI image reference:

- in the embedded store (``local/...``, the default): used as it is; when the default
  reference is missing there, or was built from other pins, it is built from the Debian
  packages pinned in the lock file and stored, so the next build, a push or a user finds it;
- in a registry (``127.0.0.1:5005/me/kernel:v1``, ``ghcr.io/...``): pulled.

The probe turns the reference into what it means right now (Debian pins, a manifest in
the store, a registry digest); that enters the key, so a moved tag or a re-pinned package
rebuilds and a switch back is a cache hit. The step then fetches exactly what was probed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import debian
from ..engine.errors import BuildgraphError
from ..engine.step import Probe, StepContext, step

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


def _ref(params: Mapping[str, Any], key: str):
    from ..oci.reference import parse

    try:
        return parse(params[key])
    except ValueError as err:
        raise BuildgraphError(
            f"package image reference {params[key]!r} is malformed: {err}",
            hint=f"give PKG_{params['name'].upper()} as [registry/]repository[:tag][@sha256:...]",
        ) from None


def _probe(probe: Probe) -> str:
    """``debian <pins>``, ``store <manifest digest>`` or ``registry <digest>``."""
    from ..oci.layout import LayoutError

    assert probe.arch is not None
    params = probe.params
    ref = _ref(params, "ref")
    if not ref.is_local:
        from ..oci import registry

        return f"registry {ref.digest or registry.resolve_digest(ref)}"
    default = str(ref) == str(_ref(params, "default"))
    try:
        found = _store(probe.cache_dir).resolve(str(ref), probe.arch)
    except LayoutError:
        if not default:
            raise
        found = None  # a dangling or corrupt entry: built again from the pins
    if found is not None:
        digest, manifest = found
        if not default or PIN_ANNOTATION not in (manifest.get("annotations") or {}):
            return f"store {digest}"  # the user's own image, even at the default name
    if default:
        pins = debian.pins_for(probe.root / params["lock"], params["name"], probe.arch)
        return f"debian {debian.pins_digest(pins)}"
    raise BuildgraphError(
        f"package image {ref} ({probe.arch}) is not in the embedded store",
        hint=f"put it there first, or set PKG_{params['name'].upper()} to a registry reference",
    )


def _from_pins(ctx: StepContext, wanted: str, store, name: str, scratch: Path) -> dict:
    """The stored image built from the pins ``wanted``; downloaded and stored if absent."""
    from ..oci.layout import Image, LayoutError, tar_from_directory

    assert ctx.arch is not None and ctx.cache_dir is not None
    pins = debian.pins_for(ctx.root / ctx.params["lock"], ctx.params["name"], ctx.arch)
    if debian.pins_digest(pins) != wanted:
        raise BuildgraphError(
            f"{ctx.params['lock']} changed since the build was planned",
            hint="run the build again",
        )
    try:
        found = store.resolve(name, ctx.arch)
    except LayoutError:
        found = None
    if found is not None and found[1].get("annotations", {}).get(PIN_ANNOTATION) == wanted:
        return found[1]
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
    image = Image(layers=[layer], config={})
    digest = store.put_arch(name, ctx.arch, image, {PIN_ANNOTATION: wanted})
    return store.read_json(digest)


def stored_manifest(ctx: StepContext | Probe, store, ref, probed: str) -> dict[str, Any] | None:
    """The manifest of ``ref``'s image for this arch that a probe reported as ``store
    <digest>`` or ``registry <digest>``, pulled into ``store`` first in the second case;
    None if the image has no such arch."""
    kind, _, digest = probed.partition(" ")
    if kind == "registry":
        from ..oci import registry

        ctx.progress(f"pulling {ref}")
        registry.pull(ref.with_digest(digest), str(ctx.arch), store, store_as=str(ref))
    found = store.resolve_digest(digest, ctx.arch)
    return None if found is None else found[1]


@step("package", version=2, check=_check, probe=_probe)
def package(ctx: StepContext) -> None:
    """Flatten what the probe found for params.ref and this arch into the declared output."""
    assert ctx.arch is not None and ctx.cache_dir is not None
    (out,) = ctx.outputs
    probed = ctx.probed or _probe(Probe(ctx.params, ctx.arch, ctx.root, ctx.cache_dir))
    kind, _, value = probed.partition(" ")
    store = _store(ctx.cache_dir)
    ref = _ref(ctx.params, "ref")
    with tempfile.TemporaryDirectory(dir=ctx.out_dir.parent) as scratch:
        if kind == "debian":
            manifest = _from_pins(ctx, value, store, str(ref), Path(scratch))
        else:
            manifest = stored_manifest(ctx, store, ref, probed)
            if manifest is None:
                raise BuildgraphError(f"package image {ref} has no linux/{ctx.arch} image")
        store.flatten_manifest(manifest, ctx.output(out))
