"""``extensions``: system extensions (SYSTEM_EXTENSIONS), one squashfs each, as an xz cpio.

params.images is shell-quoted words, each an OCI image reference (``local/me/ext:v1`` in
the embedded store, or in a registry) or the path of an extension tarball (a word ending
in ``.tar``, relative to the repository): the extension's files at its top, as
``manifest.yaml`` and ``rootfs/``.

The probe resolves every word (``store <digest>``, ``registry <digest>``, ``tarball
<digest>``) and checks each extension (:mod:`buildgraph.formats.sysext`), pulling registry
images into the embedded store to do so, so a bad extension or two of one name stop the
build before any step runs. What passed is remembered by digest in the steps' cache, so a
plan with nothing changed does not read the images again.

The step packs each extension's rootfs, in the order given, with mksquashfs's
reproducible flags as ``extensions/NNN-<name>.sqsh`` and lists them in
``extensions.yaml``, ``layers: [{image, metadata}]`` with the manifest's metadata (author
and description on one line each: the init reads the file line by line). Both go into a
sorted newc cpio, xz-compressed with CRC32 checks (the kernel's xz takes no other), that
the initramfs carries appended.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..engine.errors import BuildgraphError, StepFailedError
from ..engine.hashing import digest_file
from ..engine.step import Probe, StepContext, step
from ..formats import sysext, untar
from ..formats.cpio import Writer
from . import check_epoch
from .imagefile import probe_ref
from .package import stored_manifest

WHAT = "system extension"
SEPARATOR = "; "
CHECKED = "sysext-checked-v1"
"""The steps' cache directory remembering extensions that passed; a new name when the
rules of :mod:`buildgraph.formats.sysext` change."""


def _is_tarball(word: str) -> bool:
    return word.endswith(".tar")


def _words(params: Mapping[str, Any]) -> list[str]:
    return shlex.split(str(params.get("images") or ""))


def _check(params: Mapping[str, Any]) -> None:
    check_epoch(params)
    images = params.get("images", "")
    if not isinstance(images, str):
        raise ValueError("params.images must be text: shell-quoted image references or .tar paths")
    if "${" in images:
        return
    from ..oci.reference import parse

    try:
        words = shlex.split(images)
    except ValueError as err:
        raise ValueError(f"params.images must be shell-quoted words ({err})") from None
    for word in words:
        if not _is_tarball(word):
            try:
                parse(word)
            except ValueError as err:
                raise ValueError(f"params.images: {word!r} is no image reference: {err}") from None


def _tarball(root: Path, word: str) -> Path:
    path = root / word
    if not path.is_file():
        raise BuildgraphError(
            f"{WHAT} {word}: no such file",
            hint="a .tar path is relative to the repository; give the extension's tarball"
            " (manifest.yaml and rootfs/ at its top)",
        )
    return path


def _resolve(probe: Probe, word: str) -> str:
    """What ``word`` names now: ``tarball``, ``store`` or ``registry`` and a digest."""
    if _is_tarball(word):
        return f"tarball {digest_file(_tarball(probe.root, word))}"
    return probe_ref(probe, word, WHAT)


def _fetch(at: StepContext | Probe, word: str, probed: str, scratch: Path) -> Path:
    """The extension's files as one tar: the tarball itself, or the image flattened."""
    from ..oci.layout import Layout
    from ..oci.reference import parse

    assert at.arch is not None and at.cache_dir is not None
    kind, _, digest = probed.partition(" ")
    if kind == "tarball":
        path = _tarball(at.root, word)
        if digest_file(path) != digest:
            raise BuildgraphError(
                f"{WHAT} {word} changed since the build was planned", hint="run it again"
            )
        return path
    store = Layout(at.cache_dir / "oci")
    manifest = stored_manifest(at, store, parse(word), probed)
    if manifest is None:
        raise BuildgraphError(f"{WHAT} {word} has no linux/{at.arch} image")
    flat = scratch / "image.tar"
    store.flatten_manifest(manifest, flat)
    return flat


def _checked(probe: Probe, word: str, probed: str) -> dict[str, Any]:
    """The metadata of the extension ``probed``, checked now or remembered from before."""
    memo = probe.cache_dir / CHECKED / hashlib.sha256(f"{probe.arch} {probed}".encode()).hexdigest()
    try:
        return json.loads(memo.read_bytes())
    except (OSError, ValueError):
        pass
    probe.cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=probe.cache_dir, prefix=".sysext-") as scratch:
        metadata = sysext.check_tar(_fetch(probe, word, probed, Path(scratch)), word).metadata
    memo.parent.mkdir(exist_ok=True)
    tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
    tmp.write_text(json.dumps(metadata))
    os.replace(tmp, memo)
    return metadata


def _probe(probe: Probe) -> str:
    """How each extension was resolved, ``; ``-separated; every one checked first."""
    lines = []
    names: dict[str, str] = {}
    for word in _words(probe.params):
        probed = _resolve(probe, word)
        name = _checked(probe, word, probed)["name"]
        if name in names:
            raise BuildgraphError(
                f"{WHAT}s {names[name]} and {word} are both named {name!r}",
                hint="an image takes one extension of each name; drop one of them",
            )
        names[name] = word
        lines.append(probed)
    return SEPARATOR.join(lines)


def _one_line(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: " ".join(v.split()) if isinstance(v, str) else v for k, v in metadata.items()}


@step("extensions", version=1, tools=("mksquashfs", "xz"), check=_check, probe=_probe)
def extensions(ctx: StepContext) -> None:
    """Check each extension again, squash its rootfs, and write the xz cpio."""
    assert ctx.arch is not None and ctx.cache_dir is not None
    (out,) = ctx.outputs
    words = _words(ctx.params)
    probed = ctx.probed
    if probed is None:
        probed = _probe(Probe(ctx.params, ctx.arch, ctx.root, ctx.cache_dir, ctx.progress))
    lines = probed.split(SEPARATOR) if probed else []
    if len(lines) != len(words):
        raise StepFailedError("params.images changed since the build was planned")
    epoch = str(int(ctx.params["epoch"]))
    work = ctx.out_dir.parent
    layers = []
    images: dict[str, Path] = {}
    for number, (word, line) in enumerate(zip(words, lines, strict=True)):
        scratch = work / f"extension-{number}"
        scratch.mkdir()
        tar = _fetch(ctx, word, line, scratch)
        extension = sysext.check_tar(tar, word)
        tree = scratch / "tree"
        _unpack(tar, tree)
        image = f"{number:03d}-{extension.name}.sqsh"
        images[image] = scratch / image
        ctx.progress(f"squashing {word}")
        ctx.run(
            ["mksquashfs", str(tree / sysext.ROOTFS), str(images[image]), "-noappend", "-quiet",
             "-no-progress", "-reproducible", "-all-root", "-no-xattrs", "-mkfs-time", epoch,
             "-all-time", epoch],
        )  # fmt: skip
        layers.append({"image": image, "metadata": _one_line(extension.metadata)})
    listing = yaml.safe_dump({"layers": layers}, sort_keys=False, width=1 << 16)
    cpio_path = work / "extensions.cpio"
    with open(cpio_path, "wb") as raw:
        cpio = Writer(raw, int(epoch))
        cpio.directory("extensions")
        cpio.data("extensions.yaml", listing.encode())
        for image, path in sorted(images.items()):
            cpio.file(f"extensions/{image}", path, mode=0o644)
        cpio.close()
    ctx.run(["xz", "--check=crc32", "--threads=1", "-6", str(cpio_path)])
    os.replace(f"{cpio_path}.xz", ctx.output(out))


def _unpack(tar: Path, tree: Path) -> None:
    """Extract a checked extension; directories the tar does not list get mode 0755, not
    the umask's, so the squashfs is the same everywhere."""
    untar.extract(tar, tree, "tar")
    rootfs = tree / sysext.ROOTFS
    with tarfile.open(tar) as archive:
        listed = {
            "/".join(p for p in member.name.split("/") if p not in ("", "."))
            for member in archive
            if member.isdir()
        }
    for top, _dirs, _files in os.walk(rootfs):  # never into a symlink: it is no directory
        if Path(top).relative_to(tree).as_posix() not in listed:
            os.chmod(top, 0o755)
