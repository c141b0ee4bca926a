"""Pulling from a real registry (docker-registry on 127.0.0.1), pushed to with skopeo."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import subprocess
import tarfile
from pathlib import Path

import pytest
from registry_server import (
    RunningRegistry,
    non_loopback_listener,
    require_tools,
    serve_registry,
)

from buildgraph.oci.layout import INDEX_TYPES, MANIFEST_TYPES, Image, Layout, tar_from_directory
from buildgraph.oci.reference import parse
from buildgraph.oci.registry import Client, RegistryError, _parse_challenge, credentials, pull
from buildgraph.oci.registry import resolve_digest as resolve

EPOCH = 1_700_000_000
WRONG = "sha256:" + "0" * 64


# -- helpers ---------------------------------------------------------------------------------


def two_arch_store(tmp: Path) -> Path:
    """An OCI layout with ``kernel`` = amd64 and arm64 images, two layers each."""
    for arch in ("amd64", "arm64"):
        src = tmp / f"src-{arch}"
        (src / "boot").mkdir(parents=True)
        (src / "boot/vmlinuz").write_text(f"kernel for {arch}\n")
        (src / "usr/lib/modules").mkdir(parents=True)
        (src / "usr/lib/modules/loop.ko").write_bytes(arch.encode() * 1000)
        tar_from_directory(src, tmp / f"{arch}.tar", EPOCH)
    common = tmp / "common-src"
    (common / "etc").mkdir(parents=True)
    (common / "etc/os-release").write_text("ID=buildgraph\n")
    tar_from_directory(common, tmp / "common.tar", EPOCH)
    store = tmp / "store"
    Layout(store).write_image(
        "kernel",
        {arch: Image([tmp / "common.tar", tmp / f"{arch}.tar"]) for arch in ("amd64", "arm64")},
    )
    return store


def push(store: Path, registry: RunningRegistry, dest: str, *extra: str) -> None:
    subprocess.run(
        ["skopeo", "copy", "-q", *extra, *registry.skopeo_dest_args(), f"oci:{store}:kernel",
         f"docker://{registry.host}/{dest}"],
        check=True,
        capture_output=True,
    )  # fmt: skip


def skopeo_raw(registry: RunningRegistry, name: str) -> bytes:
    return subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{name}"],
        check=True,
        capture_output=True,
    ).stdout


def rootfs(layout: Layout, ref: str, arch: str, tmp: Path) -> dict[str, bytes]:
    out = tmp / f"rootfs-{arch}.tar"
    layout.flatten(ref, arch, out)
    with tarfile.open(out) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}


def secrets_of(registry: RunningRegistry) -> list[str]:
    pair = f"{registry.username}:{registry.password}"
    return [registry.password, base64.b64encode(pair.encode()).decode()]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A plain-HTTP registry holding me/kernel:v1 (two arches) and me/single:v1 (amd64 only)."""
    require_tools("skopeo")
    tmp = tmp_path_factory.mktemp("registry")
    store = two_arch_store(tmp)
    with serve_registry(tmp / "registry") as registry:
        push(store, registry, "me/kernel:v1", "--all")
        push(store, registry, "me/single:v1", "--override-arch=amd64", "--override-os=linux")
        yield registry


# -- pulling -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_pull_each_arch_and_flatten(served, tmp_path, arch):
    ref = parse(f"{served.host}/me/kernel:v1")
    dest = Layout(tmp_path / "dest")
    digest = pull(ref, arch, dest)
    assert digest == "sha256:" + hashlib.sha256(skopeo_raw(served, "me/kernel:v1")).hexdigest()
    desc = dest.lookup(str(ref))
    assert desc is not None and desc.digest == digest and desc.media_type in INDEX_TYPES
    files = rootfs(dest, str(ref), arch, tmp_path)
    assert files == {
        "boot/vmlinuz": f"kernel for {arch}\n".encode(),
        "etc/os-release": b"ID=buildgraph\n",
        "usr/lib/modules/loop.ko": arch.encode() * 1000,
    }
    # Only the requested arch was fetched; every stored blob is what its name says.
    other = "arm64" if arch == "amd64" else "amd64"
    with pytest.raises(Exception, match="not in the OCI store"):
        dest.manifest_for(str(ref), other)
    for blob in (tmp_path / "dest/blobs/sha256").iterdir():
        dest.verify_blob("sha256:" + blob.name)


@pytest.mark.slow
def test_pulling_the_second_arch_completes_the_image_and_skips_shared_blobs(served, tmp_path):
    ref = parse(f"{served.host}/me/kernel:v1")
    dest = Layout(tmp_path / "dest")
    first = pull(ref, "amd64", dest, store_as="pkgs/kernel:v1")
    blobs_after_first = {p.name for p in (tmp_path / "dest/blobs/sha256").iterdir()}
    fetched: list[str] = []
    client = Client()
    original = client.fetch_blob

    def counting(ref_, descriptor, dest_):
        if not dest_.has_blob(descriptor["digest"]):
            fetched.append(descriptor["digest"])
        return original(ref_, descriptor, dest_)

    client.fetch_blob = counting  # type: ignore[method-assign]
    assert pull(ref, "arm64", dest, store_as="pkgs/kernel:v1", client=client) == first
    assert dest.refs() == ["pkgs/kernel:v1"]
    manifest = dest.manifest_for("pkgs/kernel:v1", "arm64")
    shared = manifest["layers"][0]["digest"]  # the common layer
    assert shared.removeprefix("sha256:") in blobs_after_first and shared not in fetched
    assert len(fetched) == 2  # the arm64 config and the arm64-only layer
    for arch in ("amd64", "arm64"):
        assert rootfs(dest, "pkgs/kernel:v1", arch, tmp_path)["boot/vmlinuz"].startswith(b"kernel")


@pytest.mark.slow
def test_a_single_arch_manifest_is_pulled_and_stored_as_is(served, tmp_path):
    ref = parse(f"{served.host}/me/single:v1")
    dest = Layout(tmp_path / "dest")
    digest = pull(ref, "amd64", dest)
    assert digest == "sha256:" + hashlib.sha256(skopeo_raw(served, "me/single:v1")).hexdigest()
    assert dest.lookup(str(ref)).media_type in MANIFEST_TYPES
    assert rootfs(dest, str(ref), "amd64", tmp_path)["boot/vmlinuz"] == b"kernel for amd64\n"
    with pytest.raises(RegistryError, match=r"no linux/arm64 image \(it has: linux/amd64\)"):
        pull(ref, "arm64", Layout(tmp_path / "other"))


@pytest.mark.slow
def test_resolve_digest_matches_skopeo(served):
    for name in ("me/kernel:v1", "me/single:v1"):
        expected = "sha256:" + hashlib.sha256(skopeo_raw(served, name)).hexdigest()
        assert resolve(parse(f"{served.host}/{name}")) == expected
    pinned = parse(f"{served.host}/me/kernel:v1@{WRONG}")
    assert resolve(pinned) == WRONG  # a pinned digest needs no network


@pytest.mark.slow
def test_pull_by_digest_verifies_the_digest(served, tmp_path):
    good = resolve(parse(f"{served.host}/me/kernel:v1"))
    dest = Layout(tmp_path / "dest")
    assert pull(parse(f"{served.host}/me/kernel@{good}"), "amd64", dest) == good
    assert pull(parse(f"{served.host}/me/kernel:v1@{good}"), "amd64", dest) == good
    with pytest.raises(RegistryError) as caught:
        pull(parse(f"{served.host}/me/kernel:v1@{WRONG}"), "amd64", dest)
    message = str(caught.value)
    assert "digest mismatch" in message and served.host in message and "hint:" in message
    assert WRONG in message and good in message  # what the ref pins, and what v1 is now
    # Without a tag there is nothing to compare with: the registry has no such manifest.
    with pytest.raises(RegistryError, match=f"no manifest for {served.host}/me/kernel@{WRONG}"):
        pull(parse(f"{served.host}/me/kernel@{WRONG}"), "amd64", dest)
    assert dest.refs() == [f"{served.host}/me/kernel:v1@{good}", f"{served.host}/me/kernel@{good}"]


@pytest.mark.slow
def test_a_tag_that_moved_is_a_digest_mismatch(tmp_path):
    """A registry answering a digest request with other bytes: both digests are named."""
    require_tools("skopeo")
    store = two_arch_store(tmp_path)
    with serve_registry(tmp_path / "registry") as registry:
        push(store, registry, "me/kernel:v1", "--all")
        good = resolve(parse(f"{registry.host}/me/kernel:v1"))
        # Swap the stored index for other bytes under the same digest, as a broken or
        # hostile registry would serve them.
        blob = registry.root / "docker/registry/v2/blobs/sha256" / good[7:9] / good[7:] / "data"
        doc = json.loads(blob.read_bytes())
        doc["annotations"] = {"tampered": "yes"}
        blob.write_bytes(json.dumps(doc).encode())
        actual = "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
        with pytest.raises(RegistryError) as caught:
            pull(parse(f"{registry.host}/me/kernel@{good}"), "amd64", Layout(tmp_path / "d"))
        message = str(caught.value)
        assert good in message and actual in message and "digest mismatch" in message


@pytest.mark.slow
def test_a_corrupt_blob_is_refused_and_not_kept(tmp_path):
    require_tools("skopeo")
    store = two_arch_store(tmp_path)
    with serve_registry(tmp_path / "registry") as registry:
        push(store, registry, "me/kernel:v1", "--all")
        ref = parse(f"{registry.host}/me/kernel:v1")
        healthy = Layout(tmp_path / "healthy")
        pull(ref, "amd64", healthy)
        layer = healthy.manifest_for(str(ref), "amd64")["layers"][1]["digest"]
        data = registry.root / "docker/registry/v2/blobs/sha256" / layer[7:9] / layer[7:] / "data"
        data.write_bytes(bytes(reversed(data.read_bytes())))
        dest = Layout(tmp_path / "dest")
        with pytest.raises(RegistryError, match="digest mismatch") as caught:
            pull(ref, "amd64", dest)
        assert layer in str(caught.value)
        assert not dest.has_blob(layer) and dest.lookup(str(ref)) is None
        # A store that already has the blob does not fetch it again.
        assert pull(ref, "amd64", healthy, store_as="again") == healthy.lookup(str(ref)).digest


@pytest.mark.slow
def test_zstd_layers_from_a_registry(tmp_path):
    require_tools("skopeo", "zstd")
    store = two_arch_store(tmp_path)
    with serve_registry(tmp_path / "registry") as registry:
        push(store, registry, "me/kernel:zstd", "--all", "--dest-compress-format=zstd")
        ref = parse(f"{registry.host}/me/kernel:zstd")
        dest = Layout(tmp_path / "dest")
        pull(ref, "arm64", dest)
        layers = dest.manifest_for(str(ref), "arm64")["layers"]
        assert all(layer["mediaType"].endswith("zstd") for layer in layers)
        assert rootfs(dest, str(ref), "arm64", tmp_path)["boot/vmlinuz"] == b"kernel for arm64\n"


# -- clear failures ----------------------------------------------------------------------------


@pytest.mark.slow
def test_missing_tag_repository_and_arch(served, tmp_path):
    dest = Layout(tmp_path / "dest")
    with pytest.raises(RegistryError) as caught:
        pull(parse(f"{served.host}/me/kernel:v9"), "amd64", dest)
    message = str(caught.value)
    assert f"{served.host}/me/kernel:v9" in message and "no manifest" in message
    assert "hint:" in message
    with pytest.raises(RegistryError, match=f"no manifest for {served.host}/nobody/nothing:v1"):
        resolve(parse(f"{served.host}/nobody/nothing:v1"))
    with pytest.raises(RegistryError, match=r"no manifest .*\(manifest unknown\)"):
        pull(parse(f"{served.host}/me/kernel:v9"), "amd64", dest)
    with pytest.raises(RegistryError) as caught:
        pull(parse(f"{served.host}/me/kernel:v1"), "riscv64", dest)
    assert "no linux/riscv64 image (it has: linux/amd64, linux/arm64)" in str(caught.value)
    assert dest.refs() == []


@pytest.mark.slow
def test_an_unreachable_registry_is_a_clear_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        ref = parse(f"127.0.0.1:{port}/me/kernel:v1")
        with pytest.raises(RegistryError) as caught:
            resolve(ref)
    message = str(caught.value)
    assert f"cannot reach registry 127.0.0.1:{port} for {ref}: connection refused" in message
    assert "hint:" in message
    with pytest.raises(RegistryError, match="host name not found"):
        resolve(parse("registry.invalid/me/kernel:v1"))


@pytest.mark.slow
def test_a_non_loopback_registry_is_not_spoken_to_in_plain_http(tmp_path):
    with non_loopback_listener() as (host, first_bytes):
        ref = parse(f"{host}/me/kernel:v1")
        assert not ref.plain_http
        with pytest.raises(RegistryError, match=f"cannot reach registry {host}"):
            pull(ref, "amd64", Layout(tmp_path / "dest"), client=Client(timeout=5))
    assert first_bytes and first_bytes[0][:1] == b"\x16"  # a TLS handshake record
    assert not first_bytes[0].startswith(b"GET")


# -- auth ----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("tls", "auth"), [(True, "htpasswd"), (False, "token"), (True, "token")])
def test_authenticated_registries(tmp_path, monkeypatch, tls, auth):
    require_tools("skopeo")
    store = two_arch_store(tmp_path)
    with serve_registry(tmp_path / "registry", tls=tls, auth=auth) as registry:
        push(store, registry, "me/kernel:v1", "--all")
        ref = parse(f"{registry.host}/me/kernel:v1")
        monkeypatch.delenv("DOCKER_CONFIG", raising=False)
        monkeypatch.setenv("HOME", str(tmp_path / "home"))

        # Anonymous: refused, with a hint on how to log in.
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "none.json"))
        with pytest.raises(RegistryError) as caught:
            pull(ref, "amd64", Layout(tmp_path / "d0"), client=Client(ca_file=registry.ca_file))
        assert "refused access" in str(caught.value) and "anonymously" in str(caught.value)
        assert "REGISTRY_AUTH_FILE" in str(caught.value)

        # A wrong password: refused, and no secret in the message.
        wrong = registry.write_auth_file(tmp_path / "wrong.json", password="not-the-Pa55")
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(wrong))
        with pytest.raises(RegistryError) as caught:
            pull(ref, "amd64", Layout(tmp_path / "d1"), client=Client(ca_file=registry.ca_file))
        assert "refused access" in str(caught.value)
        for secret in [*secrets_of(registry), "not-the-Pa55"]:
            assert secret not in str(caught.value)

        # The right password, from REGISTRY_AUTH_FILE.
        right = registry.write_auth_file(tmp_path / "auth.json")
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(right))
        dest = Layout(tmp_path / "d2")
        client = Client(ca_file=registry.ca_file)
        digest = pull(ref, "arm64", dest, client=client)
        assert resolve(ref, client=client) == digest
        assert client.scheme(ref) == ("https" if tls else "http")
        assert rootfs(dest, str(ref), "arm64", tmp_path)["boot/vmlinuz"] == b"kernel for arm64\n"
        if auth == "token":
            assert "repository:me/kernel:pull" in registry.token_requests

        if tls:
            # An HTTPS registry whose CA we were not told about.
            with pytest.raises(RegistryError, match="TLS certificate is not trusted"):
                resolve(ref, client=Client())


# -- credentials and challenges (fast) ---------------------------------------------------------


def _auth(user: str, password: str) -> dict:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_credentials_come_from_the_auth_files_in_order(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    assert credentials("ghcr.io") is None

    home_config = tmp_path / "home/.docker/config.json"
    home_config.parent.mkdir(parents=True)
    home_config.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": _auth("hub", "p1"),
                    "reg.example:5000": _auth("home", "p2"),
                }
            }
        )
    )
    assert credentials("docker.io") == ("hub", "p1")
    assert credentials("reg.example:5000") == ("home", "p2")
    assert credentials("reg.example") is None

    docker_config = tmp_path / "docker"
    docker_config.mkdir()
    (docker_config / "config.json").write_text(
        json.dumps({"auths": {"reg.example:5000": _auth("dc", "p3")}})
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    assert credentials("reg.example:5000") == ("dc", "p3")

    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps({"auths": {"reg.example:5000": _auth("ra", "p:4")}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth_file))
    assert credentials("reg.example:5000") == ("ra", "p:4")

    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")
    assert credentials("ghcr.io")[1] == "ghp_secret"
    assert credentials("quay.io") is None


def test_broken_credentials_do_not_leak(tmp_path, monkeypatch):
    auth_file = tmp_path / "auth.json"
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth_file))
    auth_file.write_text(json.dumps({"auths": {"r.example": {"auth": "bm9jb2xvbg=="}}}))
    with pytest.raises(RegistryError, match="not base64 of user:password") as caught:
        credentials("r.example")
    assert "bm9jb2xvbg" not in str(caught.value) and "nocolon" not in str(caught.value)
    auth_file.write_text('{"auths": {"r.example": {"auth": "c2VjcmV0')
    with pytest.raises(RegistryError, match="not readable JSON") as caught:
        credentials("r.example")
    assert "c2VjcmV0" not in str(caught.value)


def test_bearer_challenges_parse():
    scheme, params = _parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/alpine:pull,push",error="insufficient_scope"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/alpine:pull,push",
        "error": "insufficient_scope",
    }
    basic = _parse_challenge('Basic realm="Registry Realm"')
    assert basic == ("basic", {"realm": "Registry Realm"})


def test_the_embedded_store_is_not_a_registry(tmp_path):
    with pytest.raises(RegistryError, match="embedded OCI store"):
        pull(parse("local/pkgs/kernel:v1"), "amd64", Layout(tmp_path / "d"))
