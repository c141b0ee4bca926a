"""Start a real registry (CNCF Distribution, ``docker-registry``) on 127.0.0.1 for tests.

Pull and push tests talk to the same server users run, not to a fake. Modes:

- plain HTTP, anonymous (the default);
- ``tls=True``: HTTPS with a certificate made here for 127.0.0.1 (``RunningRegistry.ca_file``);
- ``auth="htpasswd"``: basic auth (the ``htpasswd`` program, Debian package apache2-utils);
- ``auth="token"``: bearer-token auth, the flow Docker Hub and ghcr.io use, with a small
  token service run here that signs JWTs (``openssl``) for ``username``/``password``;
- ``access_log=True``: the registry logs each request, so a test can count them from the
  server's side (:meth:`RunningRegistry.requests`);
- ``readonly=True``: the registry's maintenance mode, which refuses every upload.

Use :func:`serve_registry` as a context manager; it yields a :class:`RunningRegistry`.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REGISTRY = "/usr/bin/docker-registry"
SERVICE = "buildgraph-test-registry"
ISSUER = "buildgraph-test-issuer"


@dataclass
class RunningRegistry:
    host: str
    """``127.0.0.1:<port>``: what goes in front of a repository in a reference."""
    root: Path
    tls: bool = False
    ca_file: Path | None = None
    username: str | None = None
    password: str | None = None
    token_requests: list[str] = field(default_factory=list)
    """The scope of each token request the token service answered (token mode)."""
    log: Path | None = None

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path with query, status) of each request so far, from the registry's own
        access log (``access_log=True``), oldest first."""
        assert self.log is not None
        return [
            (m["method"], m["path"], int(m["status"]))
            for m in _ACCESS_LINE.finditer(self.log.read_text(errors="replace"))
        ]

    def __str__(self) -> str:
        return self.host

    def skopeo_dest_args(self) -> list[str]:
        """Flags for ``skopeo copy`` pushing here."""
        args = ["--dest-tls-verify=false"]
        if self.username:
            args.append(f"--dest-creds={self.username}:{self.password}")
        return args

    def write_auth_file(self, path: Path, password: str | None = None) -> Path:
        """A docker-style auth file for this registry (for ``REGISTRY_AUTH_FILE``)."""
        secret = f"{self.username}:{password if password is not None else self.password}"
        auth = base64.b64encode(secret.encode()).decode()
        path.write_text(json.dumps({"auths": {self.host: {"auth": auth}}}))
        return path


_ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>[0-9]{3}) ')


def require_tools(*names: str) -> None:
    """Fail the calling test, naming the tool, when one it needs is missing (never skip:
    CI runs every test, and ./setup.sh installs them all)."""
    for name in names:
        if not (Path(name).exists() if name.startswith("/") else shutil.which(name)):
            pytest.fail(f"{name} is not installed: run ./setup.sh")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def non_loopback_listener() -> Iterator[tuple[str, list[bytes]]]:
    """A socket on this machine's non-loopback IPv4 address that records the first bytes
    a client sends: ``(host:port, [first bytes])``, filled once the block has ended."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.123", 9))  # no packet is sent: this only picks a route
        except OSError:
            pytest.fail("this machine has no non-loopback IPv4 address to test with")
        address = probe.getsockname()[0]
    assert not address.startswith("127."), "no non-loopback IPv4 address to test with"
    first_bytes: list[bytes] = []
    with socket.socket() as server:
        server.bind((address, 0))
        server.listen(1)
        server.settimeout(10)

        def accept() -> None:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(5)
                first_bytes.append(conn.recv(16))

        thread = threading.Thread(target=accept)
        thread.start()
        yield f"{address}:{server.getsockname()[1]}", first_bytes
        thread.join()


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert.pem, key.pem)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
            "-days", "2", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _TokenService:
    """Issues registry JWTs (RS256, x5c header) to clients that know the password."""

    def __init__(self, server: RunningRegistry, cert: Path, key: Path) -> None:
        self.registry = server
        self.key = key
        der = ssl.PEM_cert_to_DER_cert(cert.read_text())
        self.x5c = base64.b64encode(der).decode()
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                service.answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def answer(self, request: http.server.BaseHTTPRequestHandler) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
        scopes = query.get("scope", [])
        self.registry.token_requests.extend(scopes)
        given = request.headers.get("Authorization", "")
        expected = f"{self.registry.username}:{self.registry.password}".encode()
        if given != "Basic " + base64.b64encode(expected).decode():
            request.send_response(401)
            request.send_header("Content-Type", "application/json")
            request.end_headers()
            request.wfile.write(b'{"details":"bad credentials"}')
            return
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": self.registry.username,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        header = {"alg": "RS256", "typ": "JWT", "x5c": [self.x5c]}
        encoded = (_b64url(json.dumps(part).encode()) for part in (header, claims))
        signing_input = ".".join(encoded)
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            capture_output=True,
            check=True,
        ).stdout
        body = json.dumps({"token": f"{signing_input}.{_b64url(signature)}", "expires_in": 300})
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.end_headers()
        request.wfile.write(body.encode())

    def __enter__(self) -> _TokenService:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _config(
    server: RunningRegistry,
    port: int,
    cert: Path | None,
    key: Path | None,
    auth: dict | None,
    access_log: bool = False,
    readonly: bool = False,
) -> dict:
    http_section: dict = {"addr": f"127.0.0.1:{port}", "secret": "buildgraph-test-secret"}
    if cert and key:
        http_section["tls"] = {"certificate": str(cert), "key": str(key)}
    config: dict = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": not access_log}},
        "storage": {"filesystem": {"rootdirectory": str(server.root)}, "delete": {"enabled": True}},
        "http": http_section,
    }
    if readonly:
        config["storage"]["maintenance"] = {"readonly": {"enabled": True}}
    if auth:
        config["auth"] = auth
    return config


def _wait_ready(server: RunningRegistry, process: subprocess.Popen, log: Path) -> None:
    scheme = "https" if server.tls else "http"
    context = ssl.create_default_context(cafile=str(server.ca_file)) if server.ca_file else None
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()}")
        try:
            with opener.open(f"{scheme}://{server.host}/v2/", timeout=2):
                return
        except urllib.error.HTTPError as err:
            err.close()
            if err.code == 401:
                return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"docker-registry did not answer on {server.host}: {log.read_text()}")


@contextlib.contextmanager
def serve_registry(
    workdir: Path,
    *,
    tls: bool = False,
    auth: str | None = None,
    username: str = "builder",
    password: str = "s3cret-Pa55",
    access_log: bool = False,
    readonly: bool = False,
) -> Iterator[RunningRegistry]:
    """Run docker-registry on a free 127.0.0.1 port until the block ends."""
    require_tools(REGISTRY)
    if tls or auth:
        require_tools("openssl")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "storage").mkdir(exist_ok=True)
    server = RunningRegistry(host="", root=workdir / "storage", tls=tls)
    cert = key = None
    if tls or auth == "token":
        cert, key = make_certificate(workdir)
    if tls:
        server.ca_file = cert
    auth_config: dict | None = None
    token_service: contextlib.AbstractContextManager = contextlib.nullcontext()
    if auth == "htpasswd":
        require_tools("htpasswd")
        line = subprocess.run(
            ["htpasswd", "-Bbn", username, password], capture_output=True, text=True, check=True
        ).stdout.strip()
        (workdir / "htpasswd").write_text(line + "\n")
        auth_config = {"htpasswd": {"realm": "buildgraph-test", "path": str(workdir / "htpasswd")}}
    elif auth == "token":
        assert cert and key
        token_service = _TokenService(server, cert, key)
        auth_config = {
            "token": {
                "realm": token_service.url,
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(cert),
            }
        }
    elif auth is not None:
        raise ValueError(f"unknown auth mode {auth!r}")
    if auth:
        server.username, server.password = username, password
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    log = server.log = workdir / "registry.log"
    with token_service:
        for _attempt in range(5):
            port = free_port()
            server.host = f"127.0.0.1:{port}"
            config = workdir / "config.yml"
            # JSON is YAML: no YAML library needed to write the config.
            document = _config(
                server, port, cert if tls else None, key, auth_config, access_log, readonly
            )
            config.write_text(json.dumps(document))
            with open(log, "wb") as log_file:
                process = subprocess.Popen(
                    [REGISTRY, "serve", str(config)],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            try:
                _wait_ready(server, process, log)
            except RuntimeError:
                _stop(process)
                if "address already in use" in log.read_text():
                    continue  # lost the race for the free port: take another
                raise
            try:
                yield server
            finally:
                _stop(process)
            return
        raise RuntimeError("no free port for docker-registry after 5 attempts")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
