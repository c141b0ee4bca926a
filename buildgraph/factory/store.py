"""Schematics kept durably, by ID: a file each, written whole or not at all; and in a
registry, for factories on several machines.

A schematic is stored as its canonical YAML under its ID, in a directory of the cache
(``<cache>/factory/schematics``), so it survives a restart and every factory sharing the
cache knows it. Files are written to a temporary name and renamed, so a killed factory
leaves no half-written schematic. With a registry (:class:`RegistrySchematics`), each is
also pushed as ``<prefix>/schematics:<id>``, an artifact whose one layer is the YAML, and
an ID this cache lacks is looked up there: what one factory stored, all serve.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from ..oci import reference
from ..oci.layout import OCI_MANIFEST, canonical_json
from ..oci.push import Manifest, blob_exists, put_manifest, upload_blob
from ..oci.registry import Client, NotFoundError, RegistryError
from .schematic import Schematic, SchematicError, parse

ID = re.compile(r"[0-9a-f]{64}")


ARTIFACT = "application/vnd.buildgraph.schematic.v1+yaml"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"


class RegistrySchematics:
    """Schematics as artifacts of ``<prefix>/schematics``, tagged by ID."""

    def __init__(self, prefix: str) -> None:
        self.ref = reference.parse(f"{prefix}/schematics")
        self.client = Client()

    def put(self, schematic: Schematic) -> None:
        config, data = b"{}", schematic.marshal()
        descriptors = []
        for blob, media in ((config, EMPTY_CONFIG), (data, ARTIFACT)):
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            if not blob_exists(self.client, self.ref, digest):
                upload_blob(self.client, self.ref, digest, len(blob), blob)
            descriptors.append({"mediaType": media, "digest": digest, "size": len(blob)})
        body = canonical_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "artifactType": ARTIFACT, "config": descriptors[0],
                               "layers": descriptors[1:]})  # fmt: skip
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        put_manifest(self.client, self.ref, Manifest(digest, OCI_MANIFEST, body), schematic.id)

    def get(self, schematic_id: str) -> bytes | None:
        try:
            body, _media, _digest = self.client.manifest(self.ref, schematic_id)
        except NotFoundError:
            return None
        layers = json.loads(body).get("layers") or []
        if len(layers) != 1 or layers[0].get("mediaType") != ARTIFACT:
            raise RegistryError(f"{self.ref}:{schematic_id} is not a schematic")
        digest = layers[0]["digest"]
        response = self.client.open(self.ref, "GET", f"/v2/{self.ref.repository}/blobs/{digest}")
        self.client.check(self.ref, response, "schematic")
        with response:
            data = response.read(1 << 21)
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise self.client.mismatch(self.ref, digest, "another digest", "schematic")
        return data


class SchematicStore:
    def __init__(self, directory: Path, remote: RegistrySchematics | None = None) -> None:
        self.directory = directory
        self.remote = remote
        directory.mkdir(parents=True, exist_ok=True)

    def put(self, schematic: Schematic) -> str:
        path = self.directory / f"{schematic.id}.yaml"
        if not path.is_file():
            if self.remote is not None:
                self.remote.put(schematic)  # before the file: a failed push is tried again
            self._write(path, schematic.marshal())
        return schematic.id

    def get(self, schematic_id: str) -> Schematic | None:
        """The schematic of an ID (64 lowercase hex: anything else is no path), or None."""
        if not ID.fullmatch(schematic_id):
            return None
        path = self.directory / f"{schematic_id}.yaml"
        try:
            return parse(path.read_bytes())
        except FileNotFoundError:
            pass
        data = self.remote.get(schematic_id) if self.remote is not None else None
        if data is None:
            return None
        found = parse(data)
        if found.id != schematic_id:
            raise SchematicError(f"the registry's schematic {schematic_id} has ID {found.id}")
        self._write(path, data)
        return found

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
