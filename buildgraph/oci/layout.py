"""The embedded OCI store: an OCI image-layout directory (``oci-layout``, ``index.json``, blobs).

Package images (kernel, init, tools) live here when no registry is configured, and images
pulled from a registry land here too, so steps read every image the same way: look a ref
up, then :func:`Layout.flatten` it into one tar of its root filesystem. Images are written
with uncompressed layers and canonical JSON, so equal inputs give equal digests, and the
directory is a valid layout that skopeo and other OCI tools read.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..engine.errors import BuildgraphError

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
REF_NAME = "org.opencontainers.image.ref.name"

CHUNK = 1 << 20
_MAX_JSON = 16 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_HEX64 = re.compile(r"[0-9a-f]{64}")
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


class LayoutError(BuildgraphError):
    """A missing or corrupt image in an OCI layout."""


class DigestMismatchError(LayoutError):
    """Bytes whose sha256 is not the digest they were stored or fetched under."""

    def __init__(self, expected: str, actual: str, what: str = "blob") -> None:
        super().__init__(
            f"{what} digest mismatch: expected {expected}, got {actual}",
            hint="the data was corrupted or replaced; fetch it again from its source",
        )
        self.expected = expected
        self.actual = actual


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace: the same document always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a manifest or index.json says about one blob."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    platform: dict[str, str] | None = field(default=None, compare=False, hash=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = dict(self.platform)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Descriptor:
        return cls(
            media_type=str(data.get("mediaType", "")),
            digest=str(data["digest"]),
            size=int(data["size"]),
            annotations=dict(data.get("annotations") or {}),
            platform=dict(data["platform"]) if data.get("platform") else None,
        )

    @property
    def ref_name(self) -> str | None:
        return self.annotations.get(REF_NAME)


@dataclass(frozen=True)
class Image:
    """One architecture's image for :meth:`Layout.write_image`.

    ``layers`` are uncompressed tar files, lowest first. ``config`` is the image config's
    runtime ``config`` member (Env, Entrypoint, ...); the rest of the image config
    (architecture, os, rootfs diff_ids, ``created`` when given) is derived.
    """

    layers: list[Path]
    config: dict[str, Any] = field(default_factory=dict)
    created: str | None = None


def _hex(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    if algorithm != "sha256" or not _HEX64.fullmatch(hexpart):
        raise ValueError(f"unsupported digest {digest!r}: expected sha256:<64 lowercase hex>")
    return hexpart


def _layer_kind(head: bytes) -> str:
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return "tar"


class Layout:
    """An OCI image-layout directory; created on first write."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    # -- blobs -----------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.path / "blobs" / "sha256" / _hex(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def _init(self) -> None:
        (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        marker = self.path / "oci-layout"
        if not marker.exists():
            self._atomic_write(marker, canonical_json({"imageLayoutVersion": "1.0.0"}))
        if not (self.path / "index.json").exists():
            with self._locked():
                if not (self.path / "index.json").exists():
                    self._write_index([])

    def _tmp_file(self) -> tuple[int, Path]:
        tmpdir = self.path / ".tmp"
        tmpdir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=tmpdir, prefix=f"{os.getpid()}-")
        return fd, Path(name)

    def _atomic_write(self, dest: Path, data: bytes, mode: int = 0o644) -> None:
        fd, tmp = self._tmp_file()
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chmod(tmp, mode)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def put_blob(self, data: bytes, media_type: str = "application/octet-stream") -> Descriptor:
        """Store ``data`` under its sha256 (nothing to do if it is there already)."""
        digest = sha256_digest(data)
        self._init()
        dest = self.blob_path(digest)
        if not dest.exists():
            self._atomic_write(dest, data, 0o444)
        return Descriptor(media_type, digest, len(data))

    def put_blob_file(self, path: Path, media_type: str) -> Descriptor:
        """Store a file's bytes, streamed: a large layer is never read into memory.

        The file is hashed first, so storing a layer the store already has copies nothing.
        """
        hasher = hashlib.sha256()
        with open(path, "rb") as src:
            while chunk := src.read(CHUNK):
                hasher.update(chunk)
            digest = "sha256:" + hasher.hexdigest()
            if self.has_blob(digest):
                return Descriptor(media_type, digest, src.tell())
            src.seek(0)
            return self.put_blob_stream(src, media_type, expected=digest)

    def put_blob_stream(
        self,
        stream: IO[bytes],
        media_type: str,
        expected: str | None = None,
        size: int | None = None,
    ) -> Descriptor:
        """Store what ``stream`` yields; with ``expected``, its digest must match.

        Raises :class:`DigestMismatchError` (and keeps nothing) when the bytes are not
        ``expected``, or ``LayoutError`` when ``size`` is given and differs.
        """
        self._init()
        if expected is not None and self.has_blob(expected):
            return Descriptor(media_type, expected, self.blob_path(expected).stat().st_size)
        fd, tmp = self._tmp_file()
        try:
            hasher = hashlib.sha256()
            total = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(CHUNK):
                    hasher.update(chunk)
                    out.write(chunk)
                    total += len(chunk)
            digest = "sha256:" + hasher.hexdigest()
            if expected is not None and digest != expected:
                raise DigestMismatchError(expected, digest)
            if size is not None and total != size:
                raise LayoutError(
                    f"blob {digest} has {total} bytes, its descriptor says {size}",
                    hint="the source serves inconsistent data; fetch it again",
                )
            dest = self.blob_path(digest)
            if dest.exists():
                tmp.unlink()
            else:
                os.chmod(tmp, 0o444)
                os.replace(tmp, dest)
            return Descriptor(media_type, digest, total)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def verify_blob(self, digest: str) -> None:
        """Re-hash a stored blob; raise if it is missing or its bytes are not ``digest``."""
        path = self.blob_path(digest)
        hasher = hashlib.sha256()
        try:
            with open(path, "rb") as src:
                while chunk := src.read(CHUNK):
                    hasher.update(chunk)
        except FileNotFoundError:
            raise LayoutError(
                f"blob {digest} is missing from the OCI store {self.path}",
                hint="write or pull the image again",
            ) from None
        actual = "sha256:" + hasher.hexdigest()
        if actual != digest:
            self._drop(path)
            raise DigestMismatchError(digest, actual, f"stored blob {path}")

    @staticmethod
    def _drop(path: Path) -> None:
        """A blob whose bytes are not its name goes, so that writing it again repairs it."""
        with contextlib.suppress(OSError):
            path.unlink()

    def read_json(self, digest: str) -> dict[str, Any]:
        """A small JSON blob (manifest, index, config), digest-checked."""
        path = self.blob_path(digest)
        try:
            with open(path, "rb") as src:
                data = src.read(_MAX_JSON + 1)
        except FileNotFoundError:
            raise LayoutError(
                f"blob {digest} is missing from the OCI store {self.path}",
                hint="write or pull the image again",
            ) from None
        actual = sha256_digest(data)
        if actual != digest:
            self._drop(path)
            raise DigestMismatchError(digest, actual, f"stored blob {path}")
        try:
            value = json.loads(data)
        except ValueError:
            raise LayoutError(f"blob {digest} in {self.path} is not JSON") from None
        if not isinstance(value, dict):
            raise LayoutError(f"blob {digest} in {self.path} is not a JSON object")
        return value

    # -- index.json ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".index.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_index(self) -> list[dict[str, Any]]:
        path = self.path / "index.json"
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return []
        except ValueError:
            data = None
        manifests = data.get("manifests") if isinstance(data, dict) else None
        if not isinstance(manifests, list) or not all(
            isinstance(m, dict) and isinstance(m.get("digest"), str) for m in manifests
        ):
            raise LayoutError(
                f"{path} is not an OCI index",
                hint="restore it or delete the OCI store and write its images again",
            )
        return manifests

    def _write_index(self, manifests: list[dict[str, Any]]) -> None:
        manifests = sorted(
            manifests,
            key=lambda m: ((m.get("annotations") or {}).get(REF_NAME, ""), m.get("digest", "")),
        )
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        self._atomic_write(self.path / "index.json", canonical_json(index))

    def set_ref(
        self, ref: str, descriptor: Descriptor, annotations: dict[str, str] | None = None
    ) -> None:
        """Point ``ref`` at ``descriptor`` in index.json, replacing what it named before."""
        if not ref:
            raise ValueError("empty ref name")
        self._init()
        with self._locked():
            self._replace_ref(ref, descriptor, annotations)

    def _replace_ref(
        self, ref: str, descriptor: Descriptor, annotations: dict[str, str] | None
    ) -> None:
        """set_ref's work; the caller holds the index lock."""
        entry = Descriptor(
            descriptor.media_type,
            descriptor.digest,
            descriptor.size,
            {**(annotations or {}), REF_NAME: ref},
            descriptor.platform,
        ).to_json()
        manifests = [
            m for m in self._read_index() if (m.get("annotations") or {}).get(REF_NAME) != ref
        ]
        manifests.append(entry)
        self._write_index(manifests)

    def refs(self) -> list[str]:
        """The ref names index.json holds, sorted."""
        names = ((m.get("annotations") or {}).get(REF_NAME) for m in self._read_index())
        return sorted(n for n in names if n)

    def lookup(self, ref: str) -> Descriptor | None:
        """The index.json entry named ``ref`` (with its annotations), or None."""
        for entry in self._read_index():
            if (entry.get("annotations") or {}).get(REF_NAME) == ref:
                return Descriptor.from_json(entry)
        return None

    # -- images ----------------------------------------------------------------------------

    def write_image(
        self,
        ref: str,
        images: dict[str, Image],
        annotations: dict[str, str] | None = None,
    ) -> str:
        """Write one image per architecture and an index over them; point ``ref`` at it.

        Returns the index digest, which depends only on the layers' bytes, the configs and
        the architectures (canonical JSON, uncompressed layers).
        """
        if not images:
            raise ValueError(f"write_image({ref!r}): no architectures given")
        entries = [self._write_manifest(arch, images[arch]) for arch in sorted(images)]
        top = self._write_index_blob(entries)
        self.set_ref(ref, top, annotations)
        return top.digest

    def write_manifest(self, ref: str, arch: str, image: Image) -> str:
        """Write one arch's image and point ``ref`` straight at its manifest, as an OCI
        archive holds a single image; returns the manifest digest."""
        entry = Descriptor.from_json(self._write_manifest(arch, image))
        self.set_ref(ref, entry)
        return entry.digest

    def write_index(self, ref: str, entries: list[dict[str, Any]]) -> Descriptor:
        """Write an index over stored manifests (descriptors with platforms) as ``ref``."""
        ordered = sorted(entries, key=lambda m: platform_name(m["platform"]))
        top = self._write_index_blob(ordered)
        self.set_ref(ref, top)
        return top

    def put_arch(
        self, ref: str, arch: str, image: Image, annotations: dict[str, str] | None = None
    ) -> str:
        """Add or replace the ``arch`` image of the index ``ref`` names, keeping the others;
        returns that image's manifest digest (``ref`` may have moved on by the time the
        caller looks). ``annotations`` go on that arch's manifest. Per-arch builds running
        side by side each add their own arch; the read-modify-write holds the index lock.
        """
        entry = self._write_manifest(arch, image, annotations)
        self._init()
        with self._locked():
            others = []
            current = self.lookup(ref)
            if current is not None:
                doc = self.read_json(current.digest)
                if "manifests" in doc:
                    listed = list(doc["manifests"] or [])
                else:  # one image manifest: it becomes an entry of the new index
                    config = self.read_json(doc["config"]["digest"])
                    platform = {"architecture": config.get("architecture"), "os": "linux"}
                    listed = [{**current.to_json(), "annotations": {}, "platform": platform}]
                others = [
                    {k: v for k, v in m.items() if k != "annotations" or v}
                    for m in listed
                    if (m.get("platform") or {}).get("architecture") != arch
                ]
            entries = sorted([*others, entry], key=lambda m: platform_name(m["platform"]))
            top = self._write_index_blob(entries)
            self._replace_ref(ref, top, None)
        return entry["digest"]

    def _write_manifest(
        self, arch: str, image: Image, annotations: dict[str, str] | None = None
    ) -> dict[str, Any]:
        layers = [self.put_blob_file(Path(p), OCI_LAYER_TAR) for p in image.layers]
        config_doc: dict[str, Any] = {
            "architecture": arch,
            "os": "linux",
            "config": dict(image.config),
            "rootfs": {"type": "layers", "diff_ids": [d.digest for d in layers]},
        }
        if image.created is not None:
            config_doc["created"] = image.created
        config = self.put_blob(canonical_json(config_doc), OCI_CONFIG)
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.to_json(),
            "layers": [d.to_json() for d in layers],
        }
        if annotations:
            manifest["annotations"] = dict(annotations)
        stored = self.put_blob(canonical_json(manifest), OCI_MANIFEST)
        return Descriptor(
            OCI_MANIFEST, stored.digest, stored.size, platform={"architecture": arch, "os": "linux"}
        ).to_json()

    def _write_index_blob(self, entries: list[dict[str, Any]]) -> Descriptor:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        return self.put_blob(canonical_json(index), OCI_INDEX)

    def architectures(self, ref: str) -> list[str]:
        """``os/arch[/variant]`` of each image ``ref`` holds (for error messages)."""
        desc = self.lookup(ref)
        if desc is None:
            return []
        doc = self.read_json(desc.digest)
        if doc.get("mediaType", desc.media_type) in INDEX_TYPES or "manifests" in doc:
            return [platform_name(m.get("platform") or {}) for m in doc.get("manifests") or []]
        config = self.read_json(doc["config"]["digest"])
        return [platform_name(config)]

    def resolve(self, ref: str, arch: str) -> tuple[str, dict[str, Any]] | None:
        """(digest, manifest) of ``ref``'s ``arch`` image, or None if it has none."""
        desc = self.lookup(ref)
        if desc is None:
            return None
        return self._resolve_in(desc, arch, ref)

    def resolve_digest(self, digest: str, arch: str) -> tuple[str, dict[str, Any]] | None:
        """:meth:`resolve` from an index or manifest digest instead of a ref name."""
        return self._resolve_in(Descriptor("", digest, 0), arch, digest)

    def manifest_for(self, ref: str, arch: str) -> dict[str, Any] | None:
        """The image manifest of ``ref`` for ``arch``, or None if ``ref`` has no such image.

        ``ref`` may name an index (the arch is picked from its platforms) or one image
        manifest (its config's architecture must be ``arch``).
        """
        desc = self.lookup(ref)
        if desc is None:
            return None
        return self._manifest_in(desc, arch, ref)

    def _manifest_in(self, desc: Descriptor, arch: str, ref: str) -> dict[str, Any] | None:
        found = self._resolve_in(desc, arch, ref)
        return None if found is None else found[1]

    def _resolve_in(
        self, desc: Descriptor, arch: str, ref: str
    ) -> tuple[str, dict[str, Any]] | None:
        doc = self.read_json(desc.digest)
        media_type = doc.get("mediaType") or desc.media_type
        if media_type in INDEX_TYPES or "manifests" in doc:
            chosen = pick_platform(doc.get("manifests") or [], arch)
            if chosen is None:
                return None
            child = Descriptor.from_json(chosen)
            if not self.has_blob(child.digest):
                raise LayoutError(
                    f"{ref} lists a linux/{arch} image ({child.digest}) that is not in the "
                    f"OCI store {self.path}",
                    hint=f"pull {ref} for {arch} into the store",
                )
            return self._resolve_in(child, arch, ref)
        config = self.read_json(doc["config"]["digest"])
        if config.get("architecture") != arch:
            return None
        return desc.digest, doc

    def _require_manifest(self, ref: str, arch: str) -> dict[str, Any]:
        manifest = self.manifest_for(ref, arch)
        if manifest is not None:
            return manifest
        if self.lookup(ref) is None:
            known = ", ".join(self.refs()) or "none"
            raise LayoutError(
                f"no image {ref} in the OCI store {self.path} (it has: {known})",
                hint="build or pull that image first, or fix the reference",
            )
        have = ", ".join(self.architectures(ref)) or "none"
        raise LayoutError(
            f"{ref} has no linux/{arch} image in the OCI store {self.path} (it has: {have})",
            hint="use one of the architectures it has, or build or pull the missing one",
        )

    # -- root filesystems ------------------------------------------------------------------

    def flatten(self, ref: str, arch: str, out: Path) -> None:
        """Write one deterministic uncompressed tar of the image's root filesystem.

        Layers are applied lowest first with OCI whiteouts; entries are sorted, owned by
        0:0 with empty user and group names, and keep their modes and mtimes. Compressed
        (gzip, zstd) layers are unpacked to a scratch file next to ``out``, never to memory.
        """
        self.flatten_manifest(self._require_manifest(ref, arch), out)

    def flatten_manifest(self, manifest: dict[str, Any], out: Path) -> None:
        """:meth:`flatten` of one image manifest (from :meth:`resolve`)."""
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=".flatten-") as scratch:
            tree = _Tree()
            for number, layer in enumerate(manifest.get("layers") or []):
                digest = layer["digest"]
                self.verify_blob(digest)
                path = self._uncompressed(digest, Path(scratch) / f"layer-{number}.tar")
                tree.apply_layer(path, Path(scratch))
            tmp = Path(scratch) / "out.tar"
            tree.write(tmp)
            os.replace(tmp, out)

    def _uncompressed(self, digest: str, scratch: Path) -> Path:
        blob = self.blob_path(digest)
        with open(blob, "rb") as src:
            kind = _layer_kind(src.read(4))
        if kind == "tar":
            return blob
        if kind == "gzip":
            with gzip.open(blob, "rb") as src, open(scratch, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
            return scratch
        zstd = shutil.which("zstd")
        if zstd is None:
            raise LayoutError(
                f"layer {digest} is zstd-compressed and the zstd program is not installed",
                hint="install zstd (Debian package zstd)",
            )
        with open(scratch, "wb") as dst:
            done = subprocess.run(
                [zstd, "-q", "-d", "-c", str(blob)],
                stdout=dst,
                stderr=subprocess.PIPE,
                check=False,
            )
        if done.returncode != 0:
            raise LayoutError(
                f"layer {digest} does not decompress with zstd: "
                f"{done.stderr.decode(errors='replace').strip()}",
                hint="the stored blob is corrupt; pull the image again",
            )
        return scratch


def platform_name(platform: dict[str, Any]) -> str:
    name = f"{platform.get('os', '?')}/{platform.get('architecture', '?')}"
    if platform.get("variant"):
        name += f"/{platform['variant']}"
    return name


def pick_platform(manifests: list[dict[str, Any]], arch: str) -> dict[str, Any] | None:
    """The index entry for linux/``arch`` (arm64 prefers variant v8 or none), or None."""
    matches = [
        m
        for m in manifests
        if (m.get("platform") or {}).get("architecture") == arch
        and (m.get("platform") or {}).get("os", "linux") == "linux"
    ]
    if not matches:
        return None

    def rank(m: dict[str, Any]) -> int:
        variant = (m.get("platform") or {}).get("variant")
        return 0 if variant in (None, "", "v8" if arch == "arm64" else None) else 1

    return sorted(matches, key=rank)[0]


# -- layer application ---------------------------------------------------------------------


class _Content:
    """Where a regular file's bytes are: an uncompressed tar (or spooled file) and offset."""

    __slots__ = ("offset", "path", "size")

    def __init__(self, path: Path, offset: int, size: int) -> None:
        self.path = path
        self.offset = offset
        self.size = size


@dataclass
class _Node:
    kind: bytes  # a tarfile type: REGTYPE, DIRTYPE, SYMTYPE, CHRTYPE, BLKTYPE, FIFOTYPE
    mode: int
    mtime: int
    linkname: str = ""
    content: _Content | None = None
    devmajor: int = 0
    devminor: int = 0
    children: dict[str, _Node] = field(default_factory=dict)


def _clean(name: str) -> list[str] | None:
    """Path components of a tar member name; None for the root; ValueError for ``..``."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(name)
    return parts or None


class _Tree:
    """The root filesystem being assembled: metadata in memory, contents left in the layers."""

    def __init__(self) -> None:
        self.root = _Node(tarfile.DIRTYPE, 0o755, 0)
        self._spooled = 0

    def _find(self, parts: list[str]) -> _Node | None:
        node = self.root
        for part in parts:
            if node.kind != tarfile.DIRTYPE:
                return None
            found = node.children.get(part)
            if found is None:
                return None
            node = found
        return node

    def _parent(self, parts: list[str]) -> _Node:
        """The directory holding ``parts``; missing (or non-directory) parents become dirs."""
        node = self.root
        for part in parts[:-1]:
            child = node.children.get(part)
            if child is None or child.kind != tarfile.DIRTYPE:
                child = _Node(tarfile.DIRTYPE, 0o755, 0)
                node.children[part] = child
            node = child
        return node

    def apply_layer(self, path: Path, scratch: Path) -> None:
        whiteouts: list[list[str]] = []
        opaque: list[list[str]] = []
        entries: list[tuple[list[str], _Node | list[str]]] = []
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                try:
                    parts = _clean(member.name)
                except ValueError:
                    raise LayoutError(
                        f"layer {path.name} has an entry outside the root: {member.name!r}"
                    ) from None
                if parts is None:
                    continue
                base = parts[-1]
                if base == OPAQUE:
                    opaque.append(parts[:-1])
                    continue
                if base.startswith(WHITEOUT):
                    whiteouts.append([*parts[:-1], base[len(WHITEOUT) :]])
                    continue
                if member.islnk():
                    target = _clean(member.linkname)
                    if target is None:
                        raise LayoutError(f"layer {path.name}: hard link {member.name} to root")
                    entries.append((parts, target))
                    continue
                node = _Node(_kind(member, path), member.mode & 0o7777, int(member.mtime))
                if member.issym():
                    node.linkname = member.linkname
                elif member.ischr() or member.isblk():
                    node.devmajor, node.devminor = member.devmajor, member.devminor
                elif member.isreg():
                    if member.sparse is not None:
                        node.content = self._spool(tar, member, scratch)
                    else:
                        node.content = _Content(path, member.offset_data, member.size)
                entries.append((parts, node))
        # Whiteouts hide what lower layers had, not what this layer adds.
        for parts in opaque:
            found = self._find(parts)
            if found is not None and found.kind == tarfile.DIRTYPE:
                found.children.clear()
        for parts in whiteouts:
            parent = self._find(parts[:-1])
            if parent is not None and parent.kind == tarfile.DIRTYPE:
                parent.children.pop(parts[-1], None)
        for parts, item in entries:
            if isinstance(item, list):
                target = self._find(item)
                if target is None or target.kind == tarfile.DIRTYPE:
                    raise LayoutError(
                        f"layer {path.name}: hard link {'/'.join(parts)} names "
                        f"{'/'.join(item)}, which is not a file in the image"
                    )
                self._parent(parts).children[parts[-1]] = target  # same node = hard link
                continue
            parent = self._parent(parts)
            old = parent.children.get(parts[-1])
            if old is not None and old.kind == tarfile.DIRTYPE and item.kind == tarfile.DIRTYPE:
                old.mode, old.mtime = item.mode, item.mtime  # a directory keeps its contents
            else:
                parent.children[parts[-1]] = item

    def _spool(self, tar: tarfile.TarFile, member: tarfile.TarInfo, scratch: Path) -> _Content:
        self._spooled += 1
        dest = scratch / f"spool-{self._spooled}"
        src = tar.extractfile(member)
        assert src is not None
        with src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
        return _Content(dest, 0, member.size)

    def write(self, out: Path) -> None:
        files: dict[Path, IO[bytes]] = {}
        written: dict[int, str] = {}
        try:
            with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
                self._write_dir(tar, self.root, "", files, written)
        finally:
            for handle in files.values():
                handle.close()

    def _write_dir(
        self,
        tar: tarfile.TarFile,
        directory: _Node,
        prefix: str,
        files: dict[Path, IO[bytes]],
        written: dict[int, str],
    ) -> None:
        for name in sorted(directory.children):
            node = directory.children[name]
            path = prefix + name
            info = tarfile.TarInfo(path)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = node.mode
            info.mtime = node.mtime
            if node.kind == tarfile.REGTYPE and id(node) in written:
                info.type = tarfile.LNKTYPE
                info.linkname = written[id(node)]
                tar.addfile(info)
                continue
            info.type = node.kind
            if node.kind == tarfile.REGTYPE:
                assert node.content is not None
                written[id(node)] = path
                info.size = node.content.size
                handle = files.get(node.content.path)
                if handle is None:
                    handle = files[node.content.path] = open(node.content.path, "rb")  # noqa: SIM115
                handle.seek(node.content.offset)
                tar.addfile(info, _Limited(handle, node.content.size))
            elif node.kind == tarfile.SYMTYPE:
                info.linkname = node.linkname
                tar.addfile(info)
            elif node.kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                info.devmajor, info.devminor = node.devmajor, node.devminor
                tar.addfile(info)
            else:
                tar.addfile(info)
                if node.kind == tarfile.DIRTYPE:
                    self._write_dir(tar, node, path + "/", files, written)


_KINDS = (tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE)


def _kind(member: tarfile.TarInfo, layer: Path) -> bytes:
    """The entry's type, every kind of regular file as REGTYPE; hard links are refused."""
    if member.isreg():
        return tarfile.REGTYPE
    if member.type in _KINDS:
        return member.type
    raise LayoutError(f"layer {layer.name}: unsupported tar entry type for {member.name!r}")


class _Limited:
    """A read-only view of ``size`` bytes from a file's current position (for addfile)."""

    def __init__(self, handle: IO[bytes], size: int) -> None:
        self._handle = handle
        self._left = size

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        if n < 0 or n > self._left:
            n = self._left
        data = self._handle.read(n)
        if len(data) < n:
            raise LayoutError("a layer ended inside a file: the blob is truncated")
        self._left -= len(data)
        return data


# -- making layers ---------------------------------------------------------------------------


def tar_from_directory(src: Path, out: Path, mtime: int) -> None:
    """Write a deterministic tar of the tree under ``src`` (``src`` itself not included).

    Entries are sorted, owned by 0:0 with empty names, all dated ``mtime``, and keep their
    modes; symlinks stay symlinks, hard-linked files are stored as separate copies. Other
    file types (devices, fifos, sockets) are refused: a step cannot make them without root.
    """
    src = Path(src)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_tree(tar, src, "", int(mtime))
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _add_tree(tar: tarfile.TarFile, directory: Path, prefix: str, mtime: int) -> None:
    for name in sorted(os.listdir(directory)):
        full = directory / name
        st = os.lstat(full)
        info = tarfile.TarInfo(prefix + name)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = stat.S_IMODE(st.st_mode)
        info.mtime = mtime
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
            _add_tree(tar, full, info.name + "/", mtime)
        elif stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(full)
            tar.addfile(info)
        elif stat.S_ISREG(st.st_mode):
            info.size = st.st_size
            with open(full, "rb") as data:
                tar.addfile(info, data)
        else:
            raise LayoutError(
                f"{full} is not a regular file, directory or symlink",
                hint="layers made by steps hold only files, directories and symlinks",
            )
