"""The versions a factory serves, and the grammar of a version in a URL.

A version is an image tag. The factory serves its checkout's build as the version ``TAG``
(the variable's value when it starts), and released versions: each an imager image
(``IMAGER_IMAGE`` semantics: its kernel and initramfs replace the checkout's) with its
catalogs beside it, ``<registry>/<user>/{imager,extensions,overlays}:<version>``. They are
listed by the tags of ``<registry>/<user>/imager`` (:func:`from_registry`) or by a file
(:func:`from_file`). ``latest`` names the newest stable release (``v1.2.3``), else the
checkout's. A path segment that is not a tag is malformed (400), a tag not served unknown
(404).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..engine.errors import BuildgraphError

TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
STABLE = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")
LATEST = "latest"


class MalformedVersionError(BuildgraphError):
    """Not an image tag (400)."""


class UnknownVersionError(BuildgraphError):
    """A well-formed version this factory does not serve (404)."""


@dataclass(frozen=True)
class Version:
    name: str
    registry: str
    """Where its images are named: ``IMAGE_REGISTRY/USERNAME``."""
    imager: str | None = None
    """A release's imager image; None for the checkout's own build."""


class Versions:
    def __init__(self, checkout: Version, released: list[Version] = ()) -> None:
        ordered = sorted(released, key=_order)
        self.served = {v.name: v for v in [*ordered, checkout]}
        stable = [v.name for v in ordered if STABLE.fullmatch(v.name)]
        self.newest = stable[-1] if stable else checkout.name

    def names(self) -> list[str]:
        return list(self.served)

    def get(self, text: str) -> Version:
        if not TAG.fullmatch(text):
            raise MalformedVersionError(
                f"malformed version {text[:80]!r}: a version is an image tag",
                hint="letters, digits, '.', '_', '-'; up to 128",
            )
        found = self.served.get(self.newest if text == LATEST else text)
        if found is None:
            raise UnknownVersionError(
                f"unknown version {text!r}", hint=f"this factory serves {', '.join(self.served)}"
            )
        return found


def _order(version: Version) -> tuple:
    stable = STABLE.fullmatch(version.name)
    return (1, *map(int, stable.groups())) if stable else (0, version.name)


def release(prefix: str, name: str) -> Version:
    """The release ``name`` of ``<registry>/<user>`` ``prefix``."""
    if not TAG.fullmatch(name):
        raise MalformedVersionError(f"{prefix}/imager: tag {name!r} is not a version")
    return Version(name, prefix, f"{prefix}/imager:{name}")


def from_registry(prefix: str) -> list[Version]:
    """Every tag of ``<prefix>/imager``, as a release."""
    from ..oci import reference
    from ..oci.registry import Client

    ref = reference.parse(f"{prefix}/imager")
    return [release(prefix, tag) for tag in Client().tags(ref) if TAG.fullmatch(tag)]


def from_file(path: Path) -> list[Version]:
    """The releases a file lists: ``versions: [{version: v1.2.3, registry: host/user}]``."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise BuildgraphError(f"--versions {path}: {err}") from None
    entries = data.get("versions") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and set(e) == {"version", "registry"} for e in entries
    ):
        raise BuildgraphError(
            f"--versions {path}: not a list of releases",
            hint="versions: [{version: v1.2.3, registry: registry.example:5000/user}]",
        )
    return [release(str(e["registry"]), str(e["version"])) for e in entries]
