"""Files taken from an image: IMAGER_IMAGE's boot assets, an overlay, a customization.

Talos' ``make iso`` runs the imager over the kernel and initramfs an imager image
carries; here ``doit iso IMAGER_IMAGE=<ref>`` does the same: the kernel and initramfs
steps copy ``usr/install/<arch>/<file>`` out of that image's ``<arch>`` manifest, from
the embedded store for ``local/`` names or pulled (digest-checked) from a registry, and
their needs on the OS's own parts fall away (``unless: ${IMAGER_IMAGE}`` in targets/).
The probe resolves the reference to a digest, so a moved tag is a new input.

The ``files`` step flattens a whole image (OVERLAY_IMAGE, CUSTOMIZATION) into one tar, or
packs a directory (CUSTOMIZATION=./dir) the same way; a directory's probe is a digest of
its tree, so an edit inside it is a new input.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..engine.errors import BuildgraphError, StepFailedError
from ..engine.hashing import digest_bytes, digest_file
from ..engine.step import Probe, StepContext, step
from .package import stored_manifest


def _ref(text: str, what: str = "IMAGER_IMAGE"):
    from ..oci.reference import parse

    try:
        return parse(text)
    except ValueError as err:
        raise BuildgraphError(
            f"{what} {text!r} is malformed: {err}",
            hint="give it as [registry/]repository[:tag][@sha256:...], e.g. local/me/imager:v1",
        ) from None


def probe_image(probe: Probe) -> str:
    """``""`` without params.image; else ``store <digest>`` or ``registry <digest>``."""
    return probe_ref(probe, probe.params.get("image") or "", "IMAGER_IMAGE")


def probe_ref(probe: Probe, text: str, what: str) -> str:
    """``store <digest>`` or ``registry <digest>`` for the image ``text`` names."""
    if not text:
        return ""
    ref = _ref(text, what)
    if not ref.is_local:
        from ..oci import registry

        return f"registry {ref.digest or registry.resolve_digest(ref)}"
    from ..oci.layout import Layout

    store = Layout(probe.cache_dir / "oci")
    if ref.digest:  # pinned: the digest names it, whatever the tag says now
        found = (
            store.resolve_digest(ref.digest, str(probe.arch))
            if store.has_blob(ref.digest)
            else None
        )
    else:
        found = store.resolve(str(ref), str(probe.arch))
    if found is None:
        raise BuildgraphError(
            f"{what} {ref} has no linux/{probe.arch} image in the embedded store",
            hint=f"build or copy it there first ({_MAKES.get(what, _MAKES['IMAGER_IMAGE'])}),"
            " or name one in a registry",
        )
    return f"store {found[0]}"


_MAKES = {
    "IMAGER_IMAGE": "for the imager: `doit imager` with this arch in PLATFORM",
    "system extension": "the examples: `doit examples` with this arch in PLATFORM",
}
"""What builds an image of each kind into the embedded store, for the hint above."""


def image_manifest(ctx: StepContext, text: str, what: str) -> tuple[Any, dict[str, Any]]:
    """(the embedded store, the manifest of this arch) of the image ``text`` names, as
    the node's probe resolved it: pulled into the store first if it is a registry's."""
    from ..oci.layout import Layout

    assert ctx.arch is not None and ctx.cache_dir is not None
    probed = ctx.probed or probe_ref(Probe(ctx.params, ctx.arch, ctx.root, ctx.cache_dir),
                                     text, what)  # fmt: skip
    store = Layout(ctx.cache_dir / "oci")
    manifest = stored_manifest(ctx, store, _ref(text, what), probed)
    if manifest is None:
        raise StepFailedError(f"{what} {text} has no linux/{ctx.arch} image")
    return store, manifest


def copy_from_image(ctx: StepContext, name: str) -> None:
    """Write ``usr/install/<arch>/<name>`` of params.image to the step's one output."""
    ref = ctx.params["image"]
    store, manifest = image_manifest(ctx, ref, "IMAGER_IMAGE")
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


def _is_path(text: str) -> bool:
    return text.startswith((".", "/"))


def _check_files(params: Mapping[str, Any]) -> None:
    if not isinstance(params.get("what"), str) or not params["what"]:
        raise ValueError("the files step needs params.what, the variable it reads (for messages)")
    if not isinstance(params.get("source"), str):
        raise ValueError("the files step needs params.source, an image reference or a directory")


def _directory(probe_or_ctx: Probe | StepContext) -> Path:
    params = probe_or_ctx.params
    path = probe_or_ctx.root / params["source"]
    if not path.is_dir():
        raise BuildgraphError(
            f"{params['what']} {params['source']!r} is not a directory",
            hint="give a directory (./path or /path, relative to the repository) or an image"
            " reference",
        )
    return path


def tree_digest(root: Path) -> str:
    """A digest of a tree's names, types, modes, link targets and file contents."""
    lines = []
    for top, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(top, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                what = "link " + os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                what = "file " + digest_file(path)
            else:
                what = "dir" if stat.S_ISDIR(st.st_mode) else f"other {st.st_mode:o}"
            mode = stat.S_IMODE(st.st_mode)
            lines.append(f"{path.relative_to(root)}\0{mode:o}\0{what}")
    return digest_bytes("\n".join(lines).encode())


def _probe_files(probe: Probe) -> str:
    text = probe.params["source"]
    if _is_path(text):
        return "dir " + tree_digest(_directory(probe))
    return probe_ref(probe, text, probe.params["what"])


@step("files", version=1, check=_check_files, probe=_probe_files)
def files(ctx: StepContext) -> None:
    """Write the image's files (this arch), or the directory's, as one tar."""
    from ..oci.layout import tar_from_directory

    (out,) = ctx.outputs
    text, what = ctx.params["source"], ctx.params["what"]
    if _is_path(text):
        directory = _directory(ctx)
        tar_from_directory(directory, ctx.output(out), mtime=0)
        if ctx.probed and ctx.probed != "dir " + tree_digest(directory):
            raise StepFailedError(
                f"{what} {text!r} changed while it was being built",
                hint="run the build again once the directory is no longer being edited",
            )
        return
    store, manifest = image_manifest(ctx, text, what)
    store.flatten_manifest(manifest, ctx.output(out))
