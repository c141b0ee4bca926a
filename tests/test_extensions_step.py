"""The ``extensions`` step on the real graph: the example extensions (``doit examples``)
and a tarball become one xz cpio of squashfs images and extensions.yaml, the same bytes
from any cache; a bad extension stops the build at planning, before any step runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from project import doit
from realgraph import build, built, clone, sha256
from registry_server import serve_registry

from buildgraph.oci.layout import tar_from_directory

pytestmark = pytest.mark.slow
AMD64 = "PLATFORM=linux/amd64"
IMAGES = "local/me/ext-hello:v1.0.0 local/me/ext-firmware:v1.0.0"
EXTRA_MANIFEST = """\
version: v1alpha1
metadata:
  name: extra
  version: 2.0+local
  author: the tests
  description: |
    A tarball extension,
    on two lines.
"""


def _extra(root: Path, name: str = "ext/extra.tar", manifest: str = EXTRA_MANIFEST) -> str:
    """An extension tarball in the checkout; returns its path relative to it."""
    tree = root.parent / f"tree-{Path(name).stem}"
    (tree / "rootfs/usr/share/extra").mkdir(parents=True)
    (tree / "manifest.yaml").write_text(manifest)
    (tree / "rootfs/usr/share/extra/README").write_text("extra\n")
    (tree / "rootfs/usr/share/extra/link").symlink_to("/usr/share/extra/README")
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    tar_from_directory(tree, root / name, 0)
    return name


def _build(root: Path, cache: Path, images: str) -> Path:
    build(root, cache, "examples", AMD64, "USERNAME=me")
    result = build(root, cache, "extensions", AMD64, "USERNAME=me", f"SYSTEM_EXTENSIONS={images}")
    assert "extensions:amd64" in result
    return root / "_out" / "extensions-amd64.cpio.xz"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str, Path]:
    """The clone, its cache, the SYSTEM_EXTENSIONS built, and a copy of the output."""
    base = tmp_path_factory.mktemp("extensions")
    root, cache = clone(base / "repo"), base / "cache"
    images = f"{IMAGES} {_extra(root)}"
    first = base / "first.cpio.xz"
    shutil.copyfile(_build(root, cache, images), first)
    return root, cache, images, first


def _unpack(cpio_xz: Path, dest: Path) -> list[str]:
    """Unpack the xz cpio into ``dest``; its member names in archive order."""
    dest.mkdir()
    data = subprocess.run(["xz", "-dc", str(cpio_xz)], capture_output=True, check=True).stdout
    names = subprocess.run(["cpio", "-t", "--quiet"], input=data, capture_output=True,
                           check=True).stdout.decode().split()  # fmt: skip
    subprocess.run(["cpio", "-id", "--quiet"], input=data, cwd=dest, check=True)
    return names


def _squashfs(path: Path) -> dict[str, str]:
    """path -> ``ls -l`` mode string of each entry of a squashfs image."""
    listing = subprocess.run(["unsquashfs", "-lls", str(path)], capture_output=True, text=True,
                             check=True).stdout.splitlines()  # fmt: skip
    found = {}
    for line in listing:
        fields = line.split()
        if fields and fields[0][0] in "-dl" and "squashfs-root" in line:
            name = line.split("squashfs-root", 1)[1].split(" -> ")[0]
            found[name or "/"] = fields[0]
    return found


def test_the_cpio_holds_extensions_yaml_and_one_squashfs_per_extension(tree, tmp_path) -> None:
    names = _unpack(tree[3], tmp_path / "cpio")
    assert names == [
        "extensions",
        "extensions.yaml",
        "extensions/000-hello.sqsh",
        "extensions/001-firmware.sqsh",
        "extensions/002-extra.sqsh",
    ]
    listing = (tmp_path / "cpio" / "extensions.yaml").read_text()
    assert listing.startswith("layers:\n- image: 000-hello.sqsh\n  metadata:\n    name: hello\n")
    assert yaml.safe_load(listing) == {
        "layers": [
            {
                "image": "000-hello.sqsh",
                "metadata": {
                    "name": "hello",
                    "version": "1.0.0",
                    "author": "buildgraph",
                    "description": "An example system extension that adds /usr/local/bin/hello.",
                },
            },
            {
                "image": "001-firmware.sqsh",
                "metadata": {
                    "name": "firmware",
                    "version": "1.0.0",
                    "author": "buildgraph",
                    "description": "An example system extension that adds firmware files under"
                    " /usr/lib/firmware/buildgraph.",
                },
            },
            {
                "image": "002-extra.sqsh",
                "metadata": {
                    "name": "extra",
                    "version": "2.0+local",
                    "author": "the tests",
                    "description": "A tarball extension, on two lines.",
                },
            },
        ]
    }
    squashed = tmp_path / "cpio" / "extensions"
    assert _squashfs(squashed / "000-hello.sqsh") == {
        "/": "drwxr-xr-x",
        "/usr": "drwxr-xr-x",
        "/usr/local": "drwxr-xr-x",
        "/usr/local/bin": "drwxr-xr-x",
        "/usr/local/bin/hello": "-rwxr-xr-x",
    }
    firmware = _squashfs(squashed / "001-firmware.sqsh")
    assert firmware["/usr/lib/firmware/buildgraph/example-1.bin"] == "-rw-r--r--"
    extra = _squashfs(squashed / "002-extra.sqsh")
    assert extra["/usr/share/extra/link"] == "lrwxrwxrwx"


def test_same_inputs_give_the_same_bytes_from_another_cache(tree, tmp_path) -> None:
    root, cache, images, first = tree
    index = root / "_out" / "images" / "ext-hello.index.json"
    before = index.read_bytes()
    assert sha256(_build(root, tmp_path / "cache", images)) == sha256(first)
    assert index.read_bytes() == before  # the image, its tree layer included, too
    # Back in the first cache nothing runs.
    again = build(root, cache, "extensions", AMD64, "USERNAME=me", f"SYSTEM_EXTENSIONS={images}")
    assert built(again) == set()


def test_an_image_from_a_registry_is_pulled_checked_and_packed(tree, tmp_path) -> None:
    root, cache, _images, _first = tree
    with serve_registry(tmp_path / "registry") as registry:
        build(root, cache, "ext-hello", AMD64, "USERNAME=me", "PUSH=true",
              f"REGISTRY={registry.host}")  # fmt: skip
        fresh = tmp_path / "cache"
        ref = f"{registry.host}/me/ext-hello:v1.0.0"
        result = build(root, fresh, "extensions", AMD64, f"SYSTEM_EXTENSIONS={ref}")
    assert built(result) == {"extensions:amd64"}
    names = _unpack(root / "_out" / "extensions-amd64.cpio.xz", tmp_path / "cpio")
    assert names == ["extensions", "extensions.yaml", "extensions/000-hello.sqsh"]


def _refused(root: Path, cache: Path, images: str, goal: str = "extensions") -> str:
    """doit's stderr for a run that must stop at planning with one error."""
    done = doit(root, cache, goal, AMD64, "USERNAME=me", f"SYSTEM_EXTENSIONS={images}",
                json_log=False)  # fmt: skip
    assert done.returncode != 0, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("buildgraph: error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def test_a_malformed_tarball_stops_the_whole_build_before_any_step(tmp_path: Path) -> None:
    root = clone(tmp_path / "repo")
    bad = _extra(root, "bad.tar", EXTRA_MANIFEST.replace("v1alpha1", "v2"))
    error = _refused(root, tmp_path / "cache", bad, goal="iso")
    assert error == (
        "buildgraph: error: extensions:amd64: system extension ./bad.tar: manifest.yaml:"
        " version 'v2' is not supported; the accepted one is v1alpha1"
    )
    assert not (root / "_out").exists()


def test_two_extensions_of_one_name_or_a_missing_one_are_refused(tree) -> None:
    root, cache, _images, _first = tree
    hello = _extra(root, "ext/hello.tar", EXTRA_MANIFEST.replace("name: extra", "name: hello"))
    error = _refused(root, cache, f"local/me/ext-hello:v1.0.0 {hello}")
    assert "system extensions local/me/ext-hello:v1.0.0 and ./ext/hello.tar are both named" in error
    error = _refused(root, cache, "local/me/ext-nope:v1.0.0")
    assert "system extension local/me/ext-nope:v1.0.0 has no linux/amd64 image" in error
    error = _refused(root, cache, "ext/nowhere.tar")
    assert "system extension ./ext/nowhere.tar: no such file" in error


def test_an_extension_missing_from_the_store_says_how_the_examples_get_there(tmp_path) -> None:
    from buildgraph.engine.errors import BuildgraphError
    from buildgraph.engine.step import Probe
    from buildgraph.steps.extensions import _resolve

    probe = Probe({}, "amd64", tmp_path, tmp_path / "steps")
    with pytest.raises(BuildgraphError) as caught:
        _resolve(probe, "local/me/ext-hello:v1")
    assert "has no linux/amd64 image in the embedded store" in caught.value.message
    assert "`doit examples` with this arch in PLATFORM" in (caught.value.hint or "")
