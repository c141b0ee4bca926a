"""What a package reference means, decided once per plan (no network: a local store).

The probe's answer keys the node and the step fetches exactly that answer, so a re-pin,
a user's own image at the default name, or a ref moved after planning cannot put other
bytes under the key.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from buildgraph.engine.errors import BuildgraphError
from buildgraph.engine.step import Probe, StepContext
from buildgraph.oci.layout import Image, Layout, tar_from_directory
from buildgraph.steps.package import PIN_ANNOTATION, _probe, package

DEFAULT = "local/pkgs/base:latest"


def _pin(version: str) -> dict:
    return {"name": "busybox-static", "version": version, "sha256": "ab" * 32}


def _setup(tmp_path: Path, version: str = "1") -> tuple[Path, Path]:
    root, cache = tmp_path / "repo", tmp_path / "cache"
    (root / "targets").mkdir(parents=True)
    lock = {"packages": {"base": {"amd64": [_pin(version)]}}}
    (root / "targets" / "lock.json").write_text(json.dumps(lock))
    return root, cache


def _params(ref: str = DEFAULT) -> dict:
    return {"name": "base", "ref": ref, "default": DEFAULT, "lock": "targets/lock.json"}


def _store_image(tmp_path: Path, cache: Path, ref: str, content: str, pins: str | None) -> str:
    src = tmp_path / f"tree-{content}"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "busybox").write_text(content)
    layer = tmp_path / f"layer-{content}.tar"
    tar_from_directory(src, layer, mtime=0)
    store = Layout(cache / "oci")
    store.put_arch(ref, "amd64", Image([layer]), {PIN_ANNOTATION: pins} if pins else None)
    return store.resolve(ref, "amd64")[0]


def _probed(root: Path, cache: Path, ref: str = DEFAULT) -> str:
    return _probe(Probe(_params(ref), "amd64", root, cache))


def test_absent_default_is_built_from_the_pins(tmp_path: Path) -> None:
    root, cache = _setup(tmp_path)
    assert _probed(root, cache).startswith("debian ")


def test_a_re_pin_wins_over_an_image_built_from_older_pins(tmp_path: Path) -> None:
    root, cache = _setup(tmp_path, version="1")
    first = _probed(root, cache)
    _store_image(tmp_path, cache, DEFAULT, "old", pins=first.split()[1])
    assert _probed(root, cache) == first
    root2, _ = _setup(tmp_path / "b", version="2")
    second = _probed(root2, cache)
    assert second.startswith("debian ") and second != first


def test_a_users_own_image_at_the_default_name_is_used_as_it_is(tmp_path: Path) -> None:
    root, cache = _setup(tmp_path)
    digest = _store_image(tmp_path, cache, DEFAULT, "mine", pins=None)
    assert _probed(root, cache) == f"store {digest}"


def test_a_non_default_ref_missing_from_the_store_is_a_clear_error(tmp_path: Path) -> None:
    root, cache = _setup(tmp_path)
    with pytest.raises(BuildgraphError, match="not in the embedded store") as caught:
        _probed(root, cache, "local/me/base:v1")
    assert "PKG_BASE" in caught.value.hint


def test_the_step_fetches_what_was_probed_even_if_the_ref_moved_since(tmp_path: Path) -> None:
    root, cache = _setup(tmp_path)
    ref = "local/me/base:v1"
    planned = _store_image(tmp_path, cache, ref, "planned", pins=None)
    probed = _probed(root, cache, ref)
    _store_image(tmp_path, cache, ref, "moved", pins=None)
    out = tmp_path / "out"
    out.mkdir()
    ctx = StepContext(
        params=_params(ref), arch="amd64", root=root, sources=[], inputs={}, out_dir=out,
        outputs=("base.tar",), cache_dir=cache, probed=probed,
    )  # fmt: skip
    package.__wrapped__(ctx) if hasattr(package, "__wrapped__") else package(ctx)
    with tarfile.open(out / "base.tar") as tar:
        assert tar.extractfile("bin/busybox").read() == b"planned"
    assert probed == f"store {planned}"
