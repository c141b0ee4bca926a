"""Start ``buildgraph factory serve`` on 127.0.0.1 for tests, as a user runs it.

The factory runs in a clone of the checkout with a test's cache, as its own process, and is
stopped by its PID. :func:`request` is a small HTTP client (http.client: no redirects, no
retries) that returns status, headers and body, for tests that check all three.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from processes import serving
from project import FIXED, REPO
from registry_server import free_port


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


@dataclass
class RunningFactory:
    host: str
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 900,
    ) -> Response:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            answer = connection.getresponse()
            data = answer.read()
            return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, data)
        finally:
            connection.close()

    def alive(self) -> bool:
        return self.process.poll() is None and self.request("GET", "/healthz").status == 200


def environment(cache: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        "HOME": str(cache.parent),
        "BUILDGRAPH_CACHE": str(cache),
        **FIXED,
    }


@contextlib.contextmanager
def serve_factory(
    root: Path, cache: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[RunningFactory]:
    """A running factory for ``root`` with ``cache``; ``args``: more serve options,
    ``env``: more environment (variables)."""
    port = free_port()
    argv = [sys.executable, "-m", "buildgraph.cli", "factory", "serve",
            "--listen", f"127.0.0.1:{port}", *args]  # fmt: skip
    log = cache.parent / f"factory-{port}.log"
    environ = {**environment(cache), **(env or {})}
    with serving(argv, root, environ, log, lambda: healthy("127.0.0.1", port)) as process:
        yield RunningFactory("127.0.0.1", port, process, log)


def healthy(host: str, port: int, path: str = "/healthz") -> bool:
    """Whether ``GET path`` answers 200 (OSError while the server is not up)."""
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    finally:
        connection.close()


def file_in_layout(layout: Path, wanted: str) -> bytes:
    """The bytes of ``wanted`` in the layer of an OCI layout (skopeo's ``oci:``) holding it."""
    for blob in sorted((layout / "blobs" / "sha256").iterdir()):
        try:
            with tarfile.open(blob) as tar:
                member = next((m for m in tar.getmembers() if m.name.lstrip("./") == wanted), None)
                if member is not None:
                    return tar.extractfile(member).read()
        except tarfile.TarError:
            continue
    raise AssertionError(f"no layer of {layout} holds {wanted}")
