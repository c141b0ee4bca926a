"""Boot assets taken from an imager image instead of the local graph (IMAGER_IMAGE).

Talos' ``make iso`` runs the imager over the kernel and initramfs an imager image
carries; here ``doit iso IMAGER_IMAGE=<ref>`` does the same: the kernel and initramfs
steps copy ``usr/install/<arch>/<file>`` out of that image's ``<arch>`` manifest, from
the embedded store for ``local/`` names or pulled (digest-checked) from a registry, and
their needs on the OS's own parts fall away (``unless: ${IMAGER_IMAGE}`` in targets/).
The probe resolves the reference to a digest, so a moved tag is a new input.
"""

from __future__ import annotations

import tarfile

from ..errors import BuildgraphError, StepFailedError
from . import Probe, StepContext
from .package import stored_manifest


def _ref(text: str):
    from ..oci.reference import parse

    try:
        return parse(text)
    except ValueError as err:
        raise BuildgraphError(
            f"IMAGER_IMAGE {text!r} is malformed: {err}",
            hint="give it as [registry/]repository[:tag][@sha256:...], e.g. local/me/imager:v1",
        ) from None


def probe_image(probe: Probe) -> str:
    """``""`` without params.image; else ``store <digest>`` or ``registry <digest>``."""
    text = probe.params.get("image") or ""
    if not text:
        return ""
    ref = _ref(text)
    if not ref.is_local:
        from ..oci import registry

        return f"registry {ref.digest or registry.resolve_digest(ref)}"
    from ..oci.layout import Layout

    found = Layout(probe.cache_dir / "oci").resolve(str(ref), str(probe.arch))
    if found is None:
        raise BuildgraphError(
            f"imager image {ref} has no linux/{probe.arch} image in the embedded store",
            hint="build it first (`doit imager` with this arch in PLATFORM), or name one in a"
            " registry",
        )
    return f"store {found[0]}"


def copy_from_image(ctx: StepContext, name: str) -> None:
    """Write ``usr/install/<arch>/<name>`` of params.image to the step's one output."""
    from ..oci.layout import Layout

    assert ctx.arch is not None and ctx.cache_dir is not None
    ref = _ref(ctx.params["image"])
    probed = ctx.probed or probe_image(Probe(ctx.params, ctx.arch, ctx.root, ctx.cache_dir))
    store = Layout(ctx.cache_dir / "oci")
    manifest = stored_manifest(ctx, store, ref, probed)
    if manifest is None:
        raise StepFailedError(f"imager image {ref} has no linux/{ctx.arch} image")
    flat = ctx.out_dir.parent / "image.tar"
    store.flatten_manifest(manifest, flat)
    member = f"usr/install/{ctx.arch}/{name}"
    with tarfile.open(flat) as tar:
        try:
            source = tar.extractfile(member)
        except KeyError:
            source = None
        if source is None:
            raise StepFailedError(
                f"imager image {ref} holds no {member}",
                hint="an imager image carries the boot assets of the arches it was built for"
                " (INSTALLER_ARCH=all: every arch of its PLATFORM)",
            )
        with source, open(ctx.output(ctx.outputs[0]), "wb") as out:
            while chunk := source.read(1 << 20):
                out.write(chunk)
