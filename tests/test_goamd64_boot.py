"""GOAMD64 reaches the init binary: a v3 init does not start on a CPU without v3 features.

qemu's ``qemu64`` CPU model is x86-64 v1 (no SSE4.2/POPCNT, no AVX2): a v1 init boots to
its banner there; a v3 init is stopped by the Go runtime before ``main`` runs, the kernel
panics because PID 1 exited, and ``panic=1`` with ``-no-reboot`` ends qemu. On qemu's
``max`` CPU, which has v3, the same v3 ISO boots: it is the CPU level that stops it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from qemu import BANNER, TEST_ARGS, banner, boot_iso
from realgraph import build, built, clone

pytestmark = pytest.mark.slow
LEVELS = ("v3", "v1")
REFUSED = "This program can only be run on AMD64 processors with v3 microarchitecture support."


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """level -> {"iso": ..., "init": ...}: copies, as the next build replaces _out/."""
    base = tmp_path_factory.mktemp("goamd64")
    root, cache = clone(base / "repo"), base / "cache"
    found: dict[str, dict[str, Path]] = {}
    for level in LEVELS:
        result = build(root, cache, "iso", "PLATFORM=linux/amd64", f"IMAGER_ARGS={TEST_ARGS}",
                       f"GOAMD64={level}")  # fmt: skip
        assert {"init:amd64", "initramfs-base:amd64", "initramfs:amd64", "iso:amd64"} <= built(
            result
        )
        found[level] = {}
        for kind, name in (("iso", "metal-amd64.iso"), ("init", "init-amd64")):
            found[level][kind] = base / f"{level}-{name}"
            shutil.copy(root / "_out" / name, found[level][kind])  # keeps modes: go version -m
    return found


@pytest.mark.parametrize("level", LEVELS)
def test_the_init_binary_records_the_asked_goamd64(builds, level: str) -> None:
    info = subprocess.run(["go", "version", "-m", str(builds[level]["init"])],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert f"\tGOAMD64={level}\n" in info


def test_a_v1_init_boots_to_the_banner_on_a_v1_cpu(builds) -> None:
    console = boot_iso(builds["v1"]["iso"], "amd64", "bios", cpu="qemu64")
    assert banner(console)["arch"] == "amd64"
    assert REFUSED not in console


def test_a_v3_init_is_refused_by_the_go_runtime_on_a_v1_cpu(builds) -> None:
    console = boot_iso(builds["v3"]["iso"], "amd64", "bios", cpu="qemu64")
    tail = "\n".join(console.splitlines()[-40:])
    assert REFUSED in console, tail
    assert "Attempted to kill init!" in console, tail
    assert BANNER.search(console) is None, tail


def test_the_same_v3_iso_boots_on_a_cpu_with_v3(builds) -> None:
    console = boot_iso(builds["v3"]["iso"], "amd64", "bios", cpu="max")
    assert banner(console)["arch"] == "amd64"
    assert REFUSED not in console
