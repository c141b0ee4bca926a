"""The factory's read-only OCI registry: installer images of a schematic, built on pull.

``docker://<factory>/<name>/<schematic>:<version>`` where ``<name>`` is ``installer`` or
``metal-installer`` (with ``-secureboot`` for the secure boot installer) names a multi-arch
index of the installer built with the schematic for every arch; ``<platform>-installer``
is refused for other platforms (this graph's installer installs metal disks). The index is
assembled from the per-arch OCI archives the graph builds, whose blobs are then served by
digest. Only the pull side of the distribution API is here: ``/v2/``, manifests and blobs,
GET and HEAD; errors are the API's JSON (``{"errors": [{code, message}]}``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from ..engine.errors import BuildgraphError
from ..oci.layout import OCI_INDEX, canonical_json, sha256_digest
from ..variables import ARCHES
from .assets import Asset, name

_NAME = re.compile(r"(?:(?P<platform>[a-z][a-z0-9-]*?)-)?installer(?P<secureboot>-secureboot)?")
API = {"Docker-Distribution-API-Version": "registry/2.0"}


class LargeFileResponse(FileResponse):
    """A file read (in a worker thread) and written a MiB at a time, not 64 KiB: assets
    and layers are large, and each chunk costs a thread hand-off."""

    chunk_size = 1 << 20


class RegistryError(BuildgraphError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def error(err: RegistryError | BuildgraphError, status: int = 500) -> Response:
    code = err.code if isinstance(err, RegistryError) else "UNKNOWN"
    status = err.status if isinstance(err, RegistryError) else status
    message = err.message + (f" (hint: {err.hint})" if err.hint else "")
    return JSONResponse({"errors": [{"code": code, "message": message}]}, status, headers=API)


def installer_assets(repository: str) -> list[Asset]:
    """The per-arch installer assets a repository name stands for."""
    match = _NAME.fullmatch(repository)
    if match is None:
        raise RegistryError(
            404, "NAME_UNKNOWN", f"repository {repository[:80]!r} is not an installer"
        )
    platform = match.group("platform") or "metal"
    secure = bool(match.group("secureboot"))
    return [Asset("installer", arch, platform, secure) for arch in ARCHES]


class Blobs:
    """Every blob of every installer index served so far, by digest."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.paths: dict[str, Path] = {}
        self.media: dict[str, str] = {}

    def index(self, archives: list[tuple[str, Path]]) -> tuple[str, bytes]:
        """The index of per-arch OCI archives ``(arch, path)``: its digest and bytes."""
        manifests = []
        for arch, archive in archives:
            layout = self._unpack(archive)
            (entry,) = json.loads((layout / "index.json").read_bytes())["manifests"]
            for blob in (layout / "blobs" / "sha256").iterdir():
                self.paths[f"sha256:{blob.name}"] = blob
            self.media[entry["digest"]] = entry["mediaType"]
            manifests.append({"mediaType": entry["mediaType"], "digest": entry["digest"],
                              "size": entry["size"],
                              "platform": {"architecture": arch, "os": "linux"}})  # fmt: skip
        data = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX,
                               "manifests": manifests})  # fmt: skip
        digest = sha256_digest(data)
        path = self.directory / "indexes" / digest.removeprefix("sha256:")
        if not path.is_file():  # content-addressed: written once, whole, never rewritten
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        self.paths[digest], self.media[digest] = path, OCI_INDEX
        return digest, data

    def _unpack(self, archive: Path) -> Path:
        from ..formats import untar

        st = archive.stat()
        dest = self.directory / "layouts" / f"{st.st_ino}-{st.st_size}-{st.st_mtime_ns}"
        if not (dest / "index.json").is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
            untar.extract(archive, scratch, "data")
            try:
                scratch.rename(dest)
            except OSError:  # another request unpacked it first
                shutil.rmtree(scratch)
        return dest


async def serve(factory, request: Request) -> Response:
    """``/v2/{name}/{schematic}/manifests|blobs/{reference}``."""
    params = request.path_params
    blobs: Blobs = factory.blobs
    if params["kind"] not in ("manifests", "blobs"):
        return error(RegistryError(404, "UNSUPPORTED", f"no {params['kind'][:40]!r} here"))
    try:
        assets = installer_assets(params["name"])
        reference = params["reference"]
        if params["kind"] == "manifests" and not reference.startswith("sha256:"):
            archives = await asyncio.gather(*(
                factory.asset(params["id"], reference, name(a)) for a in assets
            ))  # fmt: skip
            pairs = [(a.arch, p) for a, p in zip(assets, archives, strict=True)]
            digest, _ = await asyncio.to_thread(blobs.index, pairs)  # unpacks: off the loop
        else:
            digest = reference
        path = blobs.paths.get(digest)
        if path is None:
            code = "MANIFEST_UNKNOWN" if params["kind"] == "manifests" else "BLOB_UNKNOWN"
            raise RegistryError(404, code, f"{digest[:80]} is not known here")
    except RegistryError as err:
        return error(err)
    except BuildgraphError as err:
        status = factory.status_of(err)
        return error(RegistryError(status, _CODES.get(status, "UNKNOWN"), str(err)))
    media = blobs.media.get(digest, "application/octet-stream")
    headers = {**API, "Docker-Content-Digest": digest}
    return LargeFileResponse(path, media_type=media, headers=headers)


_CODES = {400: "NAME_INVALID", 404: "MANIFEST_UNKNOWN", 503: "TOOMANYREQUESTS"}


async def base(_factory, _request: Request) -> Response:
    return JSONResponse({}, headers=API)
