"""System extensions: what an extension's file tree must be before it joins an image.

An extension (an OCI image, or a tarball of the same files) holds exactly ``manifest.yaml``
and ``rootfs/`` at its top. The manifest says ``version: v1alpha1`` and gives ``metadata``
(name, version, author, description, optionally compatibility), nothing else. The rootfs
may only add files under :data:`ALLOWED` (and the directories leading there): the OS stays
what it is, an extension brings firmware, modules, programs under /usr/local, data and
configuration drop-ins. No device, fifo or socket nodes, nothing world-writable, no
``..`` or absolute member names, no hard link to anything but an earlier file of the
rootfs, no entry below a symlink, and no symlink that leaves the rootfs: an absolute
target is taken from the rootfs' own ``/`` (it always stays inside), a relative one
from the link's directory. Sizes are bounded (:data:`MAX_MANIFEST`, :data:`MAX_TOTAL`,
:data:`MAX_ENTRIES`).

:func:`check_tar` reads only the tar's member list and the manifest; it raises
:class:`ExtensionError` naming the extension and the offending entry.
"""

from __future__ import annotations

import posixpath
import re
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml

from ..engine.errors import BuildgraphError

MANIFEST = "manifest.yaml"
ROOTFS = "rootfs"
API_VERSION = "v1alpha1"
ALLOWED = (
    "etc/cri/conf.d/",
    "lib/firmware/",
    "usr/lib/firmware/",
    "usr/lib/modules/",
    "usr/lib/udev/rules.d/",
    "usr/local/",
    "usr/share/",
)
"""Where under rootfs/ an extension may put files (its own directories leading there
are fine too: ``rootfs/usr``, ``rootfs/usr/lib``)."""
PARENTS = frozenset(
    "/".join(prefix.split("/")[:depth])
    for prefix in ALLOWED
    for depth in range(1, prefix.rstrip("/").count("/") + 1)
)
"""The directories leading to :data:`ALLOWED` (usr, usr/lib, etc, ...)."""
MAX_MANIFEST = 64 << 10
MAX_TOTAL = 1 << 30
MAX_ENTRIES = 100_000
METADATA_REQUIRED = ("name", "version", "author", "description")
METADATA_FIELDS = (*METADATA_REQUIRED, "compatibility")
PLAIN_TEXT = "[A-Za-z0-9][A-Za-z0-9._+-]*"
PLAIN = re.compile(PLAIN_TEXT + r"\Z")


class ExtensionError(BuildgraphError):
    """An extension that may not go into an image."""


@dataclass(frozen=True)
class Extension:
    source: str
    """Its reference or tarball path, as given."""
    metadata: dict[str, Any]
    """name, version, author, description and, when given, compatibility, in that order."""

    @property
    def name(self) -> str:
        return self.metadata["name"]


def check_tar(path: Path, source: str) -> Extension:
    """Validate the extension tar at ``path`` (``source``: how the user named it)."""
    try:
        with tarfile.open(path) as tar:
            return check_members(tar, _reader(tar), source)
    except tarfile.TarError as err:
        raise ExtensionError(f"system extension {source}: not a readable tar: {err}") from None


def _reader(tar: tarfile.TarFile) -> Callable[[tarfile.TarInfo], bytes]:
    def read(member: tarfile.TarInfo) -> bytes:
        handle = tar.extractfile(member)
        assert handle is not None
        with handle:
            return handle.read(MAX_MANIFEST + 1)

    return read


def check_members(
    members: Iterable[tarfile.TarInfo], read: Callable[[tarfile.TarInfo], bytes], source: str
) -> Extension:
    """Validate an extension given its tar members and a way to read one member."""
    checker = _Checker(source)
    for member in members:
        checker.add(member)
    manifest = checker.finish()
    return Extension(source, _metadata(read(manifest), source))


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source
        self.kinds: dict[str, str] = {}
        """Normalized name -> 'dir', 'file', 'symlink' or 'hardlink', of members seen."""
        self.symlinks: set[str] = set()
        self.manifest: tarfile.TarInfo | None = None
        self.has_rootfs = False
        self.entries = 0
        self.total = 0

    def fail(self, entry: str, problem: str, hint: str | None = None) -> NoReturn:
        raise ExtensionError(f"system extension {self.source}: {entry}: {problem}", hint=hint)

    def add(self, member: tarfile.TarInfo) -> None:
        self.entries += 1
        if self.entries > MAX_ENTRIES:
            self.fail(
                member.name, f"more than {MAX_ENTRIES} entries", "an extension must be smaller"
            )
        raw = member.name
        if raw.startswith("/"):
            self.fail(raw, "absolute member name", "tar the extension with relative names")
        parts = [p for p in raw.split("/") if p not in ("", ".")]
        if ".." in parts:
            self.fail(raw, "a '..' component would leave the extension")
        name = "/".join(parts)
        if not name:  # the top directory itself ("./")
            if not member.isdir():
                self.fail(raw, "the top of the extension must be a directory")
            return
        kind = self._kind(member, raw)
        seen = self.kinds.get(name)
        if seen is not None and not (seen == kind == "dir"):
            self.fail(raw, "listed twice")
        self.kinds[name] = kind
        if kind != "symlink" and member.mode & 0o002:
            self.fail(raw, f"world-writable (mode {member.mode & 0o7777:04o})")
        if member.isreg():
            self.total += member.size
            if self.total > MAX_TOTAL:
                self.fail(raw, f"the extension's files exceed {MAX_TOTAL >> 20} MiB")
        if parts[0] == MANIFEST and len(parts) == 1:
            if kind != "file":
                self.fail(raw, f"{MANIFEST} must be a regular file")
            if member.size > MAX_MANIFEST:
                self.fail(raw, f"oversized manifest: {member.size} bytes, at most {MAX_MANIFEST}")
            self.manifest = member
            return
        if parts[0] != ROOTFS:
            self.fail(
                raw,
                f"unexpected at the top of the extension: only {MANIFEST} and {ROOTFS}/ belong"
                " there",
            )
        self.has_rootfs = True
        if len(parts) == 1:
            if kind != "dir":
                self.fail(raw, f"{ROOTFS} must be a directory")
            return
        self._check_path(raw, "/".join(parts[1:]), kind)
        if kind == "symlink":
            self._check_symlink(raw, parts[1:], member.linkname)
            self.symlinks.add(name)
        elif kind == "hardlink":
            self._check_hardlink(raw, member.linkname)

    def _kind(self, member: tarfile.TarInfo, raw: str) -> str:
        if member.isdir():
            return "dir"
        if member.isreg():
            return "file"
        if member.issym():
            return "symlink"
        if member.islnk():
            return "hardlink"
        if member.ischr() or member.isblk():
            self.fail(raw, "a device node", "an extension holds files, directories and links")
        if member.isfifo():
            self.fail(raw, "a fifo", "an extension holds files, directories and links")
        self.fail(raw, f"unsupported tar entry type {member.type!r}")

    def _check_path(self, raw: str, path: str, kind: str) -> None:
        if any(path.startswith(prefix) for prefix in ALLOWED):
            return
        if kind == "dir" and (path in PARENTS or f"{path}/" in ALLOWED):
            return
        self.fail(
            raw,
            f"/{path} is outside the paths an extension may add to",
            "allowed: " + ", ".join(f"/{prefix}" for prefix in ALLOWED),
        )

    def _check_symlink(self, raw: str, parts: list[str], target: str) -> None:
        if not target:
            self.fail(raw, "a symlink with an empty target")
        if target.startswith("/"):
            return  # read from the rootfs' own /: it cannot climb above it
        resolved = posixpath.normpath(posixpath.join("/".join(parts[:-1]), target))
        if resolved == ".." or resolved.startswith("../"):
            self.fail(raw, f"symlink to {target} leaves the extension's rootfs")

    def _check_hardlink(self, raw: str, target: str) -> None:
        parts = [p for p in target.split("/") if p not in ("", ".")]
        name = "/".join(parts)
        if (
            target.startswith("/")
            or ".." in parts
            or parts[:1] != [ROOTFS]
            or self.kinds.get(name) != "file"
        ):
            self.fail(raw, f"hard link to {target} points outside the extension's rootfs files")

    def finish(self) -> tarfile.TarInfo:
        if self.manifest is None:
            self.fail(MANIFEST, "missing: an extension has a manifest at its top")
        if not self.has_rootfs:
            self.fail(f"{ROOTFS}/", "missing: an extension has its files under rootfs/")
        for name in self.kinds:
            parts = name.split("/")
            for depth in range(1, len(parts)):
                above = "/".join(parts[:depth])
                if above in self.symlinks:
                    self.fail(name, f"lies below the symlink {above}")
        return self.manifest


def _metadata(data: bytes, source: str) -> dict[str, Any]:
    """The manifest's metadata, checked, in the order extensions.yaml lists it."""

    def fail(problem: str, hint: str | None = None) -> NoReturn:
        raise ExtensionError(f"system extension {source}: {MANIFEST}: {problem}", hint=hint)

    if len(data) > MAX_MANIFEST:
        fail(f"oversized manifest: more than {MAX_MANIFEST} bytes")
    try:
        doc = yaml.safe_load(data.decode())
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        fail(f"not valid YAML: {err}")
    if not isinstance(doc, dict):
        fail("must be a mapping with version and metadata")
    for key in doc:
        if key not in ("version", "metadata"):
            fail(f"unknown field {key!r}", "a manifest has version and metadata only")
    if doc.get("version") != API_VERSION:
        fail(f"version {doc.get('version')!r} is not supported; the accepted one is {API_VERSION}")
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        fail("metadata must be a mapping")
    for key in metadata:
        if key not in METADATA_FIELDS:
            fail(f"unknown field metadata.{key!s}", "known: " + ", ".join(METADATA_FIELDS))
    for key in METADATA_REQUIRED:
        value = metadata.get(key)
        if not isinstance(value, str) or not value.strip():
            quote = f" (quote it: {key}: '{value}')" if isinstance(value, int | float) else ""
            fail(f"metadata.{key} must be given as text{quote}")
    for key in ("name", "version"):
        if not PLAIN.match(metadata[key]):
            fail(f"metadata.{key} {metadata[key]!r} must match {PLAIN_TEXT}")
    found = {key: metadata[key] for key in METADATA_FIELDS if key in metadata}
    if "compatibility" in found:
        _check_compatibility(found["compatibility"], fail)
    return found


def _check_compatibility(value: Any, fail: Callable[[str], NoReturn]) -> None:
    """``compatibility: {talos: {version: ">= v1.0.0"}}`` is the one shape known."""
    talos = value.get("talos") if isinstance(value, dict) else None
    if (
        not isinstance(talos, dict)
        or set(value) != {"talos"}
        or set(talos) != {"version"}
        or not isinstance(talos["version"], str)
    ):
        fail("metadata.compatibility must be {talos: {version: <constraint>}}")
