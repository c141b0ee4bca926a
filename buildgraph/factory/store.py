"""Schematics kept durably, by ID: a file each, written whole or not at all.

A schematic is stored as its canonical YAML under its ID, in a directory of the cache
(``<cache>/factory/schematics``), so it survives a restart and every factory sharing the
cache knows it. Files are written to a temporary name and renamed, so a killed factory
leaves no half-written schematic.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .schematic import Schematic, parse

ID = re.compile(r"[0-9a-f]{64}")


class SchematicStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def put(self, schematic: Schematic) -> str:
        path = self.directory / f"{schematic.id}.yaml"
        if not path.is_file():
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(schematic.marshal())
            os.replace(tmp, path)
        return schematic.id

    def get(self, schematic_id: str) -> Schematic | None:
        """The schematic of an ID (64 lowercase hex: anything else is no path), or None."""
        if not ID.fullmatch(schematic_id):
            return None
        try:
            return parse((self.directory / f"{schematic_id}.yaml").read_bytes())
        except FileNotFoundError:
            return None
