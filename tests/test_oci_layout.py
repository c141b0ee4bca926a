"""The embedded OCI store: references, writing images, lookup, flattening, interop with skopeo."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from buildgraph.oci.layout import (
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_LAYER_TAR,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    REF_NAME,
    Descriptor,
    DigestMismatchError,
    Image,
    Layout,
    LayoutError,
    canonical_json,
    tar_from_directory,
)
from buildgraph.oci.reference import Reference, parse

EPOCH = 1_700_000_000


# -- references ------------------------------------------------------------------------------

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alpine", Reference("docker.io", "library/alpine", "latest")),
        ("me/tool:1.2", Reference("docker.io", "me/tool", "1.2")),
        ("ghcr.io/siderolabs/kernel:v1.7.0", Reference("ghcr.io", "siderolabs/kernel", "v1.7.0")),
        ("localhost/x", Reference("localhost", "x", "latest")),
        ("127.0.0.1:5000/me/kernel:v1", Reference("127.0.0.1:5000", "me/kernel", "v1")),
        ("[::1]:5000/me/kernel", Reference("[::1]:5000", "me/kernel", "latest")),
        ("local/pkgs/kernel:latest", Reference("local", "pkgs/kernel", "latest")),
        (f"ghcr.io/a/b@{DIGEST}", Reference("ghcr.io", "a/b", None, DIGEST)),
        (f"ghcr.io/a/b:v1@{DIGEST}", Reference("ghcr.io", "a/b", "v1", DIGEST)),
        ("reg.example:443/a.b/c__d/e-f", Reference("reg.example:443", "a.b/c__d/e-f", "latest")),
    ],
)
def test_references_parse_like_docker_and_round_trip(text, expected):
    ref = parse(text)
    assert ref == expected
    assert parse(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "empty"),
        ("  ", "empty"),
        ("ghcr.io/Siderolabs/kernel", "lowercase"),
        ("Kernel", "lowercase"),
        ("ghcr.io/a/b@sha256:abc", "sha256:<64"),
        ("ghcr.io/a/b@md5:" + "a" * 32, "sha256:<64"),
        ("ghcr.io/a/b:bad/tag", "repository component"),
        ("ghcr.io/a//b", "empty path"),
        ("ghcr.io/a/b:-x", "tag"),
        ("ghcr.io/a b", "whitespace"),
        ("ghcr.io/a/b$c", "repository component"),
    ],
)
def test_malformed_references_are_refused_clearly(text, complaint):
    with pytest.raises(ValueError) as caught:
        parse(text)
    assert complaint in str(caught.value)


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("localhost:5000/a", True),
        ("127.0.0.1:5000/a", True),
        ("127.1.2.3/a", True),
        ("[::1]:5000/a", True),
        ("192.0.2.2:5000/a", False),
        ("registry.example:5000/a", False),
        ("ghcr.io/a", False),
        ("alpine", False),
        ("local/pkgs/kernel", False),
    ],
)
def test_only_loopback_registries_may_use_plain_http(text, plain):
    assert parse(text).plain_http is plain


# -- helpers ---------------------------------------------------------------------------------


def make_tree(root: Path, files: dict[str, str | bytes | None], mtime: int = EPOCH) -> Path:
    """Files (None = directory; 'symlink:' prefix = symlink target) under ``root``."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir(exist_ok=True)
        elif isinstance(content, str) and content.startswith("symlink:"):
            path.symlink_to(content.removeprefix("symlink:"))
        else:
            path.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def layer_from(tmp: Path, name: str, files: dict[str, str | bytes | None]) -> Path:
    tar_from_directory(make_tree(tmp / f"{name}-src", files), tmp / f"{name}.tar", EPOCH)
    return tmp / f"{name}.tar"


def raw_layer(path: Path, entries: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    """A layer written entry by entry (for whiteouts and hard links)."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for member, data in entries:
            tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return path


def info(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **extra
) -> tuple[tarfile.TarInfo, bytes]:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.mtime = extra.pop("mtime", EPOCH)
    member.mode = extra.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
    member.uid = extra.pop("uid", 1000)
    member.uname = extra.pop("uname", "someone")
    for key, value in extra.items():
        setattr(member, key, value)
    if kind == tarfile.REGTYPE:
        member.size = len(data)
    return member, data


def entries_of(tar_path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(tar_path) as tar:
        return {m.name: m for m in tar.getmembers()}


def contents(tar_path: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    with tarfile.open(tar_path) as tar:
        for member in tar:
            if member.isreg():
                out[member.name] = tar.extractfile(member).read()
            elif member.issym():
                out[member.name] = "symlink:" + member.linkname
            elif member.islnk():
                out[member.name] = "hardlink:" + member.linkname
            elif member.isdir():
                out[member.name] = "dir"
    return out


# -- writing and reading ---------------------------------------------------------------------


def test_write_lookup_flatten_round_trip(tmp_path):
    base = layer_from(
        tmp_path,
        "base",
        {
            "usr/bin/tool": "v1",
            "etc/os-release": "ID=test\n",
            "usr/lib/libx.so": "symlink:libx.so.1",
        },
    )
    (tmp_path / "base-src/usr/bin/tool").chmod(0o755)
    tar_from_directory(tmp_path / "base-src", base, EPOCH)
    top = layer_from(tmp_path, "top", {"usr/bin/tool": "v2", "boot/vmlinuz": b"\x7fELF"})
    layout = Layout(tmp_path / "store")
    digest = layout.write_image(
        "local/pkgs/kernel:v1",
        {"amd64": Image([base, top], {"Env": ["A=1"]}, "2024-01-01T00:00:00Z")},
        annotations={"org.opencontainers.image.version": "v1"},
    )

    desc = layout.lookup("local/pkgs/kernel:v1")
    assert desc is not None and desc.digest == digest and desc.media_type == OCI_INDEX
    assert desc.annotations == {
        REF_NAME: "local/pkgs/kernel:v1",
        "org.opencontainers.image.version": "v1",
    }
    assert layout.lookup("local/pkgs/kernel:v2") is None

    manifest = layout.manifest_for("local/pkgs/kernel:v1", "amd64")
    assert manifest["mediaType"] == OCI_MANIFEST
    assert [layer["mediaType"] for layer in manifest["layers"]] == [OCI_LAYER_TAR] * 2
    config = layout.read_json(manifest["config"]["digest"])
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert config["config"] == {"Env": ["A=1"]} and config["created"] == "2024-01-01T00:00:00Z"
    assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in manifest["layers"]]
    assert layout.manifest_for("local/pkgs/kernel:v1", "arm64") is None

    out = tmp_path / "rootfs.tar"
    layout.flatten("local/pkgs/kernel:v1", "amd64", out)
    assert contents(out) == {
        "boot": "dir",
        "boot/vmlinuz": b"\x7fELF",
        "etc": "dir",
        "etc/os-release": b"ID=test\n",
        "usr": "dir",
        "usr/bin": "dir",
        "usr/bin/tool": b"v2",
        "usr/lib": "dir",
        "usr/lib/libx.so": "symlink:libx.so.1",
    }
    members = entries_of(out)
    assert list(members) == sorted(members)  # entries come sorted
    for member in members.values():
        assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
        assert member.mtime == EPOCH
    assert members["usr/bin/tool"].mode == 0o644  # the top layer's file, with its mode


def test_index_json_is_a_valid_layout_with_the_ref_annotation(tmp_path):
    layer = layer_from(tmp_path, "l", {"a": "1"})
    layout = Layout(tmp_path / "store")
    digest = layout.write_image("pkgs/kernel:v1", {"amd64": Image([layer])})
    assert json.loads((tmp_path / "store/oci-layout").read_text()) == {
        "imageLayoutVersion": "1.0.0"
    }
    index = json.loads((tmp_path / "store/index.json").read_text())
    assert index["schemaVersion"] == 2
    assert index["manifests"] == [
        {
            "annotations": {REF_NAME: "pkgs/kernel:v1"},
            "digest": digest,
            "mediaType": OCI_INDEX,
            "size": layout.blob_path(digest).stat().st_size,
        }
    ]
    image_index = json.loads(layout.blob_path(digest).read_bytes())
    assert image_index["manifests"][0]["platform"] == {"architecture": "amd64", "os": "linux"}
    # Canonical JSON: what is stored is what canonical_json gives.
    assert layout.blob_path(digest).read_bytes() == canonical_json(image_index)


def test_same_inputs_give_the_same_digests(tmp_path):
    def build(where: Path) -> str:
        where.mkdir()
        first = layer_from(where, "a", {"usr/bin/x": "x", "etc/y": "y"})
        second = layer_from(where, "b", {"usr/share/z": "z"})
        images = {"arm64": Image([first, second]), "amd64": Image([first])}
        return Layout(where / "store").write_image("pkgs/x:v1", images)

    assert build(tmp_path / "one") == build(tmp_path / "two")
    layout = Layout(tmp_path / "one/store")
    # Writing again changes nothing, and a different config gives a different digest.
    first = tmp_path / "one/a.tar"
    again = layout.write_image("pkgs/x:v1", {"arm64": Image([first])})
    assert again != build(tmp_path / "three")
    assert layout.lookup("pkgs/x:v1").digest == again  # the ref moved to the new image
    assert layout.refs() == ["pkgs/x:v1"]


def test_tar_from_directory_is_deterministic(tmp_path):
    files = {"b/file": "data", "a": None, "a/link": "symlink:../b/file", "c": "top"}
    one = make_tree(tmp_path / "one", files)
    two = make_tree(tmp_path / "two", dict(reversed(files.items())))
    os.utime(two / "c", (1, 1))
    (one / "c").chmod(0o700)
    (two / "c").chmod(0o700)
    tar_from_directory(one, tmp_path / "one.tar", EPOCH)
    tar_from_directory(two, tmp_path / "two.tar", EPOCH)
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()
    members = entries_of(tmp_path / "one.tar")
    assert list(members) == ["a", "a/link", "b", "b/file", "c"]
    assert members["c"].mode == 0o700 and members["a/link"].linkname == "../b/file"
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members.values()} == {
        (0, 0, "", "", EPOCH)
    }


def test_whiteouts_and_opaque_directories(tmp_path):
    lower = raw_layer(
        tmp_path / "lower.tar",
        [
            info("etc", tarfile.DIRTYPE),
            info("etc/keep", data=b"keep"),
            info("etc/gone", data=b"gone"),
            info("var", tarfile.DIRTYPE),
            info("var/cache", tarfile.DIRTYPE),
            info("var/cache/old1", data=b"1"),
            info("var/cache/sub", tarfile.DIRTYPE),
            info("var/cache/sub/old2", data=b"2"),
            info("opt", tarfile.DIRTYPE),
            info("opt/tree", tarfile.DIRTYPE),
            info("opt/tree/leaf", data=b"leaf"),
        ],
    )
    upper = raw_layer(
        tmp_path / "upper.tar",
        [
            info("./etc/.wh.gone"),
            info("./var/cache/.wh..wh..opq"),
            info("./var/cache/new", data=b"new"),  # same layer as the opaque marker: kept
            info("./opt/.wh.tree"),
            info("./opt/tree", data=b"now a file"),  # replaced by a file in the same layer
            info("./etc/.wh.never-existed"),
        ],
    )
    layout = Layout(tmp_path / "store")
    layout.write_image("wh", {"amd64": Image([lower, upper])})
    layout.flatten("wh", "amd64", tmp_path / "out.tar")
    assert contents(tmp_path / "out.tar") == {
        "etc": "dir",
        "etc/keep": b"keep",
        "opt": "dir",
        "opt/tree": b"now a file",
        "var": "dir",
        "var/cache": "dir",
        "var/cache/new": b"new",
    }


def test_flatten_keeps_modes_mtimes_links_and_hard_links(tmp_path):
    layer = raw_layer(
        tmp_path / "l.tar",
        [
            info("bin", tarfile.DIRTYPE, mode=0o555, mtime=5),
            info("bin/su", data=b"su", mode=0o4755, mtime=7),
            info("bin/zz-original", data=b"shared", mtime=9),
            info("bin/aa-link", tarfile.LNKTYPE, linkname="bin/zz-original"),
            info("bin/sh", tarfile.SYMTYPE, linkname="busybox"),
            info("dev", tarfile.DIRTYPE),
            info("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
        ],
    )
    # A later layer replaces the link target: the hard link keeps the old bytes.
    later = raw_layer(tmp_path / "m.tar", [info("bin/zz-original", data=b"replaced")])
    layout = Layout(tmp_path / "store")
    layout.write_image("links", {"amd64": Image([layer])})
    layout.write_image("links2", {"amd64": Image([layer, later])})
    layout.flatten("links", "amd64", tmp_path / "out.tar")
    members = entries_of(tmp_path / "out.tar")
    assert members["bin"].mode == 0o555 and members["bin"].mtime == 5
    assert members["bin/su"].mode == 0o4755 and members["bin/su"].mtime == 7
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "busybox"
    null = members["dev/null"]
    assert null.ischr() and (null.devmajor, null.devminor) == (1, 3)
    # The first name in output order carries the data; the other is a hard link to it.
    assert members["bin/aa-link"].isreg() and members["bin/zz-original"].islnk()
    assert members["bin/zz-original"].linkname == "bin/aa-link"
    with tarfile.open(tmp_path / "out.tar") as tar:
        assert tar.extractfile("bin/zz-original").read() == b"shared"

    layout.flatten("links2", "amd64", tmp_path / "out2.tar")
    assert contents(tmp_path / "out2.tar")["bin/aa-link"] == b"shared"
    assert contents(tmp_path / "out2.tar")["bin/zz-original"] == b"replaced"


def _put_compressed(layout: Layout, tar: Path, kind: str) -> dict:
    if kind == "gzip":
        data = gzip.compress(tar.read_bytes(), mtime=0)
        media_type = OCI_LAYER_GZIP
    else:
        data = subprocess.run(
            ["zstd", "-q", "-c", str(tar)], capture_output=True, check=True
        ).stdout
        media_type = OCI_LAYER_ZSTD
    return layout.put_blob(data, media_type).to_json()


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_compressed_layers_are_read(tmp_path, kind):
    first = layer_from(tmp_path, "a", {"usr/bin/x": "x" * 100_000})
    second = raw_layer(tmp_path / "b.tar", [info("usr/bin/.wh.x"), info("usr/bin/y", data=b"y")])
    layout = Layout(tmp_path / "store")
    layers = [_put_compressed(layout, first, kind), _put_compressed(layout, second, kind)]
    config = layout.put_blob(
        canonical_json({"architecture": "arm64", "os": "linux", "rootfs": {"type": "layers"}}),
        "application/vnd.oci.image.config.v1+json",
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.to_json(),
        "layers": layers,
    }
    # A ref straight at a single-arch manifest, as a registry pull of such an image stores it.
    layout.set_ref("single", layout.put_blob(canonical_json(manifest), OCI_MANIFEST))
    assert layout.manifest_for("single", "arm64") == manifest
    assert layout.manifest_for("single", "amd64") is None
    layout.flatten("single", "arm64", tmp_path / "out.tar")
    assert contents(tmp_path / "out.tar") == {"usr": "dir", "usr/bin": "dir", "usr/bin/y": b"y"}


def test_missing_refs_and_arches_are_clear_errors(tmp_path):
    layer = layer_from(tmp_path, "l", {"a": "1"})
    layout = Layout(tmp_path / "store")
    layout.write_image("pkgs/kernel:v1", {"amd64": Image([layer])})
    with pytest.raises(LayoutError, match=r"no image pkgs/kernel:v2 .*it has: pkgs/kernel:v1"):
        layout.flatten("pkgs/kernel:v2", "amd64", tmp_path / "out.tar")
    with pytest.raises(LayoutError, match=r"no linux/arm64 image .*it has: linux/amd64"):
        layout.flatten("pkgs/kernel:v1", "arm64", tmp_path / "out.tar")
    assert not (tmp_path / "out.tar").exists()


def test_corrupt_blobs_are_detected_dropped_and_repaired_by_a_rewrite(tmp_path):
    layer = layer_from(tmp_path, "l", {"a": "1"})
    layout = Layout(tmp_path / "store")
    layout.write_image("x", {"amd64": Image([layer])})
    manifest = layout.manifest_for("x", "amd64")
    blob = layout.blob_path(manifest["layers"][0]["digest"])
    layout.verify_blob(manifest["layers"][0]["digest"])
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes().replace(b"1", b"2"))
    with pytest.raises(DigestMismatchError) as caught:
        layout.verify_blob(manifest["layers"][0]["digest"])
    assert caught.value.expected == manifest["layers"][0]["digest"]
    assert not blob.exists()
    with pytest.raises(LayoutError, match="missing"):
        layout.flatten("x", "amd64", tmp_path / "out.tar")
    layout.write_image("x", {"amd64": Image([layer])})
    layout.flatten("x", "amd64", tmp_path / "out.tar")
    with pytest.raises(DigestMismatchError):
        layout.put_blob_stream(io.BytesIO(b"other"), OCI_LAYER_TAR, expected="sha256:" + "0" * 64)
    assert not layout.has_blob("sha256:" + "0" * 64)


def test_blobs_are_stored_once_and_read_only(tmp_path):
    layout = Layout(tmp_path / "store")
    first = layout.put_blob(b"hello")
    second = layout.put_blob_file(make_tree(tmp_path, {"f": "hello"}) / "f", OCI_LAYER_TAR)
    assert first.digest == second.digest and first.size == second.size == 5
    assert layout.blob_path(first.digest).stat().st_mode & 0o777 == 0o444
    assert sorted(p.name for p in (tmp_path / "store/blobs/sha256").iterdir()) == [
        first.digest.removeprefix("sha256:")
    ]


def test_racing_writers_keep_every_ref(tmp_path):
    layer = layer_from(tmp_path, "l", {"a": "1"})
    layout = Layout(tmp_path / "store")
    layout.write_image("seed", {"amd64": Image([layer])})
    script = (
        "import sys; from pathlib import Path\n"
        "from buildgraph.oci.layout import Layout, Image\n"
        "layout = Layout(Path(sys.argv[1]))\n"
        "for i in range(15):\n"
        "    layout.write_image(f'{sys.argv[2]}-{i}', {'amd64': Image([Path(sys.argv[3])])})\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / "store"), f"w{n}", str(layer)]
        )
        for n in range(4)
    ]
    threads = [
        threading.Thread(
            target=lambda n=n: [
                Layout(tmp_path / "store").write_image(f"t{n}-{i}", {"amd64": Image([layer])})
                for i in range(15)
            ]
        )
        for n in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(proc.wait() == 0 for proc in procs)
    expected = {"seed"} | {f"w{n}-{i}" for n in range(4) for i in range(15)}
    expected |= {f"t{n}-{i}" for n in range(2) for i in range(15)}
    assert set(layout.refs()) == expected


# -- interop ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("ref", ["v1", "pkgs/kernel:v1", "local/pkgs/kernel:v1"])
def test_skopeo_reads_what_we_write(tmp_path, ref):
    # skopeo's oci transport is oci:PATH:REF, split at the first ':', so the PATH may not
    # hold a ':'; the ref name may hold ':' and '/' (checked with skopeo 1.9).
    assert ":" not in str(tmp_path)
    first = layer_from(tmp_path, "a", {"usr/bin/x": "x"})
    second = layer_from(tmp_path, "b", {"usr/bin/y": "y"})
    layout = Layout(tmp_path / "store")
    digest = layout.write_image(ref, {"amd64": Image([first, second]), "arm64": Image([first])})
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{tmp_path / 'store'}:{ref}"],
        capture_output=True,
        check=True,
    ).stdout
    assert raw == layout.blob_path(digest).read_bytes()
    for arch in ("amd64", "arm64"):
        out = tmp_path / f"dir-{arch}"
        subprocess.run(
            [
                "skopeo", f"--override-arch={arch}", "--override-os=linux", "copy", "-q",
                f"oci:{tmp_path / 'store'}:{ref}", f"dir:{out}",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest == layout.manifest_for(ref, arch)
        for layer in manifest["layers"]:
            assert (out / layer["digest"].removeprefix("sha256:")).read_bytes() == (
                layout.blob_path(layer["digest"]).read_bytes()
            )
    store = tmp_path / "store"
    subprocess.run(
        ["skopeo", "copy", "-q", "--all", f"oci:{store}:{ref}", f"dir:{tmp_path / 'all'}"],
        check=True,
        capture_output=True,
    )
    assert json.loads((tmp_path / "all/manifest.json").read_bytes()) == json.loads(raw)


def test_put_arch_adds_an_arch_and_keeps_the_others(tmp_path):
    layout = Layout(tmp_path / "store")
    amd = layer_from(tmp_path, "amd", {"a": "amd64"})
    arm = layer_from(tmp_path, "arm", {"a": "arm64"})
    layout.put_arch("r", "amd64", Image([amd]), {"pin": "1"})
    layout.put_arch("r", "arm64", Image([arm]))
    assert layout.architectures("r") == ["linux/amd64", "linux/arm64"]
    assert layout.manifest_for("r", "amd64")["annotations"] == {"pin": "1"}
    layout.put_arch("r", "arm64", Image([amd]))
    layers = {arch: layout.manifest_for("r", arch)["layers"] for arch in ("amd64", "arm64")}
    assert layers["amd64"] == layers["arm64"]


def test_put_arch_keeps_the_arch_of_a_ref_that_names_one_manifest(tmp_path):
    layout = Layout(tmp_path / "store")
    amd = layer_from(tmp_path, "amd", {"a": "amd64"})
    arm = layer_from(tmp_path, "arm", {"a": "arm64"})
    layout.write_image("tmp", {"amd64": Image([amd])})
    digest, manifest = layout.resolve("tmp", "amd64")
    layout.set_ref("r", Descriptor(OCI_MANIFEST, digest, len(canonical_json(manifest))))
    layout.put_arch("r", "arm64", Image([arm]))
    assert layout.architectures("r") == ["linux/amd64", "linux/arm64"]
    assert layout.resolve("r", "amd64")[0] == digest


def test_plain_http_elsewhere_only_for_registries_the_user_names(monkeypatch):
    monkeypatch.setenv("BUILDGRAPH_INSECURE_REGISTRIES", "registry.lan:5000, 192.0.2.2")
    assert parse("registry.lan:5000/a").plain_http
    assert parse("192.0.2.2:5000/a").plain_http  # a bare host allows each of its ports
    assert not parse("registry.lan:5001/a").plain_http
    assert not parse("ghcr.io/a").plain_http
    assert not parse("local/pkgs/kernel").plain_http
