"""The factory's registry front end, read by skopeo: a schematic's installer on pull.

``metal-installer/<id>:<version>`` is a multi-arch index built on demand; skopeo copies it,
and the copied image carries the schematic's initramfs, the one ``/image/`` serves.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from factory_server import file_in_layout, serve_factory
from project import FIXED
from realgraph import clone

pytestmark = pytest.mark.slow
VERSION = FIXED["TAG"]
EMPTY = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
SCHEMATIC = b"customization:\n  systemExtensions:\n    officialExtensions: [buildgraph/ext-hello]\n"


def _skopeo(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return done


def test_skopeo_pulls_a_schematic_s_installer_index(tmp_path: Path) -> None:
    root, cache = clone(tmp_path / "repo"), tmp_path / "cache"
    with serve_factory(root, cache) as factory:
        answer = factory.request("POST", "/schematics", SCHEMATIC)
        schematic_id = json.loads(answer.body)["id"]
        ref = f"docker://127.0.0.1:{factory.port}/metal-installer/{schematic_id}:{VERSION}"
        index = json.loads(_skopeo("inspect", "--raw", "--tls-verify=false", ref).stdout)
        assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
        arches = [m["platform"]["architecture"] for m in index["manifests"]]
        assert arches == ["amd64", "arm64"]
        _skopeo("copy", "--all", "--src-tls-verify=false", ref, f"oci:{tmp_path / 'copy'}:x")
        served = factory.request("GET", f"/image/{schematic_id}/{VERSION}/initramfs-amd64.xz")
        assert served.status == 200
        plain = factory.request("GET", f"/image/{EMPTY}/{VERSION}/initramfs-amd64.xz")
        assert plain.status == 200 and plain.body != served.body
        assert file_in_layout(tmp_path / "copy", "usr/install/amd64/initramfs.xz") == served.body
        unknown = subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false",
             f"docker://127.0.0.1:{factory.port}/metal-installer/{schematic_id}:v9.9.9"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert unknown.returncode != 0
        assert "unknown version 'v9.9.9'" in unknown.stderr
