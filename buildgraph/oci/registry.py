"""Pull images from an OCI registry into the embedded store, over the distribution API.

Package images may live in a registry (``PKGS_PREFIX=ghcr.io/...``). A build first
resolves each mutable tag to a digest (:func:`resolve_digest`, so the digest enters the
node keys), then pulls the one architecture it needs (:func:`pull`) into a
:class:`~buildgraph.oci.layout.Layout`, verifying every manifest and blob against its
sha256. Stdlib only: urllib speaks HTTPS (HTTP only to loopback registries), anonymous,
basic and bearer-token auth. :mod:`buildgraph.oci.push` sends images the other way with the
same :class:`Client`.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..engine.errors import BuildgraphError
from .layout import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    INDEX_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    DigestMismatchError,
    Layout,
    LayoutError,
    pick_platform,
    platform_name,
)
from .reference import DOCKER_HUB, Reference, is_loopback, split_host_port

TIMEOUT = 30.0
ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))
USER_AGENT = "buildgraph/0.1"
_MAX_MANIFEST = 4 << 20
_LOGIN_HINT = (
    "check the image name; if the repository is private, put credentials for {host} in "
    "$REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json or ~/.docker/config.json "
    "(`skopeo login {host}` or `docker login {host}` writes them; GITHUB_TOKEN works for ghcr.io)"
)
_PUSH_HINT = (
    "log in with an account that may push to this repository: put credentials for {host} in "
    "$REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json or ~/.docker/config.json "
    "(`skopeo login {host}` or `docker login {host}` writes them; on ghcr.io a GITHUB_TOKEN "
    "needs the write:packages permission)"
)
_CERT_DIRS = (
    "~/.config/containers/certs.d",
    "/etc/containers/certs.d",
    "/etc/docker/certs.d",
)

Credentials = Callable[[str], tuple[str, str] | None]
Body = bytes | Callable[[], IO[bytes]]
"""A request body: bytes, or a function opening a fresh stream (a retry after a 401 sends
the body again, and a stream cannot be rewound by the HTTP library)."""
PULL = "pull"
PUSH = "pull,push"


class RegistryError(BuildgraphError):
    """A registry that cannot be reached, refuses access, or serves something else."""


class MismatchError(RegistryError):
    """A manifest or blob that is not the bytes its digest names."""


class NotFoundError(RegistryError):
    """The registry has no such repository, tag, manifest or blob (HTTP 404)."""


# -- credentials ---------------------------------------------------------------------------


def _auth_files() -> list[Path]:
    files = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("DOCKER_CONFIG"):
        files.append(Path(os.environ["DOCKER_CONFIG"]) / "config.json")
    files.append(Path("~/.docker/config.json").expanduser())
    return files


def _aliases(host: str) -> set[str]:
    if host in (DOCKER_HUB, "index.docker.io", "registry-1.docker.io"):
        return {DOCKER_HUB, "index.docker.io", "registry-1.docker.io"}
    return {host}


def _auth_key(key: str) -> str:
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme) :]
    return key.split("/", 1)[0]


def credentials(host: str) -> tuple[str, str] | None:
    """(user, password) for a registry host, or None for anonymous access.

    Looks in ``$REGISTRY_AUTH_FILE``, ``$DOCKER_CONFIG/config.json`` and
    ``~/.docker/config.json`` (``auths.<host>.auth``, base64 ``user:password``), first file
    with an entry wins; then ``GITHUB_TOKEN`` for ghcr.io. Credential helpers are not run.
    """
    wanted = _aliases(host)
    for path in _auth_files():
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            raise RegistryError(
                f"registry credentials file {path} is not readable JSON",
                hint="fix or remove it (it is read for registry logins)",
            ) from None
        auths = data.get("auths") if isinstance(data, dict) else None
        for key, entry in (auths or {}).items():
            if _auth_key(key) not in wanted or not isinstance(entry, dict):
                continue
            if entry.get("auth"):
                try:
                    user, sep, password = (
                        base64.b64decode(entry["auth"], validate=True).decode().partition(":")
                    )
                except (ValueError, UnicodeDecodeError):
                    sep = ""
                if not sep:
                    raise RegistryError(
                        f"the credentials for {host} in {path} are not base64 of user:password",
                        hint=f"log in to {host} again",
                    )
                return user, password
            if entry.get("username") and entry.get("password"):
                return str(entry["username"]), str(entry["password"])
    if host == "ghcr.io" and os.environ.get("GITHUB_TOKEN"):
        return os.environ.get("GITHUB_ACTOR") or "buildgraph", os.environ["GITHUB_TOKEN"]
    return None


# -- HTTP ----------------------------------------------------------------------------------


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows blob redirects (CDNs), but never from HTTPS down to plain HTTP."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        old = urllib.parse.urlsplit(req.full_url)
        new = urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, newurl))
        if old.scheme == "https" and new.scheme != "https":
            raise urllib.error.HTTPError(
                req.full_url, code, "refused a redirect from HTTPS to plain HTTP", headers, fp
            )
        # Authorization is added as an unredirected header: it never follows to another host.
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    key = ""
    i = 0
    # key="value", key=value, comma separated; values may hold commas inside quotes.
    while i < len(rest):
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip(" ,").lower()
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            end = rest.find('"', i + 1)
            end = len(rest) if end < 0 else end
            params[key] = rest[i + 1 : end]
            i = end + 1
        else:
            end = rest.find(",", i)
            end = len(rest) if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
        i += 1 if i < len(rest) and rest[i] == "," else 0
    return scheme.lower(), params


def _merged_scopes(challenged: str | None, repository: str, actions: str) -> list[str]:
    """The token scopes to ask for: the challenge's, with ``actions`` added for ``repository``.

    A registry's challenge names what the failed request needed (``pull`` for a HEAD); a
    push asks for ``pull,push`` at once, so one token serves all of its requests.
    """
    wanted = actions.split(",")
    scopes = (challenged or "").split()
    merged = False
    for number, scope in enumerate(scopes):
        kind, _, rest = scope.partition(":")
        name, _, have = rest.rpartition(":")
        if kind == "repository" and name == repository and "*" not in have.split(","):
            union = sorted({*have.split(","), *wanted} - {""})
            scopes[number] = f"repository:{repository}:{','.join(union)}"
            merged = True
    if not merged:
        scopes.append(f"repository:{repository}:{actions}")
    return scopes


def _error_codes(body: bytes) -> str:
    try:
        errors = json.loads(body).get("errors") or []
        return ", ".join(str(e.get("code", "")).lower().replace("_", " ") for e in errors)
    except (ValueError, AttributeError):
        return ""


def failure_detail(response: http.client.HTTPResponse) -> str:
    """``HTTP 400 Bad Request (digest invalid)``: the status and the registry's error codes.

    Reads (a bounded part of) the body and closes the response. Registry error bodies hold
    codes and messages about the request, never the credentials sent with it.
    """
    try:
        body = response.read(64 << 10)
    except (OSError, http.client.HTTPException):
        body = b""
    response.close()
    codes = _error_codes(body)
    reason = f" {response.reason}" if getattr(response, "reason", "") else ""
    return f"HTTP {response.status}{reason}" + (f" ({codes})" if codes else "")


def _reason(err: BaseException) -> str:
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return "host name not found"
    if isinstance(reason, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"its TLS certificate is not trusted ({reason.verify_message})"
    if isinstance(reason, ssl.SSLError):
        return f"TLS failed ({reason.reason or reason})"
    if isinstance(reason, http.client.HTTPException | ConnectionError):
        return f"the connection broke ({type(reason).__name__})"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason)


class Client:
    """Talks to registries; remembers each host's scheme and each repository's token."""

    def __init__(
        self,
        *,
        timeout: float = TIMEOUT,
        credentials: Credentials = credentials,
        ca_file: Path | None = None,
    ) -> None:
        self.timeout = timeout
        self.credentials = credentials
        self.ca_file = ca_file
        self._openers: dict[str, urllib.request.OpenerDirector] = {}
        self._schemes: dict[str, str] = {}
        self._auth: dict[tuple[str, str], str] = {}

    # connection plumbing

    @staticmethod
    def endpoint(ref: Reference) -> str:
        """host[:port] the API is served from (docker.io is registry-1.docker.io)."""
        return "registry-1.docker.io" if ref.registry == DOCKER_HUB else ref.registry

    def _context(self, registry: str) -> ssl.SSLContext:
        if self.ca_file is not None:
            context = ssl.create_default_context(cafile=str(self.ca_file))
        else:
            context = ssl.create_default_context()
        for base in _CERT_DIRS:
            directory = Path(base).expanduser() / registry
            if directory.is_dir():
                for cert in sorted(directory.glob("*.crt")):
                    context.load_verify_locations(cafile=str(cert))
        return context

    def _opener(self, registry: str) -> urllib.request.OpenerDirector:
        opener = self._openers.get(registry)
        if opener is None:
            handlers: list[Any] = [
                urllib.request.HTTPSHandler(context=self._context(registry)),
                _RedirectHandler(),
            ]
            if is_loopback(split_host_port(registry)[0]):
                handlers.append(urllib.request.ProxyHandler({}))
            opener = self._openers[registry] = urllib.request.build_opener(*handlers)
        return opener

    def _raw_send(
        self,
        ref: Reference,
        method: str,
        url: str,
        headers: dict[str, str],
        authorization: str | None,
        data: bytes | IO[bytes] | None = None,
    ) -> http.client.HTTPResponse:
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        request.add_header("User-Agent", USER_AGENT)
        if authorization:
            request.add_unredirected_header("Authorization", authorization)
        try:
            return self._opener(self.endpoint(ref)).open(request, timeout=self.timeout)
        except urllib.error.HTTPError as err:
            return err  # type: ignore[return-value]  # an HTTPError is a response too

    def _send(
        self,
        ref: Reference,
        method: str,
        url: str,
        headers: dict[str, str],
        authorization: str | None,
        body: Body | None = None,
    ) -> http.client.HTTPResponse:
        data = body() if callable(body) else body
        try:
            return self._raw_send(ref, method, url, headers, authorization, data)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            raise self.unreachable(ref, err) from None
        finally:
            if data is not None and not isinstance(data, bytes):
                data.close()

    def unreachable(self, ref: Reference, err: BaseException) -> RegistryError:
        host = self.endpoint(ref)
        return RegistryError(
            f"cannot reach registry {host} for {ref}: {_reason(err)}",
            hint=(
                f"check that {ref.registry} is the right registry, that it is running and "
                "reachable from here (network, proxy, firewall); to trust a private CA set "
                f"SSL_CERT_FILE or put it in /etc/containers/certs.d/{ref.registry}/ca.crt"
            ),
        )

    def scheme(self, ref: Reference) -> str:
        """https, except for a loopback registry that turns out to speak plain HTTP."""
        host = self.endpoint(ref)
        if not ref.plain_http:
            return "https"
        known = self._schemes.get(host)
        if known is None:
            # A loopback registry may speak either; plain HTTP is tried first because a TLS
            # server answers it at once, while a plain server may wait on a TLS hello.
            try:
                with self._raw_send(ref, "GET", f"http://{host}/v2/", {}, None) as response:
                    plain = response.status != 400  # what a TLS server says to plain HTTP
            except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
                reason = err.reason if isinstance(err, urllib.error.URLError) else err
                if isinstance(reason, ConnectionRefusedError | socket.gaierror | TimeoutError):
                    raise self.unreachable(ref, err) from None
                plain = False  # the connection broke: a TLS server that hung up on us
            known = self._schemes[host] = "http" if plain else "https"
        return known

    def base_url(self, ref: Reference) -> str:
        """``https://host[:port]`` (or ``http://`` for a plain loopback registry)."""
        return f"{self.scheme(ref)}://{self.endpoint(ref)}"

    def open(
        self,
        ref: Reference,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        *,
        body: Body | None = None,
        actions: str = PULL,
    ) -> http.client.HTTPResponse:
        """One API request with auth; the response may carry any status: callers check it.

        ``actions`` is what a bearer token is asked for (``PUSH`` for uploads), and
        ``body`` is sent again if the first answer is a 401. A registry may answer a streamed
        body's 401 before reading it and hang up (a broken connection, not a retry): send a
        request without a body first (a push HEADs and POSTs before each blob's PUT).
        """
        headers = headers or {}
        host = self.endpoint(ref)
        url = self.base_url(ref) + path
        key = (host, ref.repository)
        response = self._send(ref, method, url, headers, self._auth.get(key), body)
        if response.status != 401:
            return response
        challenge = response.headers.get("WWW-Authenticate", "")
        response.close()
        authorization = self._authorize(ref, challenge, actions)
        if authorization is None:
            raise self.unauthorized(ref, 401, actions)
        self._auth[key] = authorization
        return self._send(ref, method, url, headers, authorization, body)

    # auth

    def _authorize(self, ref: Reference, challenge: str, actions: str = PULL) -> str | None:
        scheme, params = _parse_challenge(challenge)
        creds = self.credentials(ref.registry)
        if scheme == "basic":
            if creds is None:
                return None
            return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
        if scheme != "bearer" or not params.get("realm"):
            return None
        realm = urllib.parse.urlsplit(params["realm"])
        if realm.scheme not in ("http", "https") or not realm.hostname:
            return None
        if realm.scheme == "http" and not is_loopback(realm.hostname):
            creds = None  # never send a password in clear text
        scopes = _merged_scopes(params.get("scope"), ref.repository, actions)
        query = [("scope", scope) for scope in scopes]
        if params.get("service"):
            query.insert(0, ("service", params["service"]))
        sep = "&" if realm.query else "?"
        url = params["realm"] + sep + urllib.parse.urlencode(query)
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        if creds is not None:
            basic = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            request.add_unredirected_header("Authorization", "Basic " + basic)
        try:
            with self._opener(realm.netloc).open(request, timeout=self.timeout) as response:
                data = json.loads(response.read(_MAX_MANIFEST))
        except urllib.error.HTTPError as err:
            err.close()
            if err.code in (401, 403):
                raise self.unauthorized(ref, err.code, actions) from None
            raise RegistryError(
                f"the token service of {ref.registry} ({realm.netloc}) answered HTTP "
                f"{err.code} for {ref}",
                hint="retry later; if it persists, check the registry's status",
            ) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            raise RegistryError(
                f"cannot reach the token service {realm.netloc} of {ref.registry} for {ref}: "
                f"{_reason(err)}",
                hint="check the network and proxy settings",
            ) from None
        except ValueError:
            raise RegistryError(
                f"the token service of {ref.registry} ({realm.netloc}) sent no JSON for {ref}"
            ) from None
        token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        if not token:
            raise RegistryError(
                f"the token service of {ref.registry} ({realm.netloc}) sent no token for {ref}"
            )
        return f"Bearer {token}"

    def unauthorized(self, ref: Reference, status: int, actions: str = PULL) -> RegistryError:
        """Access denied (after auth, if any): names the registry and whose credentials."""
        who = "with the configured credentials" if self.credentials(ref.registry) else "anonymously"
        if "push" in actions.split(","):
            return RegistryError(
                f"registry {ref.registry} refused push access to {ref} {who} (HTTP {status})",
                hint=_PUSH_HINT.format(host=ref.registry),
            )
        return RegistryError(
            f"registry {ref.registry} refused access to {ref} {who} (HTTP {status})",
            hint=_LOGIN_HINT.format(host=ref.registry),
        )

    # API

    def check(self, ref: Reference, response: http.client.HTTPResponse, what: str) -> None:
        if response.status in (200, 203):
            return
        body = response.read(64 << 10) if response.status >= 400 else b""
        response.close()
        codes = _error_codes(body)
        detail = f" ({codes})" if codes else ""
        if response.status in (401, 403):
            raise self.unauthorized(ref, response.status)
        if response.status == 404:
            raise NotFoundError(
                f"registry {ref.registry} has no {what} for {ref}{detail}",
                hint="check the repository name and tag (or digest); "
                "`skopeo list-tags docker://" + ref.name + "` lists the tags",
            )
        raise RegistryError(
            f"registry {ref.registry} answered HTTP {response.status} for the {what} of "
            f"{ref}{detail}",
            hint="retry later; if it persists, check the registry's logs or status page",
        )

    def manifest(self, ref: Reference, reference: str) -> tuple[bytes, str, str]:
        """(body, media type, digest) of a manifest or index, verified against its digest."""
        path = f"/v2/{ref.repository}/manifests/{reference}"
        response = self.open(ref, "GET", path, {"Accept": ACCEPT})
        self.check(ref, response, "manifest")
        with response:
            try:
                body = response.read(_MAX_MANIFEST + 1)
            except (OSError, http.client.HTTPException) as err:
                raise self.unreachable(ref, err) from None
            header_digest = response.headers.get("Docker-Content-Digest")
            content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
        if len(body) > _MAX_MANIFEST:
            raise RegistryError(f"the manifest of {ref} in {ref.registry} is larger than 4 MiB")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise self.mismatch(ref, reference, digest, "manifest")
        if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
            raise self.mismatch(ref, header_digest, digest, "manifest")
        try:
            doc = json.loads(body)
        except ValueError:
            raise RegistryError(f"the manifest of {ref} in {ref.registry} is not JSON") from None
        media_type = (doc.get("mediaType") if isinstance(doc, dict) else None) or content_type
        return body, media_type, digest

    def tags(self, ref: Reference) -> list[str]:
        """The tags of ``ref``'s repository, as the registry lists them (all pages)."""
        path, tags = f"/v2/{ref.repository}/tags/list?n=1000", []
        while path:
            response = self.open(ref, "GET", path)
            self.check(ref, response, "tag list")
            with response:
                try:
                    doc = json.loads(response.read(_MAX_MANIFEST + 1))
                except (OSError, http.client.HTTPException) as err:
                    raise self.unreachable(ref, err) from None
                except ValueError:
                    raise RegistryError(f"the tag list of {ref} is not JSON") from None
                link = response.headers.get("Link", "")
            tags += [str(tag) for tag in doc.get("tags") or []]
            path = link.partition("<")[2].partition(">")[0] if 'rel="next"' in link else ""
        return tags

    def head_digest(self, ref: Reference) -> str | None:
        """The manifest digest from a HEAD request, or None if the registry does not say."""
        path = f"/v2/{ref.repository}/manifests/{ref.reference}"
        response = self.open(ref, "HEAD", path, {"Accept": ACCEPT})
        if response.status in (404, 401, 403):
            self.check(ref, response, "manifest")
        with response:
            digest = response.headers.get("Docker-Content-Digest")
            ok = response.status == 200
        if ok and digest and digest.startswith("sha256:") and len(digest) == 71:
            return digest
        return None

    def fetch_blob(self, ref: Reference, descriptor: dict[str, Any], dest: Layout) -> Descriptor:
        """Stream one blob into ``dest``, checking its sha256 and size."""
        digest = str(descriptor["digest"])
        media_type = str(descriptor.get("mediaType", "application/octet-stream"))
        if dest.has_blob(digest):
            return Descriptor(media_type, digest, dest.blob_path(digest).stat().st_size)
        response = self.open(ref, "GET", f"/v2/{ref.repository}/blobs/{digest}")
        self.check(ref, response, f"blob {digest}")
        with response:
            try:
                return dest.put_blob_stream(
                    response, media_type, expected=digest, size=descriptor.get("size")
                )
            except DigestMismatchError as err:
                raise self.mismatch(ref, err.expected, err.actual, "blob") from None
            except LayoutError as err:
                raise RegistryError(
                    f"registry {ref.registry} served a bad blob for {ref}: {err.message}",
                    hint="retry the pull; if it persists the registry's storage is damaged",
                ) from None
            except (OSError, http.client.HTTPException) as err:
                raise self.unreachable(ref, err) from None

    def mismatch(self, ref: Reference, expected: str, actual: str, what: str) -> RegistryError:
        return MismatchError(
            f"digest mismatch for the {what} of {ref} from registry {ref.registry}: "
            f"expected {expected}, got {actual}",
            hint="if the reference pins a digest, check it (the tag may have moved); otherwise "
            "the registry or something between us and it served other bytes",
        )


# -- the two operations ----------------------------------------------------------------------


def _remote(ref: Reference) -> None:
    if ref.is_local:
        raise RegistryError(
            f"{ref} names the embedded OCI store, not a registry",
            hint="read it with buildgraph.oci.layout.Layout, or name a registry host",
        )


def resolve_digest(ref: Reference, *, client: Client | None = None) -> str:
    """The digest a reference names now: its pinned digest, else the registry's answer.

    HEAD the manifest (Docker-Content-Digest), falling back to GET and hashing the body.
    """
    _remote(ref)
    if ref.digest:
        return ref.digest
    client = client or Client()
    digest = client.head_digest(ref)
    if digest is None:
        _, _, digest = client.manifest(ref, ref.reference)
    return digest


def pull(
    ref: Reference,
    arch: str,
    dest: Layout,
    store_as: str | None = None,
    *,
    client: Client | None = None,
) -> str:
    """Fetch ``ref``'s linux/``arch`` image into ``dest``; return the top-level digest.

    The top-level manifest or index is stored as served (its digest is the image's
    identity), with only the ``arch`` image's manifest, config and layers fetched; pulling
    another arch of the same ref later completes it. Blobs ``dest`` has are not fetched.
    The ref name in ``dest`` is ``store_as`` or ``str(ref)``; it is set last, so an
    interrupted pull leaves no ref to missing blobs.
    """
    _remote(ref)
    client = client or Client()
    try:
        body, media_type, top_digest = client.manifest(ref, ref.reference)
    except NotFoundError:
        if not (ref.digest and ref.tag):
            raise
        # name:tag@digest whose digest the registry lacks: say what the tag is now.
        current = resolve_digest(Reference(ref.registry, ref.repository, ref.tag), client=client)
        raise client.mismatch(ref, ref.digest, current, f"tag {ref.tag}") from None
    doc = json.loads(body)
    if doc.get("schemaVersion") != 2:
        raise RegistryError(
            f"{ref} in {ref.registry} is a schema {doc.get('schemaVersion')} manifest",
            hint="only OCI and Docker schema 2 images are supported; push it again with a "
            "current tool",
        )
    manifests: list[tuple[bytes, str]] = []
    if media_type in INDEX_TYPES or "manifests" in doc:
        entry = pick_platform(doc.get("manifests") or [], arch)
        if entry is None:
            have = sorted(
                {
                    platform_name(m.get("platform") or {})
                    for m in doc.get("manifests") or []
                    if (m.get("platform") or {}).get("os") != "unknown"
                }
            )
            raise RegistryError(
                f"{ref} in registry {ref.registry} has no linux/{arch} image "
                f"(it has: {', '.join(have) or 'none'})",
                hint="pick an architecture it has (PLATFORM=...), or push the missing one",
            )
        child_body, child_type, _ = client.manifest(ref, entry["digest"])
        manifest = json.loads(child_body)
        manifests.append((child_body, child_type))
    else:
        manifest = doc
    config_desc = manifest.get("config") or {}
    if not config_desc.get("digest"):
        raise RegistryError(f"the manifest of {ref} in {ref.registry} names no config")
    config = client.fetch_blob(ref, config_desc, dest)
    config_doc = dest.read_json(config.digest)
    if config_doc.get("architecture") != arch:
        raise RegistryError(
            f"{ref} in registry {ref.registry} has no linux/{arch} image "
            f"(it has: {platform_name(config_doc)})",
            hint="pick an architecture it has (PLATFORM=...), or push the missing one",
        )
    for layer in manifest.get("layers") or []:
        client.fetch_blob(ref, layer, dest)
    for data, kind in manifests:
        dest.put_blob(data, kind)
    top = dest.put_blob(body, media_type)
    assert top.digest == top_digest
    dest.set_ref(store_as or str(ref), top)
    return top_digest
