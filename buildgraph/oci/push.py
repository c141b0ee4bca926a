"""Push an image from the embedded store to a registry, over the OCI distribution API.

Images a build makes live in the embedded store (:class:`~buildgraph.oci.layout.Layout`);
``buildgraph push`` sends one, a single image or a multi-arch index, to a registry. The
order is the one a registry needs to accept each piece, so a push that stops half-way
leaves no tag naming missing content:

1. every blob (configs and layers) the registry does not have yet: ``HEAD`` first, and
   only on a 404 an upload (``POST`` to open it, one ``PUT`` streaming the file);
2. every platform manifest, ``PUT`` by its digest;
3. the index (or the single manifest) ``PUT`` by the destination's tag, and by its digest
   when the destination names one.

So a second push of an unchanged image uploads no blob. The registry's
``Docker-Content-Digest`` answers are checked against what was sent. Transport, TLS
policy (plain HTTP only to loopback) and auth are :class:`~buildgraph.oci.registry.Client`'s.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..engine import log
from .layout import INDEX_TYPES, Descriptor, Layout, LayoutError, platform_name
from .reference import Reference, parse
from .registry import PUSH, Client, RegistryError, failure_detail

MIB = 1 << 20
_MAX_MANIFEST = 4 << 20
_MAX_DEPTH = 4
_DAMAGED = "the store is damaged: build or pull the image again"
_MISSING_ARCH = (
    "pull or build the missing architecture into the store first (a build with "
    "PLATFORM=linux/<arch> does), then push again"
)


@dataclass(frozen=True)
class PushReport:
    """What a push did: the pushed digest, and how many blobs and bytes it sent."""

    dest: Reference
    digest: str
    """The digest of the index (or single manifest) now at ``dest``."""
    media_type: str
    blobs_uploaded: int
    blobs_skipped: int
    """Blobs the registry already had (HEAD answered 200): not sent."""
    bytes_sent: int
    """Blob bytes sent, retries included (manifests, a few KiB, are not counted)."""
    manifests: int
    """Manifest PUT requests, the index's included."""

    @property
    def pinned(self) -> Reference:
        """``dest`` with the pushed digest: what to pull to get exactly these bytes."""
        return Reference(self.dest.registry, self.dest.repository, self.dest.tag, self.digest)

    def summary(self) -> str:
        return (
            f"pushed {self.pinned}: {self.blobs_uploaded} blobs uploaded "
            f"({self.bytes_sent / MIB:.2f} MiB), {self.blobs_skipped} already there"
        )


@dataclass
class Manifest:
    """A manifest or index to PUT: its exact stored bytes (its digest is over them)."""

    digest: str
    media_type: str
    data: bytes


@dataclass
class _Content:
    """What a push sends, in order: blobs, then child manifests, then the top."""

    name: str
    blobs: dict[str, Descriptor]
    manifests: list[Manifest]


# -- what to send ----------------------------------------------------------------------------


def _source(layout: Layout, source_ref: str) -> tuple[str, Descriptor]:
    """The store's entry for ``source_ref``, as given or in its full form (``:latest`` added)."""
    names = [source_ref]
    with contextlib.suppress(ValueError):
        names.append(str(parse(source_ref)))
    for name in names:
        found = layout.lookup(name)
        if found is not None:
            return name, found
    known = ", ".join(layout.refs()) or "none"
    raise LayoutError(
        f"no image {source_ref} in the OCI store {layout.path} (it has: {known})",
        hint="build the image first, or name one the store has",
    )


def _manifest_bytes(layout: Layout, desc: Descriptor, where: str, missing_hint: str) -> bytes:
    """A manifest's exact stored bytes (its digest is over them), digest-checked."""
    try:
        path = layout.blob_path(desc.digest)
    except ValueError as err:
        raise LayoutError(f"{where} names a manifest with an {err}", hint=_DAMAGED) from None
    try:
        with open(path, "rb") as src:
            data = src.read(_MAX_MANIFEST + 1)
    except FileNotFoundError:
        raise LayoutError(
            f"{where} is not in the OCI store {layout.path} (blob {desc.digest} is missing)",
            hint=missing_hint,
        ) from None
    if len(data) > _MAX_MANIFEST:
        raise LayoutError(
            f"the manifest {desc.digest} of {where} is larger than 4 MiB", hint=_DAMAGED
        )
    if "sha256:" + hashlib.sha256(data).hexdigest() != desc.digest:
        layout.verify_blob(desc.digest)  # raises, naming the file, and drops it
    return data


def _check_blob(layout: Layout, blob: Descriptor, where: str) -> None:
    """A blob must be in the store with its descriptor's size before anything is sent."""
    try:
        size = layout.blob_path(blob.digest).stat().st_size
    except ValueError as err:
        raise LayoutError(f"{where} names a blob with an {err}", hint=_DAMAGED) from None
    except FileNotFoundError:
        raise LayoutError(
            f"{where} names blob {blob.digest}, which is not in the OCI store {layout.path}",
            hint="build or pull the image into the store again",
        ) from None
    if size != blob.size:
        raise LayoutError(
            f"blob {blob.digest} of {where} has {size} bytes in the OCI store {layout.path}; "
            f"its manifest says {blob.size}",
            hint=_DAMAGED,
        )


def _walk(layout: Layout, desc: Descriptor, where: str, content: _Content, depth: int) -> None:
    """Add a manifest's blobs, or an index's manifests, then the manifest itself: children
    come before the index that lists them, as the registry wants them."""
    missing = _MISSING_ARCH if depth else _DAMAGED
    data = _manifest_bytes(layout, desc, where, missing)
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise LayoutError(
            f"the manifest {desc.digest} of {where} is not a JSON object", hint=_DAMAGED
        )
    media_type = str(doc.get("mediaType") or desc.media_type)
    if media_type in INDEX_TYPES or "manifests" in doc:
        if depth >= _MAX_DEPTH:
            raise LayoutError(
                f"{where} nests indexes more than {_MAX_DEPTH} deep",
                hint="push it with skopeo, which has no such limit",
            )
        for entry in doc.get("manifests") or []:
            label = f"the {platform_name(entry.get('platform') or {})} image of {where}"
            _walk(layout, Descriptor.from_json(entry), label, content, depth + 1)
    else:
        for entry in [doc.get("config") or {}, *(doc.get("layers") or [])]:
            if not entry.get("digest"):
                raise LayoutError(f"{where} has a config or layer without a digest", hint=_DAMAGED)
            blob = Descriptor.from_json(entry)
            _check_blob(layout, blob, where)
            content.blobs.setdefault(blob.digest, blob)
    content.manifests.append(Manifest(desc.digest, media_type, data))


def _collect(layout: Layout, source_ref: str) -> _Content:
    """Everything ``source_ref`` names, checked present in the store before any request.

    The last of ``manifests`` is the top: the index, or the single image manifest.
    """
    name, top = _source(layout, source_ref)
    content = _Content(name, {}, [])
    _walk(layout, top, name, content, 0)
    return content


# -- requests ----------------------------------------------------------------------------------


def _remote(dest: Reference) -> None:
    if dest.is_local:
        raise RegistryError(
            f"{dest} names the embedded OCI store, not a registry",
            hint="push to a registry reference such as 127.0.0.1:5005/me/image:v1",
        )


def _refused(dest: Reference, what: str, detail: str, hint: str) -> RegistryError:
    return RegistryError(f"registry {dest.registry} refused {what} for {dest}: {detail}", hint=hint)


def _denied_or_refused(
    client: Client, dest: Reference, response: http.client.HTTPResponse, what: str, hint: str
) -> RegistryError:
    if response.status in (401, 403):
        response.close()
        return client.unauthorized(dest, response.status, PUSH)
    return _refused(dest, what, failure_detail(response), hint)


def _mismatch(dest: Reference, what: str, sent: str, answered: str) -> RegistryError:
    return RegistryError(
        f"digest mismatch pushing the {what} to {dest}: sent {sent}, registry "
        f"{dest.registry} answered {answered}",
        hint="the registry (or a proxy between us) stored other bytes than were sent; do not "
        "use what it holds under that name, and check the registry or the network path",
    )


def _check_answer(
    dest: Reference, response: http.client.HTTPResponse, what: str, sent: str
) -> None:
    answered = response.headers.get("Docker-Content-Digest")
    if answered and answered != sent:
        raise _mismatch(dest, what, sent, answered)


def blob_exists(client: Client, dest: Reference, digest: str) -> bool:
    path = f"/v2/{dest.repository}/blobs/{digest}"
    response = client.open(dest, "HEAD", path, actions=PUSH)
    if response.status in (200, 404):
        response.close()
        return response.status == 200
    raise _denied_or_refused(
        client,
        dest,
        response,
        f"to say whether it has blob {digest}",
        "retry later; if it persists, check the registry's logs or status page",
    )


class _Counting:
    """A file read by the HTTP library, counting the bytes that went out."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size)
        self.count += len(data)
        return data

    def close(self) -> None:
        self.file.close()


def _upload_url(client: Client, dest: Reference, location: str, digest: str) -> str:
    """The path (and query) to PUT the blob to: the upload's Location plus ``digest=``."""
    base = client.base_url(dest)
    url = urllib.parse.urlsplit(urllib.parse.urljoin(base + "/", location))
    if f"{url.scheme}://{url.netloc}".lower() != base.lower():
        raise RegistryError(
            f"registry {dest.registry} sent an upload location on another server "
            f"({url.scheme}://{url.netloc}) for {dest}",
            hint="pushing through another upload server is not supported; push with skopeo",
        )
    query = "&".join(q for q in (url.query, urllib.parse.urlencode({"digest": digest})) if q)
    return f"{url.path}?{query}"


def _upload(client: Client, layout: Layout, dest: Reference, blob: Descriptor) -> int:
    """Upload a blob of the store; returns the bytes sent."""
    streams: list[_Counting] = []
    body = _file_body(layout.blob_path(blob.digest), streams)
    upload_blob(client, dest, blob.digest, blob.size, body, lambda: layout.verify_blob(blob.digest))
    return sum(stream.count for stream in streams)  # a retry after a 401 sends it again


def upload_blob(
    client: Client,
    dest: Reference,
    digest: str,
    size: int,
    body: bytes | Callable[[], IO[bytes]],
    damaged: Callable[[], None] = lambda: None,
) -> None:
    """POST an upload, then PUT the blob in one request. ``damaged`` is called on a refusal
    that is not about access, to name a damaged source instead if it is one."""
    path = f"/v2/{dest.repository}/blobs/uploads/"
    started = client.open(dest, "POST", path, {"Content-Length": "0"}, body=b"", actions=PUSH)
    hint = (
        "the registry may be read-only or not accept pushes to this repository; check its "
        "configuration, or that the account may push"
    )
    if started.status != 202:
        raise _denied_or_refused(client, dest, started, f"an upload of blob {digest}", hint)
    location = started.headers.get("Location")
    started.close()
    if not location:
        raise _refused(dest, f"an upload of blob {digest}", "no Location header", hint)
    url = _upload_url(client, dest, location, digest)
    response = client.open(
        dest,
        "PUT",
        url,
        {"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        body=body,
        actions=PUSH,
    )
    if response.status not in (201, 401, 403):
        damaged()
    if response.status != 201:
        raise _denied_or_refused(client, dest, response, f"blob {digest} ({size} bytes)", hint)
    with response:
        _check_answer(dest, response, f"blob {digest}", digest)


def _file_body(path: Path, streams: list[_Counting]) -> Callable[[], IO[bytes]]:
    """A body for :meth:`Client.open`: the file, streamed (never read into memory)."""

    def open_body() -> IO[bytes]:
        try:
            stream = _Counting(open(path, "rb"))  # noqa: SIM115 (closed by Client.open)
        except OSError as err:
            raise LayoutError(
                f"cannot read blob {path.name} from the OCI store: {err.strerror}",
                hint="check the store's permissions, or build or pull the image again",
            ) from None
        streams.append(stream)
        return stream  # type: ignore[return-value]

    return open_body


def put_manifest(client: Client, dest: Reference, manifest: Manifest, reference: str) -> None:
    response = client.open(
        dest,
        "PUT",
        f"/v2/{dest.repository}/manifests/{reference}",
        {"Content-Type": manifest.media_type, "Content-Length": str(len(manifest.data))},
        body=manifest.data,
        actions=PUSH,
    )
    what = f"manifest {manifest.digest}"
    if reference != manifest.digest:
        what += f" as tag {reference}"
    if response.status != 201:
        raise _denied_or_refused(
            client,
            dest,
            response,
            what,
            f"the registry may not accept {manifest.media_type}, or lacks something the "
            "manifest names; its logs say which",
        )
    with response:
        _check_answer(dest, response, what, manifest.digest)


# -- the operation -----------------------------------------------------------------------------


def push(
    layout: Layout, source_ref: str, dest: Reference, *, client: Client | None = None
) -> PushReport:
    """Push the image or index ``source_ref`` names in ``layout`` to ``dest``.

    Everything is checked present in the store before the first request. ``dest`` may
    pin a digest, which must be the source's; the top manifest is then also PUT by it.
    Raises :class:`RegistryError` for the registry's refusals and
    :class:`~buildgraph.oci.layout.LayoutError` for a source missing or damaged in the store.
    """
    _remote(dest)
    content = _collect(layout, source_ref)
    *children, top = content.manifests
    if dest.digest and dest.digest != top.digest:
        raise RegistryError(
            f"{dest} pins {dest.digest}, but {content.name} in the OCI store is {top.digest}",
            hint="drop the @sha256:... from the destination, or push the image it names",
        )
    client = client or Client()
    logger = log.get()
    uploaded = skipped = sent = 0
    for blob in content.blobs.values():
        if blob_exists(client, dest, blob.digest):
            skipped += 1
            logger.debug("push_blob", dest=dest.name, digest=blob.digest, status="present")
            continue
        count = _upload(client, layout, dest, blob)
        uploaded += 1
        sent += count
        logger.debug(
            "push_blob", dest=dest.name, digest=blob.digest, status="uploaded", bytes=count
        )
    for manifest in children:
        put_manifest(client, dest, manifest, manifest.digest)
    references = [r for r in (dest.tag, dest.digest) if r] or ["latest"]
    for reference in references:
        put_manifest(client, dest, top, reference)
    report = PushReport(
        dest=dest,
        digest=top.digest,
        media_type=top.media_type,
        blobs_uploaded=uploaded,
        blobs_skipped=skipped,
        bytes_sent=sent,
        manifests=len(children) + len(references),
    )
    logger.debug(
        "pushed",
        dest=str(report.pinned),
        uploaded=uploaded,
        skipped=skipped,
        bytes=sent,
        manifests=report.manifests,
    )
    return report
