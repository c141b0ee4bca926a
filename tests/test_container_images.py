"""installer-base, installer and imager: OCI images skopeo reads, named in the embedded
store as multi-arch indexes, and pushed to a real registry with PUSH=true.

One build of both arches (module fixture) serves the store and archive tests; each push
test starts its own registry and pushes from the same clone and cache.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from project import doit
from realgraph import build, built, clone, sha256
from registry_server import free_port, serve_registry

pytestmark = pytest.mark.slow
BOTH = "PLATFORM=linux/amd64,linux/arm64"
IMAGES = ("installer-base", "installer", "imager")
GOAL = (*IMAGES, BOTH, "USERNAME=me")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("images")
    root, cache = clone(base / "repo"), base / "cache"
    build(root, cache, *GOAL)
    return root, cache


def _skopeo(*args: str) -> str:
    done = subprocess.run(["skopeo", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _files(image_dir: Path) -> dict[str, tuple[str, bytes]]:
    """path -> (mode, bytes) of every regular file in a skopeo ``dir:`` copy, layers applied."""
    manifest = json.loads((image_dir / "manifest.json").read_text())
    files: dict[str, tuple[str, bytes]] = {}
    for layer in manifest["layers"]:
        blob = image_dir / layer["digest"].removeprefix("sha256:")
        listing = subprocess.run(["tar", "-tvf", str(blob)], capture_output=True, text=True,
                                 check=True).stdout.splitlines()  # fmt: skip
        for line in listing:
            mode, *_rest, name = line.split()
            if mode.startswith("-"):
                data = subprocess.run(["tar", "-xOf", str(blob), name], capture_output=True,
                                      check=True).stdout  # fmt: skip
                files[name] = (mode, data)
    return files


def _copy(source: str, dest: Path, *args: str) -> dict[str, tuple[str, bytes]]:
    _skopeo("copy", "-q", *args, source, f"dir:{dest}")
    return _files(dest)


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_the_installer_archive_of_each_arch_holds_its_boot_assets(
    tree, tmp_path: Path, arch: str
) -> None:
    out = tree[0] / "_out"
    inspected = json.loads(_skopeo("inspect", f"oci-archive:{out}/installer-{arch}.tar"))
    assert inspected["Architecture"] == arch and inspected["Os"] == "linux"
    files = _copy(f"oci-archive:{out}/installer-{arch}.tar", tmp_path / "dir")
    assert files[f"usr/install/{arch}/vmlinuz"][1] == (out / f"vmlinuz-{arch}").read_bytes()
    assert files[f"usr/install/{arch}/initramfs.xz"][1] == (
        out / f"initramfs-{arch}.xz"
    ).read_bytes()
    assert files[f"usr/install/{arch}/cmdline"][1] == (out / f"cmdline-metal-{arch}").read_bytes()
    assert json.loads(files[f"usr/install/{arch}/disk.json"][1])["size"] == "1246MiB"
    mode, program = files["usr/bin/installer"]
    assert mode == "-rwxr-xr-x" and program == (out / "installer.pyz").read_bytes()
    assert "bin/busybox" in files
    base = json.loads(_skopeo("inspect", f"oci-archive:{out}/images/installer-base-{arch}.tar"))
    assert inspected["Layers"][: len(base["Layers"])] == base["Layers"]


def _store_index(cache: Path, name: str) -> dict:
    raw = _skopeo("inspect", "--raw", f"oci:{cache}/steps/oci:local/me/{name}:v1.0.0")
    return json.loads(raw)


@pytest.mark.parametrize("name", IMAGES)
def test_the_store_names_each_image_as_an_index_of_both_arches(tree, name: str) -> None:
    root, cache = tree
    index = _store_index(cache, name)
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64", "arm64"]
    written = (root / "_out" / "images" / f"{name}.index.json").read_bytes()
    assert json.loads(written) == index


def test_installer_arch_chooses_the_imager_s_boot_assets(tree, tmp_path: Path) -> None:
    root, cache = tree
    out = root / "_out" / "images"
    both = _copy(f"oci-archive:{out}/imager-amd64.tar", tmp_path / "all")
    assert {"usr/install/amd64/vmlinuz", "usr/install/arm64/vmlinuz"} <= set(both)
    result = build(root, cache, "imager", BOTH, "USERNAME=me", "INSTALLER_ARCH=targetarch")
    assert built(result) == {"imager-image:amd64", "imager-image:arm64", "imager"}
    own = _copy(f"oci-archive:{out}/imager-amd64.tar", tmp_path / "own")
    assert "usr/install/amd64/vmlinuz" in own and "usr/install/arm64/vmlinuz" not in own
    # Back to all: the images are cached; only the store's name must move back.
    assert built(build(root, cache, "imager", BOTH, "USERNAME=me")) == {"imager"}


def _uploads(registry) -> int:
    return sum(1 for method, path, _ in registry.requests() if method == "POST" and
               "/blobs/uploads/" in path)  # fmt: skip


def test_push_sends_each_image_to_a_registry_and_a_second_push_uploads_nothing(
    tree, tmp_path: Path
) -> None:
    root, cache = tree
    with serve_registry(tmp_path / "registry", access_log=True) as registry:
        push = (*GOAL, "PUSH=true", f"REGISTRY={registry.host}")
        result = build(root, cache, *push)
        assert built(result) == set(IMAGES)  # only the publish nodes: the images are cached
        uploads = _uploads(registry)
        assert uploads > 0
        for name in IMAGES:
            ref = f"docker://{registry.host}/me/{name}:v1.0.0"
            index = json.loads(_skopeo("inspect", "--raw", "--tls-verify=false", ref))
            assert [m["platform"]["architecture"] for m in index["manifests"]] == [
                "amd64", "arm64"
            ]  # fmt: skip
            stored = (root / "_out" / "images" / f"{name}.index.json").read_bytes()
            assert json.loads(stored) == index
        files = _copy(f"docker://{registry.host}/me/installer:v1.0.0", tmp_path / "arm",
                      "--src-tls-verify=false", "--override-arch=arm64")  # fmt: skip
        assert "usr/install/arm64/vmlinuz" in files
        again = build(root, cache, *push)
        assert _uploads(registry) == uploads
        assert built(again) == set()  # the store and registry hold what was pushed


def test_push_with_basic_auth_over_tls_and_bad_credentials(tree, tmp_path: Path) -> None:
    root, cache = tree
    with serve_registry(tmp_path / "registry", tls=True, auth="htpasswd") as registry:
        push = ("installer", BOTH, "USERNAME=me", "PUSH=true", f"REGISTRY={registry.host}")
        wrong = registry.write_auth_file(tmp_path / "wrong.json", password="not-the-Pa55")
        env = {"SSL_CERT_FILE": str(registry.ca_file), "REGISTRY_AUTH_FILE": str(wrong)}
        failed = doit(root, cache, *push, env=env, json_log=False)
        assert failed.returncode != 0
        errors = [line for line in failed.stderr.splitlines() if "error" in line]
        assert len(errors) == 1 and registry.host in errors[0], failed.stderr
        assert "not-the-Pa55" not in failed.stderr and registry.password not in failed.stderr
        env["REGISTRY_AUTH_FILE"] = str(registry.write_auth_file(tmp_path / "auth.json"))
        assert built(build(root, cache, *push, env=env)) == {"installer"}
        certs = tmp_path / "certs"
        certs.mkdir()
        (certs / "ca.crt").write_bytes(registry.ca_file.read_bytes())
        _skopeo("inspect", "--raw", f"--cert-dir={certs}",
                f"--creds={registry.username}:{registry.password}",
                f"docker://{registry.host}/me/installer:v1.0.0")  # fmt: skip


def test_bad_push_settings_are_one_message_and_push_nothing(tree) -> None:
    root, cache = tree
    unreachable = doit(root, cache, "installer", "PUSH=true", f"REGISTRY=127.0.0.1:{free_port()}",
                       "USERNAME=me", BOTH, json_log=False)  # fmt: skip
    assert unreachable.returncode != 0
    assert unreachable.stderr.count("buildgraph: error:") == 1
    assert "cannot reach registry 127.0.0.1:" in unreachable.stderr
    local = doit(root, cache, "installer", "PUSH=true", "USERNAME=me", BOTH, json_log=False)
    assert local.returncode != 0
    assert "PUSH=true, but local/me/installer:v1.0.0 names the embedded store" in local.stderr


def test_iso_from_an_imager_image_takes_its_boot_assets_instead_of_building_them(tree) -> None:
    root, cache = tree
    amd64 = "PLATFORM=linux/amd64"
    build(root, cache, "iso", amd64)
    imager = "IMAGER_IMAGE=local/me/imager:v1.0.0"
    result = build(root, cache, "iso", amd64, imager)
    # The OS's own parts leave the graph; the assets are the ones built here, so the ISO
    # is the same bytes as before and comes from the cache.
    assert set(result) == {f"{t}:amd64" for t in ("kernel", "initramfs-base", "initramfs",
                                                   "cmdline-metal", "iso-cmdline", "pkg-grub",
                                                   "iso")}  # fmt: skip
    # initramfs (base + extensions, none here) is the same bytes again: early cutoff.
    assert built(result) == {"kernel:amd64", "initramfs-base:amd64"}
    missing = doit(root, cache, "iso", amd64, "IMAGER_IMAGE=local/me/nope:v1", json_log=False)
    assert missing.returncode != 0 and missing.stderr.count("buildgraph: error:") == 1
    assert "IMAGER_IMAGE local/me/nope:v1 has no linux/amd64 image" in missing.stderr


def test_the_installer_inside_the_image_writes_the_metal_disk(tree, tmp_path: Path) -> None:
    root, cache = tree
    build(root, cache, "disk-metal", "PLATFORM=linux/amd64")
    _skopeo("copy", "-q", f"oci-archive:{root}/_out/installer-amd64.tar", f"dir:{tmp_path}/dir")
    unpacked = tmp_path / "root"
    unpacked.mkdir()
    manifest = json.loads((tmp_path / "dir" / "manifest.json").read_text())
    for layer in manifest["layers"]:
        blob = tmp_path / "dir" / layer["digest"].removeprefix("sha256:")
        subprocess.run(["tar", "-xf", str(blob), "-C", str(unpacked)], check=True)
    disk = tmp_path / "disk.raw"
    done = subprocess.run(
        ["python3", str(unpacked / "usr/bin/installer"), "--root", str(unpacked),
         "--arch", "amd64", "--disk", str(disk)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sha256(disk) == sha256(root / "_out/disks/metal-amd64.raw")
