"""Remote cache entries kept in an OCI registry, one manifest per key, tagged ``ac-<key>``.

Works on any registry that speaks the distribution API, CNCF Distribution 2.8 (Debian's
docker-registry) included: no referrers API, no ``subject``. Writes go blobs first, the
entry (config blob) next, the tagged manifest last; a registry refuses a manifest whose
blobs it lacks, so a tag that exists names complete content, even after a killed upload.

A hit costs a HEAD of the tag when this machine has verified that manifest before, else
a GET of the manifest and of the entry. An entry is a hit only when a trusted key signed
it for this repository and key and it names the reader's own action digest; anything
else is a miss with the reason, never a hit and never overwritten by a reader. A
server that cannot be reached is one warning and a local build.
"""

from __future__ import annotations

import calendar
import hashlib
import http.client
import json
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..engine import log
from ..engine.errors import BuildgraphError
from ..engine.remote import Hit, LostError, Miss
from ..engine.sparse import write_into
from ..oci.layout import OCI_MANIFEST
from ..oci.push import Manifest, blob_exists, put_manifest, upload_blob
from ..oci.reference import Reference
from ..oci.registry import Client, MismatchError, NotFoundError, RegistryError
from . import chunks
from .entry import (
    ARTIFACT_TYPE,
    CHUNK_TYPE,
    CREATED,
    MEDIA_TYPE,
    SIGNATURE,
    Chunk,
    Entry,
    EntryError,
    Output,
    decode,
    load_private,
    load_public,
    sign,
    verify,
)
from .entry import (
    key_id as key_id_of,
)

TIMEOUT = 10.0
PARALLEL = 8
"""Requests in flight at once: lookups of many nodes, chunks of one output."""
_MAX_ENTRY = 4 << 20
T = TypeVar("T")


class RegistryCache:
    def __init__(self, values: Mapping[str, Any]) -> None:
        self.ref: Reference = values["BUILDGRAPH_REMOTE_CACHE"]
        self.where = f"{self.ref.registry}/{self.ref.repository}"
        self.required = bool(values.get("BUILDGRAPH_REMOTE_CACHE_REQUIRED"))
        key_file = values.get("BUILDGRAPH_REMOTE_CACHE_KEY")
        self.private = load_private(key_file) if key_file else None
        trusted = [load_public(text) for text in values.get("BUILDGRAPH_REMOTE_CACHE_TRUST", [])]
        if not trusted and self.private is not None:
            trusted = [self.private.public_key()]
        self.trusted = {key_id_of(public): public for public in trusted}
        self.client = Client(timeout=TIMEOUT)
        self._down: str | None = None

    # -- reading -------------------------------------------------------------------------

    def lookup(self, asked: list[tuple[str, str, bytes | None]]) -> dict[str, Hit | Miss]:
        if self._down is not None or not asked:
            return {}
        if not self.trusted:
            self._give_up(
                "no key is trusted: set BUILDGRAPH_REMOTE_CACHE_TRUST to the writers' public keys"
            )
            return {}
        try:
            self.client.scheme(self.ref)  # learn it once, before the threads ask
            answers = _parallel(lambda one: self._lookup_one(*one), asked)
        except RegistryError as err:
            self._unreachable(err)
            return {}
        return {key: answer for (key, _action, _known), answer in zip(asked, answers, strict=True)}

    def _lookup_one(self, key: str, action: str, known: bytes | None) -> Hit | Miss:
        tag = f"ac-{key}"
        response = self._open("HEAD", f"/manifests/{tag}", {"Accept": OCI_MANIFEST})
        with response:
            status = response.status
            digest = response.headers.get("Docker-Content-Digest") or ""
        if status == 404:
            return Miss()
        if status != 200:
            self.client.check(self.ref, response, f"cache entry {tag}")
        if known is not None:
            kept = json.loads(known)
            if kept["manifest"] == digest:  # verified here before: nothing more to ask
                return Hit(_outputs(decode(kept["entry"].encode())), known)
        try:
            body, _type, digest = self.client.manifest(self.ref, digest or tag)
        except NotFoundError:
            return Miss()
        except MismatchError:
            return Miss("the registry served a manifest that is not the bytes its digest names")
        try:
            entry_bytes = self._entry_of(json.loads(body), key)
            entry = decode(entry_bytes)
        except EntryError as err:
            return Miss(str(err))
        except NotFoundError:
            return Miss("its entry blob is gone from the registry")
        if entry.key != key:
            return Miss(f"tag {tag} names the entry of key {entry.key}")
        if entry.action != action:
            return Miss("it was made from other inputs (its action SHA-256 differs from ours)")
        kept_bytes = json.dumps({"manifest": digest, "entry": entry_bytes.decode()}).encode()
        return Hit(_outputs(entry), kept_bytes)

    def _entry_of(self, manifest: Any, key: str) -> bytes:
        """The entry blob a manifest names, once its signature is checked."""
        if not isinstance(manifest, dict):
            raise EntryError("the manifest is not a JSON object")
        config = manifest.get("config") or {}
        if config.get("mediaType") != MEDIA_TYPE:
            raise EntryError(f"not a buildgraph cache entry (config {config.get('mediaType')})")
        digest = str(config.get("digest", ""))
        if not digest.startswith("sha256:") or len(digest) != 71:
            raise EntryError(f"its entry digest {digest!r} is not sha256:<hex>")
        annotations = manifest.get("annotations") or {}
        verify(self.trusted, str(annotations.get(SIGNATURE, "")), self.where, key, digest[7:])
        data = self._blob(digest, _MAX_ENTRY)
        layers = {layer.get("digest") for layer in manifest.get("layers") or []}
        if not set(decode(data).blobs()) <= layers:
            raise EntryError("its manifest does not hold every chunk its entry names")
        return data

    def _blob(self, digest: str, limit: int) -> bytes:
        """A blob's bytes, checked against its digest (NotFoundError if it is gone)."""
        response = self._open("GET", f"/blobs/{digest}")
        self.client.check(self.ref, response, f"blob {digest}")
        with response:
            try:
                data = response.read(limit + 1)
            except (OSError, http.client.HTTPException) as err:
                raise self.client.unreachable(self.ref, err) from None
        if len(data) > limit:
            raise EntryError(f"blob {digest} is larger than {limit} bytes")
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise EntryError(f"the registry served other bytes for blob {digest}")
        return data

    def fetch(self, entry: bytes, name: str, dest: Path) -> int:
        kept = json.loads(entry)
        output = decode(kept["entry"].encode()).outputs[name]
        fd = chunks.create(dest, output.size, output.digest.endswith("-x"))
        try:

            def one(chunk: Chunk) -> int:
                blob = self._blob(chunk.blob, chunk.blob_size)
                data = chunks.decompress(blob, chunk.length)
                if chunks.sha256(data) != chunk.sha256:
                    raise EntryError(f"chunk at {chunk.offset} is not the bytes its entry names")
                write_into(data, fd, chunk.offset)
                return len(blob)

            return sum(_parallel(one, list(output.chunks)))
        except NotFoundError:
            raise LostError(f"a blob of {name} is gone from remote cache {self.where}") from None
        except (RegistryError, EntryError, ValueError) as err:
            raise LostError(f"{name} could not be fetched from {self.where}: {err}") from None
        finally:
            os.close(fd)

    # -- writing -------------------------------------------------------------------------

    def upload(self, key: str, action: str, outputs: Mapping[str, tuple[str, int, Path]]) -> bool:
        if self.private is None or self._down is not None:
            return False
        try:
            if isinstance(self._lookup_one(key, action, None), Hit):
                return False
            sent = {name: self._send_output(*output) for name, output in outputs.items()}
            entry = Entry(key, action, int(time.time()), sent)
            data = entry.encode()
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            self._send_blob(digest, data)
            manifest = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": ARTIFACT_TYPE,
                "config": {"mediaType": MEDIA_TYPE, "digest": digest, "size": len(data)},
                "layers": [
                    {"mediaType": CHUNK_TYPE, "digest": blob, "size": size}
                    for blob, size in sorted(entry.blobs().items())
                ],
                "annotations": {
                    SIGNATURE: sign(self.private, self.where, key, digest[7:]),
                    CREATED: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.created)),
                },
            }
            body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            put_manifest(self.client, self.ref, Manifest(digest, OCI_MANIFEST, body), f"ac-{key}")
        except RegistryError as err:
            self._unreachable(err, uploading=True)
            return False
        return True

    def _send_output(self, digest: str, size: int, path: Path) -> Output:
        sent = []
        for offset, data in chunks.data_chunks(path):
            blob = chunks.compress(data)
            blob_digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            self._send_blob(blob_digest, blob)
            sent.append(Chunk(offset, len(data), chunks.sha256(data), blob_digest, len(blob)))
        return Output(digest, size, tuple(sent))

    def _send_blob(self, digest: str, data: bytes) -> None:
        if not blob_exists(self.client, self.ref, digest):
            upload_blob(self.client, self.ref, digest, len(data), data)

    # -- maintenance ---------------------------------------------------------------------

    def entries(self) -> list[tuple[str, str, int]]:
        """(tag, manifest digest, created) of every entry, for pruning."""
        response = self._open("GET", "/tags/list")
        self.client.check(self.ref, response, "tag list")
        with response:
            tags = json.loads(response.read(64 << 20)).get("tags") or []
        found = []
        for tag in sorted(t for t in tags if t.startswith("ac-")):
            try:
                body, _type, digest = self.client.manifest(self.ref, tag)
            except NotFoundError:
                continue
            annotations = json.loads(body).get("annotations") or {}
            created = annotations.get(CREATED, "")
            try:
                stamp = calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ"))
            except ValueError:
                stamp = 0
            found.append((tag, digest, stamp))
        return found

    def delete(self, digest: str) -> None:
        response = self.client.open(
            self.ref, "DELETE", f"/v2/{self.ref.repository}/manifests/{digest}", actions="*"
        )
        with response:
            status = response.status
        if status not in (200, 202, 404):
            raise RegistryError(
                f"registry {self.ref.registry} refused to delete {digest} of {self.where}"
                f" (HTTP {status})",
                hint="deletion must be enabled on the registry (Distribution:"
                " storage.delete.enabled: true) and allowed for this account",
            )

    # -- plumbing ------------------------------------------------------------------------

    def _open(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> http.client.HTTPResponse:
        return self.client.open(self.ref, method, f"/v2/{self.ref.repository}{path}", headers)

    def _unreachable(self, err: RegistryError, uploading: bool = False) -> None:
        if self.required:
            raise BuildgraphError(
                f"the remote cache {self.where} failed: {err.message}",
                hint=(err.hint or "")
                + "; unset BUILDGRAPH_REMOTE_CACHE_REQUIRED to build locally when it is down",
            ) from None
        doing = "no more uploads" if uploading else "building locally"
        self._give_up(f"{err.message}; {doing} for this build")

    def _give_up(self, why: str) -> None:
        if self._down is None:
            self._down = why
            log.warning(f"remote cache: {why}")


def _outputs(entry: Entry) -> dict[str, tuple[str, int]]:
    return {name: (out.digest, out.size) for name, out in entry.outputs.items()}


def _parallel(func: Callable[[Any], T], items: list) -> list[T]:
    if len(items) <= 1:
        return [func(item) for item in items]
    with ThreadPoolExecutor(min(PARALLEL, len(items))) as pool:
        return list(pool.map(func, items))
