"""The versions a factory serves, and the grammar of a version in a URL.

A version is an image tag. The factory serves its checkout's build as the version ``TAG``
(the variable's value when it starts); ``latest`` names the newest version it serves. A
path segment that is not a tag is malformed (400), a tag it does not serve unknown (404).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..engine.errors import BuildgraphError

TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
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


class Versions:
    def __init__(self, served: list[Version]) -> None:
        self.served = {version.name: version for version in served}
        self.newest = served[-1].name

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
