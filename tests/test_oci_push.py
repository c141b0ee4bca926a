"""Pushing from the embedded store to a real registry (docker-registry on 127.0.0.1).

skopeo, an independent client, checks what a push left in the registry; the registry's own
access log counts the requests it was sent. The image is a two-arch index written with the
Layout APIs: a layer both arches share and one 1 MiB layer per arch.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import http.server
import json
import os
import random
import re
import socket
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from registry_server import (
    RunningRegistry,
    non_loopback_listener,
    require_tools,
    serve_registry,
)

from buildgraph.engine import log
from buildgraph.oci.layout import (
    OCI_INDEX,
    DigestMismatchError,
    Image,
    Layout,
    LayoutError,
    tar_from_directory,
)
from buildgraph.oci.push import PushReport, push
from buildgraph.oci.reference import parse
from buildgraph.oci.registry import Client, RegistryError

EPOCH = 1_700_000_000
ARCHES = ("amd64", "arm64")
SOURCE = "local/me/kernel:v1"
FORGED = "sha256:" + "f" * 64


# -- the image ---------------------------------------------------------------------------------


def _layer(tmp: Path, name: str, files: dict[str, bytes]) -> Path:
    src = tmp / f"src-{name}"
    for path, data in files.items():
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_bytes(data)
    tar_from_directory(src, tmp / f"{name}.tar", EPOCH)
    return tmp / f"{name}.tar"


def _arch_layer(tmp: Path, arch: str, seed: str) -> Path:
    return _layer(
        tmp,
        f"{arch}-{seed}",
        {
            "boot/vmlinuz": f"kernel for {arch}\n".encode(),
            "usr/lib/modules/big.ko": random.Random(seed + arch).randbytes(1 << 20),
        },
    )


def two_arch_store(tmp: Path) -> Layout:
    """An embedded store holding SOURCE: an index over amd64 and arm64, five blobs in all."""
    tmp.mkdir(parents=True, exist_ok=True)
    common = _layer(tmp, "common", {"etc/os-release": b"ID=buildgraph\n"})
    layout = Layout(tmp / "store")
    images = {arch: Image([common, _arch_layer(tmp, arch, "v1")]) for arch in ARCHES}
    layout.write_image(SOURCE, images)
    return layout


def blobs_of(layout: Layout, ref: str = SOURCE) -> dict[str, dict[str, int]]:
    """arch -> {digest: size} of its config and layers."""
    found = {}
    for arch in ARCHES:
        manifest = layout.manifest_for(ref, arch)
        assert manifest is not None
        entries = [manifest["config"], *manifest["layers"]]
        found[arch] = {e["digest"]: e["size"] for e in entries}
    return found


def unique_blobs(layout: Layout, ref: str = SOURCE) -> dict[str, int]:
    return {d: s for per_arch in blobs_of(layout, ref).values() for d, s in per_arch.items()}


# -- looking at the registry -------------------------------------------------------------------


def skopeo_raw(registry: RunningRegistry, name: str) -> bytes:
    creds = [f"--creds={registry.username}:{registry.password}"] if registry.username else []
    return subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", *creds,
         f"docker://{registry.host}/{name}"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip


def has_tag(registry: RunningRegistry, name: str) -> bool:
    done = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{name}"],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def assert_index_lists_both_arches(raw: bytes, report: PushReport) -> None:
    index = json.loads(raw)
    assert index["mediaType"] == OCI_INDEX
    assert sorted(
        (m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]
    ) == [
        ("linux", "amd64"),
        ("linux", "arm64"),
    ]
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == report.digest


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


class Requests:
    """The registry's access log from a mark on: what one push sent, as the server saw it."""

    def __init__(self, registry: RunningRegistry) -> None:
        self.registry = registry
        self.mark = len(registry.requests())

    def since(self) -> list[tuple[str, str, int]]:
        return self.registry.requests()[self.mark :]

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for m, path, _ in self.since() if m == method and re.search(pattern, path))


def secrets_of(registry: RunningRegistry, *extra: str) -> list[str]:
    pair = f"{registry.username}:{registry.password}"
    return [registry.password or "", base64.b64encode(pair.encode()).decode(), *extra]


@pytest.fixture
def events() -> Iterator[list[dict]]:
    """Every structlog event (debug included) emitted while the test runs."""
    old = structlog.get_config()
    was_configured = log._configured
    capture = structlog.testing.LogCapture()
    structlog.configure(
        processors=[capture],
        wrapper_class=structlog.make_filtering_bound_logger(0),
        cache_logger_on_first_use=False,
    )
    log._configured = True
    try:
        yield capture.entries
    finally:
        structlog.configure(**old)
        log._configured = was_configured


@pytest.fixture
def no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "no-auth.json"))


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """A plain-HTTP anonymous registry that logs every request."""
    require_tools("skopeo")
    with serve_registry(tmp_path_factory.mktemp("plain"), access_log=True) as registry:
        yield registry


@pytest.fixture(scope="module")
def first_push(plain: RunningRegistry, tmp_path_factory: pytest.TempPathFactory):
    """The two-arch store, pushed once to ``me/kernel:v1``: (layout, report, requests)."""
    layout = two_arch_store(tmp_path_factory.mktemp("store"))
    seen = Requests(plain)
    report = push(layout, SOURCE, parse(f"{plain.host}/me/kernel:v1"))
    return layout, report, seen.since()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed once returned: connections are refused


# -- (1) plain HTTP, anonymous -----------------------------------------------------------------


@pytest.mark.slow
def test_a_two_arch_index_is_pushed_and_skopeo_reads_every_arch(plain, first_push, tmp_path):
    layout, report, _ = first_push
    blobs = unique_blobs(layout)
    assert len(blobs) == 5  # the shared layer once, a layer and a config per arch
    assert (report.blobs_uploaded, report.blobs_skipped) == (5, 0)
    assert report.bytes_sent == sum(blobs.values())
    assert report.manifests == 3 and report.media_type == OCI_INDEX
    assert report.digest == layout.lookup(SOURCE).digest  # the stored index, byte for byte

    assert_index_lists_both_arches(skopeo_raw(plain, "me/kernel:v1"), report)
    index = layout.read_json(report.digest)
    for arch, expected in blobs_of(layout).items():
        out = tmp_path / arch
        subprocess.run(
            ["skopeo", "copy", "-q", "--src-tls-verify=false", f"--override-arch={arch}",
             f"docker://{plain.host}/me/kernel:v1", f"dir:{out}"],
            check=True, capture_output=True,
        )  # fmt: skip
        entry = next(m for m in index["manifests"] if m["platform"]["architecture"] == arch)
        assert _sha256(out / "manifest.json") == entry["digest"]
        copied = {p.name for p in out.iterdir()} - {"manifest.json", "version"}
        assert copied == {d.removeprefix("sha256:") for d in expected}
        for name in copied:
            assert _sha256(out / name) == "sha256:" + name  # what the registry served


@pytest.mark.slow
def test_the_push_order_is_blobs_then_manifests_then_the_tag(first_push):
    layout, report, requests = first_push
    methods = [(m, path, status) for m, path, status in requests if path != "/v2/"]
    blob_steps = [(m, status) for m, p, status in methods if "/blobs/" in p]
    manifest_puts = [p for m, p, status in methods if m == "PUT" and "/manifests/" in p]
    # Each blob: HEAD (404), POST, PUT; then the manifests, with no blob request among them.
    assert blob_steps == [("HEAD", 404), ("POST", 202), ("PUT", 201)] * 5
    assert [m for m, p, status in methods[15:]] == ["PUT"] * 3 and len(methods) == 18
    children = {m["digest"] for m in layout.read_json(report.digest)["manifests"]}
    assert {p.rsplit("/", 1)[1] for p in manifest_puts[:2]} == children
    assert manifest_puts[2] == "/v2/me/kernel/manifests/v1"


# -- (2) a second push sends no blob -------------------------------------------------------------


@pytest.mark.slow
def test_a_second_push_uploads_no_blob(plain, first_push, tmp_path):
    layout, first, _ = first_push
    dest = parse(f"{plain.host}/me/kernel:v1")
    seen = Requests(plain)
    again = push(layout, SOURCE, dest)
    assert (again.blobs_uploaded, again.blobs_skipped, again.bytes_sent) == (0, 5, 0)
    assert again.digest == first.digest
    # The registry's side: five HEADs answered 200, and no upload at all.
    assert seen.count("POST", r"/blobs/uploads/") == 0
    assert seen.count("PUT", r"/blobs/uploads/") == 0
    assert seen.count("HEAD", r"/blobs/sha256:") == 5
    assert seen.count("PUT", r"/manifests/") == 3

    # A new arm64 layer: only it and the arm64 config travel.
    new_layer = _arch_layer(tmp_path, "arm64", "v2")
    common = layout.manifest_for(SOURCE, "amd64")["layers"][0]
    shared = tmp_path / "common.tar"
    shared.write_bytes(layout.blob_path(common["digest"]).read_bytes())
    layout.put_arch(SOURCE, "arm64", Image([shared, new_layer]))
    seen = Requests(plain)
    third = push(layout, SOURCE, dest)
    arm64 = layout.manifest_for(SOURCE, "arm64")
    sent = arm64["config"]["size"] + arm64["layers"][1]["size"]
    assert (third.blobs_uploaded, third.blobs_skipped, third.bytes_sent) == (2, 3, sent)
    assert seen.count("POST", r"/blobs/uploads/") == 2
    assert third.digest != first.digest
    assert "sha256:" + hashlib.sha256(skopeo_raw(plain, "me/kernel:v1")).hexdigest() == third.digest


@pytest.mark.slow
def test_a_large_layer_is_streamed_not_read_into_memory(plain, tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    with open(big / "zeros", "wb") as file:
        file.truncate(48 << 20)
    tar_from_directory(big, tmp_path / "big.tar", EPOCH)
    layout = Layout(tmp_path / "store")
    layout.write_image(SOURCE, {"amd64": Image([tmp_path / "big.tar"])})
    tracemalloc.start()
    try:
        report = push(layout, SOURCE, parse(f"{plain.host}/me/big:v1"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.bytes_sent > 48 << 20 and report.blobs_uploaded == 2
    assert peak < 8 << 20, f"pushing a 48 MiB layer peaked at {peak >> 20} MiB of Python memory"


# -- (3) basic auth behind TLS ---------------------------------------------------------------------


@pytest.mark.slow
def test_htpasswd_behind_tls_with_credentials_from_an_auth_file(
    tmp_path, monkeypatch, no_credentials, events
):
    require_tools("skopeo")
    layout = two_arch_store(tmp_path / "src")
    with serve_registry(tmp_path / "registry", tls=True, auth="htpasswd") as registry:
        dest = parse(f"{registry.host}/me/kernel:v1")
        monkeypatch.setenv("SSL_CERT_FILE", str(registry.ca_file))  # how a user trusts a CA

        wrong = registry.write_auth_file(tmp_path / "wrong.json", password="not-the-Pa55")
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(wrong))
        with pytest.raises(RegistryError) as caught:
            push(layout, SOURCE, dest)
        message = str(caught.value)
        assert message.startswith(
            f"registry {registry.host} refused push access to {dest} "
            "with the configured credentials (HTTP 401)"
        )
        assert "\n  hint: " in message and "REGISTRY_AUTH_FILE" in message
        assert not has_tag(registry, "me/kernel:v1")

        right = registry.write_auth_file(tmp_path / "auth.json")
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(right))
        client = Client()
        report = push(layout, SOURCE, dest, client=client)
        assert client.scheme(dest) == "https"
        assert (report.blobs_uploaded, report.blobs_skipped) == (5, 0)
        assert_index_lists_both_arches(skopeo_raw(registry, "me/kernel:v1"), report)

        monkeypatch.delenv("SSL_CERT_FILE")
        with pytest.raises(RegistryError, match="TLS certificate is not trusted"):
            push(layout, SOURCE, dest)

    logged = repr(events)
    assert "push_blob" in logged and "pushed" in logged
    for secret in secrets_of(registry, "not-the-Pa55"):
        assert secret not in message and secret not in logged


# -- (4) bearer tokens ---------------------------------------------------------------------------


@pytest.mark.slow
def test_bearer_token_auth_asks_once_for_pull_and_push(
    tmp_path, monkeypatch, no_credentials, events
):
    require_tools("skopeo")
    layout = two_arch_store(tmp_path / "src")
    with serve_registry(tmp_path / "registry", auth="token") as registry:
        dest = parse(f"{registry.host}/me/kernel:v1")
        wrong = registry.write_auth_file(tmp_path / "wrong.json", password="not-the-Pa55")
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(wrong))
        with pytest.raises(RegistryError) as caught:
            push(layout, SOURCE, dest)
        message = str(caught.value)
        assert f"registry {registry.host} refused push access to {dest}" in message

        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(registry.write_auth_file(tmp_path / "a.json")))
        registry.token_requests.clear()
        report = push(layout, SOURCE, dest)
        assert (report.blobs_uploaded, report.blobs_skipped) == (5, 0)
        # One token, for pull and push, serves every request of the push.
        assert registry.token_requests == ["repository:me/kernel:pull,push"]
        assert_index_lists_both_arches(skopeo_raw(registry, "me/kernel:v1"), report)

        # A token that expires mid-push: the request is answered 401, authorized again and
        # sent again (a manifest with its body).
        registry.token_requests.clear()
        retried = push(layout, SOURCE, parse(f"{registry.host}/me/retry:v1"), client=_Expiring())
        assert retried.bytes_sent == sum(unique_blobs(layout).values())
        assert len(registry.token_requests) == 1 + retried.blobs_uploaded + retried.manifests
        assert_index_lists_both_arches(skopeo_raw(registry, "me/retry:v1"), retried)
    logged = repr(events)
    for secret in secrets_of(registry, "not-the-Pa55"):
        assert secret not in message and secret not in logged


class _Expiring(Client):
    """A client whose token has expired whenever it starts an upload or sends a manifest.

    Not before a blob's PUT: a registry answers a streamed body's 401 from the headers and
    hangs up, so that retry cannot happen (and a push sends that PUT right after a POST
    that passed with the same token).
    """

    def open(self, ref, method, path, headers=None, **kwargs):  # type: ignore[no-untyped-def]
        if method == "POST" or (method == "PUT" and "/manifests/" in path):
            self._auth = {key: "Bearer expired" for key in self._auth}
        return super().open(ref, method, path, headers, **kwargs)


# -- (5) failures ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_unreachable_registry_is_a_clear_error(tmp_path):
    layout = two_arch_store(tmp_path)
    dest = parse(f"127.0.0.1:{_closed_port()}/me/kernel:v1")
    with pytest.raises(RegistryError) as caught:
        push(layout, SOURCE, dest)
    message = str(caught.value)
    assert message.startswith(
        f"cannot reach registry {dest.registry} for {dest}: connection refused"
    )
    assert "\n  hint: " in message


@pytest.mark.slow
def test_a_read_only_registry_refuses_the_upload(tmp_path):
    require_tools("skopeo")
    layout = two_arch_store(tmp_path / "src")
    with serve_registry(tmp_path / "registry", readonly=True) as registry:
        dest = parse(f"{registry.host}/me/kernel:v1")
        with pytest.raises(RegistryError) as caught:
            push(layout, SOURCE, dest)
        message = str(caught.value)
        assert re.match(
            rf"registry {re.escape(registry.host)} refused an upload of blob sha256:[0-9a-f]{{64}} "
            rf"for {re.escape(str(dest))}: HTTP 405 Method Not Allowed\n  hint: .*read-only",
            message,
        ), message
        assert not has_tag(registry, "me/kernel:v1")


class _ForgingProxy:
    """Forwards every request to a registry, but answers manifest PUTs with another digest:
    what a registry (or a box in between) that stored other bytes would say."""

    def __init__(self, upstream: str) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(upstream, timeout=30)
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():  # Host too: Locations point back here
                    conn.putheader(name, value)
                conn.endheaders(body)
                answer = conn.getresponse()
                data = answer.read()
                conn.close()
                self.send_response(answer.status)
                forge = self.command == "PUT" and "/manifests/" in self.path
                for name, value in answer.getheaders():
                    if name.lower() in ("date", "server", "connection"):
                        continue
                    if forge and name.lower() == "docker-content-digest":
                        value = FORGED
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = forward

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _ForgingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.slow
def test_a_digest_the_registry_answers_differently_is_a_mismatch(plain, tmp_path):
    layout = two_arch_store(tmp_path)
    with _ForgingProxy(plain.host) as proxy:
        dest = parse(f"{proxy.host}/me/forged:v1")
        with pytest.raises(RegistryError) as caught:
            push(layout, SOURCE, dest)
    message = str(caught.value)
    assert message.startswith("digest mismatch pushing the manifest sha256:")
    assert f"registry {proxy.host} answered {FORGED}" in message and "\n  hint: " in message
    assert not has_tag(plain, "me/forged:v1")  # the index was never tagged


@pytest.mark.slow
def test_a_damaged_blob_in_the_store_is_named_and_nothing_is_tagged(plain, tmp_path):
    layout = two_arch_store(tmp_path)
    layer = layout.manifest_for(SOURCE, "arm64")["layers"][1]["digest"]
    path = layout.blob_path(layer)
    data = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(bytes(reversed(data)))  # same size, other bytes
    with pytest.raises(DigestMismatchError) as caught:
        push(layout, SOURCE, parse(f"{plain.host}/me/damaged:v1"))
    message = str(caught.value)
    assert str(path) in message and layer in message and "digest mismatch" in message
    assert not path.exists()  # dropped, so that building or pulling again repairs the store
    assert not has_tag(plain, "me/damaged:v1")


@pytest.mark.slow
def test_a_non_loopback_registry_is_pushed_to_over_https_only(tmp_path):
    layout = two_arch_store(tmp_path)
    with non_loopback_listener() as (host, first_bytes):
        dest = parse(f"{host}/me/kernel:v1")
        with pytest.raises(RegistryError, match=f"cannot reach registry {host}"):
            push(layout, SOURCE, dest, client=Client(timeout=5))
    assert first_bytes and first_bytes[0][:1] == b"\x16"  # a TLS handshake record
    assert not first_bytes[0].startswith((b"HEAD", b"GET", b"POST"))


# -- source checks, before any request (fast: the destination is a closed port) -----------------


def test_a_missing_source_names_what_the_store_has(tmp_path):
    layout = two_arch_store(tmp_path)
    dest = parse(f"127.0.0.1:{_closed_port()}/me/kernel:v1")
    with pytest.raises(
        LayoutError, match=rf"no image local/me/nothing:v1 in the OCI store .*\(it has: {SOURCE}\)"
    ):
        push(layout, "local/me/nothing:v1", dest)


def test_a_destination_pinning_another_digest_is_refused_before_any_request(tmp_path):
    layout = two_arch_store(tmp_path)
    wrong = "sha256:" + "0" * 64
    dest = parse(f"127.0.0.1:{_closed_port()}/me/kernel:v1@{wrong}")
    with pytest.raises(RegistryError) as caught:
        push(layout, SOURCE, dest)
    assert f"{dest} pins {wrong}, but {SOURCE} in the OCI store is sha256:" in str(caught.value)


def test_an_index_missing_an_arch_in_the_store_is_refused_before_any_request(tmp_path):
    layout = two_arch_store(tmp_path)
    index = layout.read_json(layout.lookup(SOURCE).digest)
    arm64 = next(m for m in index["manifests"] if m["platform"]["architecture"] == "arm64")
    layout.blob_path(arm64["digest"]).unlink()  # as after pulling only amd64 of an index
    dest = parse(f"127.0.0.1:{_closed_port()}/me/kernel:v1")
    with pytest.raises(LayoutError) as caught:
        push(layout, SOURCE, dest)
    message = str(caught.value)
    assert f"the linux/arm64 image of {SOURCE} is not in the OCI store" in message
    assert "PLATFORM=linux/<arch>" in message


def test_the_embedded_store_is_not_a_destination(tmp_path):
    layout = two_arch_store(tmp_path)
    with pytest.raises(RegistryError, match="names the embedded OCI store, not a registry"):
        push(layout, SOURCE, parse("local/me/kernel:v2"))


# -- (6) the command -------------------------------------------------------------------------------


def buildgraph_push(cache: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``buildgraph push`` as a user runs it, with its embedded store under ``cache``."""
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cache.parent / "home"),
        "BUILDGRAPH_CACHE": str(cache),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "buildgraph.cli", "push", *args],
        env=environ,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def assert_one_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode != 0 and done.stdout == "", done
    lines = done.stderr.splitlines()
    assert lines[0].startswith("buildgraph: error: ") and lines[1].startswith("  hint: "), lines
    assert len(lines) == 2, lines
    return done.stderr


@pytest.mark.slow
def test_the_buildgraph_push_command(tmp_path):
    require_tools("skopeo")
    cache = tmp_path / "cache"
    two_arch_store(tmp_path / "src")
    (cache / "steps").mkdir(parents=True)
    (tmp_path / "src/store").rename(cache / "steps/oci")  # where builds keep their images
    with serve_registry(tmp_path / "registry", tls=True, auth="htpasswd") as registry:
        name = f"{registry.host}/me/kernel:v1"
        env = {
            "SSL_CERT_FILE": str(registry.ca_file),
            "REGISTRY_AUTH_FILE": str(registry.write_auth_file(tmp_path / "auth.json")),
        }
        done = buildgraph_push(cache, SOURCE, name, **env, BUILDGRAPH_LOG="json")
        assert done.returncode == 0, done.stderr
        summary = (
            rf"pushed {re.escape(name)}@(sha256:[0-9a-f]{{64}}): "
            r"5 blobs uploaded \(2\.0\d MiB\), 0 already there\n"
        )
        found = re.fullmatch(summary, done.stdout)
        assert found, done.stdout
        digest = found.group(1)
        stderr_events = [json.loads(line) for line in done.stderr.splitlines()]  # JSON only
        assert [e["event"] for e in stderr_events].count("push_blob") == 5
        assert stderr_events[-1]["event"] == "pushed"
        for secret in secrets_of(registry):
            assert secret not in done.stdout + done.stderr
        assert (
            "sha256:" + hashlib.sha256(skopeo_raw(registry, "me/kernel:v1")).hexdigest() == digest
        )

        again = buildgraph_push(cache, "local/me/kernel:v1", name, **env)
        assert again.returncode == 0 and again.stderr == ""
        assert (
            again.stdout
            == f"pushed {name}@{digest}: 0 blobs uploaded (0.00 MiB), 5 already there\n"
        )

        wrong = registry.write_auth_file(tmp_path / "wrong.json", password="not-the-Pa55")
        failed = buildgraph_push(cache, SOURCE, name, **{**env, "REGISTRY_AUTH_FILE": str(wrong)})
        text = assert_one_error(failed)
        assert f"refused push access to {name} with the configured credentials" in text
        for secret in secrets_of(registry, "not-the-Pa55"):
            assert secret not in failed.stdout + failed.stderr

    unreachable = f"127.0.0.1:{_closed_port()}/me/kernel:v1"
    text = assert_one_error(buildgraph_push(cache, SOURCE, unreachable))
    assert f"cannot reach registry {unreachable.split('/')[0]}" in text
    text = assert_one_error(buildgraph_push(cache, "local/me/nothing", unreachable))
    assert "no image local/me/nothing in the OCI store" in text and SOURCE in text
