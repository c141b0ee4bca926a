"""A factory serving released versions: imager images and catalogs in a registry.

One clone publishes a release, ``doit imager catalogs PUSH=true`` at v1.0.0, to a real
registry; a second clone, at another version, serves it with ``--versions-from``. Its
assets come from the release's imager image and its extensions from the release's
catalog, pulled from the registry.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from factory_server import environment, file_in_layout, serve_factory
from realgraph import build, clone
from registry_server import free_port, serve_registry

pytestmark = pytest.mark.slow
EMPTY = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"


def test_a_release_in_a_registry_is_served_from_its_imager_image(tmp_path: Path) -> None:
    with serve_registry(tmp_path / "registry", access_log=True) as registry:
        release, cache = clone(tmp_path / "release"), tmp_path / "cache"
        build(release, cache, "imager", "catalogs", "PUSH=true", f"REGISTRY={registry.host}",
              "PLATFORM=linux/amd64")  # fmt: skip
        server = clone(tmp_path / "server")
        prefix = f"{registry.host}/buildgraph"
        with serve_factory(server, tmp_path / "server-cache", "--versions-from", prefix,
                           env={"TAG": "v2.0.0-dev"}) as factory:  # fmt: skip
            assert json.loads(factory.request("GET", "/versions").body) == ["v1.0.0", "v2.0.0-dev"]
            listed = json.loads(factory.request("GET", "/version/v1.0.0/extensions/official").body)
            hello = next(e for e in listed if e["name"] == "buildgraph/ext-hello")
            assert hello["ref"] == f"{prefix}/ext-hello:v1.0.0"
            pulls_before = _imager_pulls(registry)
            kernel = factory.request("GET", f"/image/{EMPTY}/latest/kernel-amd64")
            assert kernel.status == 200, kernel.text
            assert _imager_pulls(registry) > pulls_before  # from the release's imager image
            vmlinuz = "usr/install/amd64/vmlinuz"
            shipped = _from_image(f"{prefix}/imager:v1.0.0", vmlinuz, tmp_path)
            assert kernel.body == shipped
            schematic = (
                b"customization: {systemExtensions: {officialExtensions: [buildgraph/ext-hello]}}"
            )
            answer = factory.request("POST", "/schematics", schematic)
            assert answer.status == 201, answer.text
            schematic_id = json.loads(answer.body)["id"]
            initramfs = factory.request("GET", f"/image/{schematic_id}/v1.0.0/initramfs-amd64.xz")
            assert initramfs.status == 200, initramfs.text
            missing = factory.request("GET", f"/image/{EMPTY}/v0.9.0/kernel-amd64")
            assert missing.status == 404 and "unknown version 'v0.9.0'" in missing.text


def _imager_pulls(registry) -> int:
    return sum(1 for method, path, _ in registry.requests()
               if method == "GET" and "/buildgraph/imager/manifests/" in path)  # fmt: skip


def _from_image(ref: str, member: str, scratch: Path) -> bytes:
    layout = scratch / "pulled"
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}",
                    f"oci:{layout}:x"], check=True, capture_output=True)  # fmt: skip
    return file_in_layout(layout, member)


def test_factories_sharing_a_registry_share_their_schematics(tmp_path: Path) -> None:
    root = clone(tmp_path / "repo")
    with serve_registry(tmp_path / "registry") as registry:
        shared = ("--schematic-registry", f"{registry.host}/factory")
        with serve_factory(root, tmp_path / "cache-a", *shared) as first:
            body = b"customization: {extraKernelArgs: [buildgraph.shared=1]}"
            answer = first.request("POST", "/schematics", body)
            assert answer.status == 201, answer.text
            schematic_id = json.loads(answer.body)["id"]
        with serve_factory(root, tmp_path / "cache-b", *shared) as second:
            found = second.request("GET", f"/schematics/{schematic_id}")
            assert found.status == 200, found.text
            assert b"buildgraph.shared=1" in found.body
        with serve_factory(root, tmp_path / "cache-c") as alone:  # no registry: not known
            assert alone.request("GET", f"/schematics/{schematic_id}").status == 404


def test_an_unreachable_schematic_registry_stops_the_factory_with_one_message(tmp_path) -> None:
    root = clone(tmp_path / "repo")
    where = f"127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "buildgraph.cli", "factory", "serve", "--listen",
         f"127.0.0.1:{free_port()}", "--schematic-registry", f"{where}/factory"],
        cwd=root, env=environment(tmp_path / "cache"), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert where in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert list((tmp_path / "cache" / "factory" / "schematics").glob("*.yaml")) == []
