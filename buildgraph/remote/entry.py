"""A remote cache entry: what a node's key produced, as a signed claim.

The entry is a small canonical JSON document, the config blob of one OCI manifest per
key. It names the key, the SHA-256 of the node's encoded inputs (keys are xxh3, which is
not collision-resistant), and per output its digest, size and the chunks its bytes travel
in. A writer signs (ed25519) the claim "in this repository, this key has the entry with
this SHA-256"; a reader trusts an entry only under a key it lists, as Nix's binary caches
do. The transport (chunk blobs, their compression) is covered through the entry's hash.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..engine.errors import BuildgraphError

FORMAT = 1
MEDIA_TYPE = "application/vnd.buildgraph.action-result.v1+json"
CHUNK_TYPE = "application/vnd.buildgraph.chunk.v1+zstd"
ARTIFACT_TYPE = "application/vnd.buildgraph.action-result.v1"
SIGNATURE = "dev.buildgraph.signature"
"""Manifest annotation: ``<key id>:<base64 signature>``."""
CREATED = "org.opencontainers.image.created"


class EntryError(Exception):
    """An entry that is malformed or not what was asked: a miss, with the reason."""


@dataclass(frozen=True)
class Chunk:
    offset: int
    length: int
    sha256: str
    """Of the raw bytes; the output is zeros wherever no chunk is."""
    blob: str
    """``sha256:...`` of the compressed bytes, as the registry names it."""
    blob_size: int


@dataclass(frozen=True)
class Output:
    digest: str
    size: int
    chunks: tuple[Chunk, ...]


@dataclass(frozen=True)
class Entry:
    key: str
    action: str
    created: int
    outputs: dict[str, Output]

    def encode(self) -> bytes:
        doc = {
            "format": FORMAT,
            "key": self.key,
            "action": self.action,
            "created": self.created,
            "outputs": {
                name: {
                    "digest": out.digest,
                    "size": out.size,
                    "executable": out.digest.endswith("-x"),
                    "chunks": [
                        {
                            "offset": c.offset,
                            "length": c.length,
                            "sha256": c.sha256,
                            "blob": c.blob,
                            "blob_size": c.blob_size,
                        }
                        for c in out.chunks
                    ],
                }
                for name, out in sorted(self.outputs.items())
            },
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    def blobs(self) -> dict[str, int]:
        """Every chunk blob, once, with its size: the manifest's layers."""
        return {c.blob: c.blob_size for out in self.outputs.values() for c in out.chunks}


def decode(data: bytes) -> Entry:
    try:
        doc = json.loads(data)
        if doc["format"] != FORMAT:
            raise EntryError(f"entry format {doc['format']!r}, not {FORMAT}")
        outputs = {
            str(name): Output(
                digest=str(out["digest"]),
                size=_count(out["size"]),
                chunks=tuple(
                    Chunk(
                        _count(c["offset"]),
                        _count(c["length"]),
                        str(c["sha256"]),
                        str(c["blob"]),
                        _count(c["blob_size"]),
                    )
                    for c in out["chunks"]
                ),
            )
            for name, out in doc["outputs"].items()
        }
        return Entry(str(doc["key"]), str(doc["action"]), _count(doc["created"]), outputs)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise EntryError(f"malformed entry ({type(err).__name__}: {err})") from None


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{value!r} is not a count")
    return value


def claim(repository: str, key: str, entry_sha256: str) -> bytes:
    """The bytes a signature covers."""
    return f"buildgraph remote cache v{FORMAT}\n{repository}\n{key}\n{entry_sha256}\n".encode()


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_text(public: Ed25519PublicKey) -> str:
    """``ed25519:<base64>``: a public key as BUILDGRAPH_REMOTE_CACHE_TRUST takes it."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + base64.b64encode(raw).decode()


def sign(private: Ed25519PrivateKey, repository: str, key: str, entry_sha256: str) -> str:
    signature = private.sign(claim(repository, key, entry_sha256))
    return f"{key_id(private.public_key())}:{base64.b64encode(signature).decode()}"


def verify(
    trusted: dict[str, Ed25519PublicKey], annotation: str, repository: str, key: str, sha: str
) -> None:
    """Raise :class:`EntryError` unless ``annotation`` is a good signature by a trusted key."""
    if not annotation:
        raise EntryError("unsigned")
    kid, _, encoded = annotation.partition(":")
    public = trusted.get(kid)
    if public is None:
        raise EntryError(f"signed by key {kid}, which is not trusted")
    try:
        public.verify(base64.b64decode(encoded, validate=True), claim(repository, key, sha))
    except (InvalidSignature, ValueError):
        raise EntryError(f"bad signature by key {kid}") from None


def load_private(path: Path) -> Ed25519PrivateKey:
    """The ed25519 private key in PEM file ``path``; the error never holds its bytes."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise BuildgraphError(
            f"cannot read the remote cache signing key {path}: {err.strerror}",
            hint="set BUILDGRAPH_REMOTE_CACHE_KEY to a readable file"
            " (`buildgraph cache keygen FILE` makes one), or unset it to only read",
        ) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise BuildgraphError(
            f"the remote cache signing key {path} is not an unencrypted ed25519 PEM private key",
            hint="make one with `buildgraph cache keygen FILE`",
        )
    return key


def load_public(text: str) -> Ed25519PublicKey:
    """``ed25519:<base64>``, or a PEM public key file."""
    try:
        if text.startswith("ed25519:"):
            raw = base64.b64decode(text.removeprefix("ed25519:"), validate=True)
            return Ed25519PublicKey.from_public_bytes(raw)
        key = serialization.load_pem_public_key(Path(text).expanduser().read_bytes())
    except (OSError, ValueError) as err:
        raise BuildgraphError(
            f"BUILDGRAPH_REMOTE_CACHE_TRUST: {text!r} is not a public key ({err})",
            hint="list ed25519:<base64> keys or PEM public key files, separated by commas"
            " (`buildgraph cache keygen` prints a key's ed25519: form)",
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise BuildgraphError(
            f"BUILDGRAPH_REMOTE_CACHE_TRUST: {text} is not an ed25519 public key",
            hint="the remote cache signs with ed25519 only",
        )
    return key


def keygen(path: Path) -> Ed25519PublicKey:
    """Write a new private key to ``path`` (mode 0600, never over an existing file)."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as err:
        raise BuildgraphError(
            f"cannot create {path}: {err.strerror}", hint="name a new file in a writable directory"
        ) from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return private.public_key()
