"""Image references: ``[registry/]repository[:tag][@sha256:<hex>]``, parsed like docker does.

Package pins, ``PKGS_PREFIX`` and pushed image names are all references; one parser gives
them one meaning. The first path component ``local`` names the embedded OCI store instead
of a registry. A reference also says whether its registry may be spoken to over plain HTTP:
only loopback hosts may, and hosts the user names in ``BUILDGRAPH_INSECURE_REGISTRIES``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

LOCAL = "local"
"""The registry name of the embedded store (``local/pkgs/kernel:latest``)."""
DOCKER_HUB = "docker.io"
INSECURE_ENV = "BUILDGRAPH_INSECURE_REGISTRIES"
MAX_PORT = 65535

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?"
)


@dataclass(frozen=True)
class Reference:
    """A parsed image reference; ``str()`` gives it back in full (registry included)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def name(self) -> str:
        """``registry/repository``, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def is_local(self) -> bool:
        """True for the embedded store (``local/...``)."""
        return self.registry == LOCAL

    @property
    def host(self) -> str:
        """The registry host without its port (brackets of an IPv6 address removed)."""
        return split_host_port(self.registry)[0]

    @property
    def plain_http(self) -> bool:
        """True for loopback registries and those the user allows by name in
        ``BUILDGRAPH_INSECURE_REGISTRIES`` (comma-separated host[:port]); every other
        registry is spoken to over HTTPS only."""
        if self.is_local:
            return False
        allowed = os.environ.get(INSECURE_ENV, "").replace(" ", "").split(",")
        return is_loopback(self.host) or self.registry in allowed or self.host in allowed

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/`` in the distribution API: the digest, else the tag."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> Reference:
        """The same name pinned to ``digest`` (the tag is kept for readability)."""
        if not _DIGEST.fullmatch(digest):
            raise ValueError(f"bad digest {digest!r}: expected sha256:<64 lowercase hex>")
        return Reference(self.registry, self.repository, self.tag, digest)


def split_host_port(registry: str) -> tuple[str, int | None]:
    """``"[::1]:5000"`` -> ``("::1", 5000)``; ``"ghcr.io"`` -> ``("ghcr.io", None)``."""
    if registry.startswith("["):
        host, _, rest = registry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    host, sep, port = registry.rpartition(":")
    if sep and port.isdigit():
        return host, int(port)
    return registry, None


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 and ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse(text: str) -> Reference:
    """Parse an image reference, with docker's defaults (docker.io, ``library/``, ``latest``).

    Raises ``ValueError`` naming the reference and what is wrong with it.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty image reference")
    if text != text.strip() or any(c.isspace() for c in text):
        raise ValueError(f"bad image reference {text!r}: it contains whitespace")
    rest, at, digest = text.partition("@")
    digest_or_none: str | None = None
    if at:
        if not _DIGEST.fullmatch(digest):
            raise ValueError(
                f"bad image reference {text!r}: digest {digest!r} is not sha256:<64 lowercase hex>"
            )
        digest_or_none = digest
    tag: str | None = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise ValueError(
                f"bad image reference {text!r}: tag {tag!r} must be 1-128 characters of "
                "letters, digits, '_', '.' and '-', not starting with '.' or '-'"
            )
    parts = rest.split("/")
    first = parts[0]
    if len(parts) > 1 and (("." in first or ":" in first) or first == "localhost"):
        if not _HOST.fullmatch(first):
            raise ValueError(f"bad image reference {text!r}: bad registry host {first!r}")
        port = split_host_port(first)[1]
        if port is not None and not 1 <= port <= MAX_PORT:
            raise ValueError(
                f"bad image reference {text!r}: port {port} of {first!r} is not 1..{MAX_PORT}"
            )
        registry, path = first, parts[1:]
    elif len(parts) > 1 and first == LOCAL:
        registry, path = LOCAL, parts[1:]
    else:
        registry = DOCKER_HUB
        path = ["library", *parts] if len(parts) == 1 else parts
    for component in path:
        if not component:
            raise ValueError(f"bad image reference {text!r}: empty path component")
        if component != component.lower() and _COMPONENT.fullmatch(component.lower()):
            raise ValueError(
                f"bad image reference {text!r}: repository {'/'.join(path)!r} must be lowercase"
            )
        if not _COMPONENT.fullmatch(component):
            raise ValueError(
                f"bad image reference {text!r}: bad repository component {component!r} "
                "(lowercase letters and digits, separated by '.', '_', '__' or '-')"
            )
    repository = "/".join(path)
    if len(f"{registry}/{repository}") > 255:
        raise ValueError(f"bad image reference {text!r}: name longer than 255 characters")
    if tag is None and digest_or_none is None:
        tag = "latest"
    return Reference(registry, repository, tag, digest_or_none)


def is_tag(text: str) -> bool:
    """Whether ``text`` is a tag: 1-128 of letters, digits, '_', '.', '-', not led by '.', '-'."""
    return _TAG.fullmatch(text) is not None


def is_component(text: str) -> bool:
    """Whether ``text`` is one repository path component, such as a user name."""
    return _COMPONENT.fullmatch(text) is not None


def registry_of(text: str) -> str:
    """``text`` if it is a registry (``host[:port]``, or ``local``) as references name it:
    the registry of ``text/name``. Raises ``ValueError`` saying why not."""
    found = parse(f"{text}/name").registry
    if found != text:
        raise ValueError(f"{text!r} is read as a repository of {found}, not as a registry")
    return text
