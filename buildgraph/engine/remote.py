"""A cache shared between machines, as the engine sees it: entries by key, bytes on demand.

The engine defines this interface; a front end fills it (buildgraph/remote/ keeps entries
on an OCI registry) and installs a factory with :func:`provide`. A session then asks the
remote cache for every key the local cache lacks, takes a verified entry as a hit without
its bytes, and fetches an output only when something needs it: a step that runs here, or
the goal's files in ``_out/`` (Bazel's "build without the bytes", top-level outputs only).
A fetched output is checked against the digest its entry claims; if it is gone or wrong,
the node runs instead, in the same build.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple, Protocol

from .store import Outputs, Store


class Hit(NamedTuple):
    outputs: Outputs
    entry: bytes
    """What :meth:`RemoteCache.fetch` needs to fetch the outputs, kept in the local cache."""


class Miss(NamedTuple):
    reason: str = ""
    """Empty for a plain miss; else why an entry there was not trusted."""


class LostError(Exception):
    """An output of a hit cannot be had (its blob is gone or not what the entry said)."""


class RemoteCache(Protocol):
    where: str
    """What to call it in messages, e.g. ``127.0.0.1:5000/me/cache``."""
    writable: bool

    def lookup(self, asked: list[tuple[str, str, bytes | None]]) -> dict[str, Hit | Miss]:
        """For each (key, action digest, entry kept from before or None): hit or miss.

        The action digest is :func:`action_digest` of the node's inputs, which a hit's entry
        must name: keys are xxh3, not collision-resistant. Never raises for an unreachable
        server (that is a miss, said once).
        """
        ...

    def fetch(self, entry: bytes, name: str, dest: Path) -> int:
        """Write output ``name`` of ``entry`` to the new file ``dest``; returns the bytes
        downloaded. Raises :class:`LostError` when that cannot be done."""
        ...

    def upload(self, key: str, action: str, outputs: Mapping[str, tuple[str, int, Path]]) -> bool:
        """Store the result of a node run here: name -> (digest, size, file); False if it
        was there already or could not be sent. Never raises for the server's sake: a
        failed upload is a warning."""
        ...


Factory = Callable[[Mapping[str, str]], "RemoteCache | None"]
_factory: Factory | None = None


def provide(factory: Factory) -> None:
    """Install what makes a remote cache from the environment (the front end's)."""
    global _factory
    _factory = factory


def from_environment(environ: Mapping[str, str]) -> RemoteCache | None:
    return _factory(environ) if _factory is not None else None


def action_digest(encoded: str) -> str:
    """SHA-256 of a node's encoded inputs: what a remote entry must have been made from."""
    return hashlib.sha256(encoded.encode()).hexdigest()


def fetch_object(cache: RemoteCache, store: Store, entry: bytes, name: str, digest: str) -> int:
    """Put output ``name`` of ``entry`` into ``store``'s CAS, checked against the
    ``digest`` the entry claims; returns the bytes downloaded. LostError if it cannot."""
    with store.scratch(reuse=False) as scratch:
        path = scratch / "out" / "fetched"
        count = cache.fetch(entry, name, path)
        got, _size = store.put_file(path)
    if got != digest:
        raise LostError(f"the remote cache's {name} is {got}, not the {digest} its entry claims")
    return count
