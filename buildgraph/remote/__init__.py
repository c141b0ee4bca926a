"""The remote cache on an OCI registry: its settings, and the engine's factory for it.

One table of settings (environment variables) drives parsing, validation and the README.
Making the cache from them is cheap: the registry code, ``cryptography`` and ``zstandard``
are imported at the first request, so a no-op build that asks the remote nothing pays
nothing for having one configured.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.errors import BuildgraphError
from ..engine.remote import Hit, Miss, RemoteCache
from ..engine.variables import Rejected, boolean

if TYPE_CHECKING:
    from .registry_cache import RegistryCache


@dataclass(frozen=True)
class Setting:
    name: str
    help: str
    check: Callable[[str], Any]


def _where(text: str) -> Any:
    from ..oci.reference import parse

    try:
        ref = parse(text)
    except ValueError as err:
        raise Rejected(f"<registry>/<repository> ({err})") from None
    if ref.is_local or "@" in text or text.rfind(":") > text.rfind("/"):
        raise Rejected("<registry>/<repository>, with no tag or digest, on a registry host")
    return ref


def _key_file(text: str) -> Path:
    path = Path(text).expanduser()
    if not os.access(path, os.R_OK) or not path.is_file():
        raise Rejected("a readable ed25519 private key file (`buildgraph cache keygen FILE`)")
    return path


def _trust(text: str) -> list[str]:
    return [word.strip() for word in text.replace(" ", ",").split(",") if word.strip()]


SETTINGS = (
    Setting("BUILDGRAPH_REMOTE_CACHE", "registry repository of the shared cache", _where),
    Setting(
        "BUILDGRAPH_REMOTE_CACHE_KEY",
        "the ed25519 key that signs uploads (unset: read-only)",
        _key_file,
    ),
    Setting(
        "BUILDGRAPH_REMOTE_CACHE_TRUST",
        "public keys whose entries are trusted, a comma list (unset: the signing key's own)",
        _trust,
    ),
    Setting(
        "BUILDGRAPH_REMOTE_CACHE_REQUIRED",
        "fail, not build locally, when it is unreachable",
        lambda text: boolean(text) == "true",
    ),
)


def settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """The checked values of the settings that are set; one error names a bad one."""
    values = {}
    for setting in SETTINGS:
        text = environ.get(setting.name, "")
        if not text:
            continue
        try:
            values[setting.name] = setting.check(text)
        except Rejected as err:
            raise BuildgraphError(
                f"{setting.name}={text!r} is not valid", hint=f"give {err}: {setting.help}"
            ) from None
    return values


class Remote:
    """The engine's :class:`~buildgraph.engine.remote.RemoteCache`, made on first use."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.where = str(values["BUILDGRAPH_REMOTE_CACHE"]).removesuffix(":latest")
        self.writable = "BUILDGRAPH_REMOTE_CACHE_KEY" in values
        self._impl: RegistryCache | None = None

    def _cache(self) -> RegistryCache:
        if self._impl is None:
            from .registry_cache import RegistryCache

            self._impl = RegistryCache(self.values)
        return self._impl

    def lookup(self, asked: list[tuple[str, str, bytes | None]]) -> dict[str, Hit | Miss]:
        return self._cache().lookup(asked)

    def fetch(self, entry: bytes, name: str, dest: Path) -> int:
        return self._cache().fetch(entry, name, dest)

    def upload(self, key: str, action: str, outputs: Mapping[str, tuple[str, int, Path]]) -> bool:
        return self._cache().upload(key, action, outputs)

    def registry(self) -> RegistryCache:
        """The registry side itself, for ``buildgraph cache prune-remote``."""
        return self._cache()


def add_flag(parser: Any) -> None:
    """``--remote-cache`` on a command that builds: BUILDGRAPH_REMOTE_CACHE for this run."""
    parser.add_argument(
        "--remote-cache",
        metavar="REGISTRY/REPO",
        help="share built outputs through this registry repository (BUILDGRAPH_REMOTE_CACHE)",
    )


def apply_flag(args: Any) -> None:
    if getattr(args, "remote_cache", None):
        os.environ["BUILDGRAPH_REMOTE_CACHE"] = args.remote_cache


def from_environment(environ: Mapping[str, str]) -> RemoteCache | None:
    if not environ.get("BUILDGRAPH_REMOTE_CACHE"):
        return None
    return Remote(settings(environ))
