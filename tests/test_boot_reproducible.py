"""Boot assets are reproducible: two clean builds, in two clones with two caches, agree.

Nothing is shared between the builds: not the checkout path, not the cache (package
downloads, Go build cache, apt state), not HOME, not the time of day, not the order in
which steps run (the second build runs two steps at a time). TAG and SOURCE_DATE_EPOCH
are the same, as tests/project.py fixes them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from realgraph import build, clone, sha256

pytestmark = pytest.mark.slow
ARCHES = ("amd64", "arm64")
OUTPUTS = {
    "kernel": "vmlinuz-{arch}",
    "initramfs": "initramfs-{arch}.xz",
    "iso": "metal-{arch}.iso",
}


@pytest.fixture(scope="module")
def outs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    dirs = []
    for side, jobs in (("first", ()), ("second", ("-n", "2"))):
        base = tmp_path_factory.mktemp(side)
        root, cache = clone(base / "repo"), base / "cache"
        result = build(root, cache, *jobs, "iso", "kernel", "initramfs",
                       "PLATFORM=linux/amd64,linux/arm64")  # fmt: skip
        # Each build made every node itself: no step output came from the other's cache.
        assert set(result.values()) == {"built"}, result
        assert len(result) == 9 * len(ARCHES)
        dirs.append(root / "_out")
    return dirs[0], dirs[1]


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("output", OUTPUTS)
def test_two_clean_builds_in_separate_clones_and_caches_give_the_same_bytes(
    outs: tuple[Path, Path], output: str, arch: str
) -> None:
    first, second = (out / OUTPUTS[output].format(arch=arch) for out in outs)
    sizes = first.stat().st_size, second.stat().st_size
    assert sha256(first) == sha256(second), f"{first.name} differs; sizes {sizes}"
