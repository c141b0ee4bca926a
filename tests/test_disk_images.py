"""The real disk-image graph: metal and a qcow2 boot in qemu, readers agree, edits rebuild
only what they change.

One build (module fixture) of image-metal and image-oracle for both arches serves every
test; the tests that change inputs run in order on the same clone and cache.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from qemu import TEST_ARGS, banner, boot_disk
from realgraph import build, built, clone

pytestmark = pytest.mark.slow
BOTH = "PLATFORM=linux/amd64,linux/arm64"
ARGS = f"IMAGER_ARGS={TEST_ARGS}"
GOAL = ("image-metal", "image-oracle", BOTH, ARGS)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("disk")
    root, cache = clone(base / "repo"), base / "cache"
    build(root, cache, *GOAL)
    return root, cache


def _unzstd(path: Path, dest: Path) -> Path:
    subprocess.run(["zstd", "-d", "-q", "--sparse", str(path), "-o", str(dest)], check=True)
    return dest


@pytest.mark.parametrize(
    ("arch", "firmware"), [("amd64", "bios"), ("amd64", "uefi"), ("arm64", "uefi")]
)
def test_metal_disk_boots_to_the_banner(tree, tmp_path: Path, arch: str, firmware: str) -> None:
    out = tree[0] / "_out"
    disk = _unzstd(out / f"metal-{arch}.raw.zst", tmp_path / "metal.raw")
    fields = banner(boot_disk(disk, arch, firmware))
    assert fields["arch"] == arch
    assert fields["cmdline"] == (out / f"cmdline-metal-{arch}").read_text().strip()
    assert "buildgraph.platform=metal" in fields["cmdline"]
    assert "buildgraph.poweroff=1" in fields["cmdline"]


def test_a_qcow2_image_boots(tree, tmp_path: Path) -> None:
    out = tree[0] / "_out"
    disk = _unzstd(out / "oracle-amd64.qcow2.zst", tmp_path / "oracle.qcow2")
    subprocess.run(["qemu-img", "check", str(disk)], check=True, capture_output=True)
    fields = banner(boot_disk(disk, "amd64", "uefi", fmt="qcow2"))
    assert "buildgraph.platform=oracle" in fields["cmdline"]


def _partitions(disk: Path) -> dict[str, tuple[int, int]]:
    """label -> (first sector, sectors), as sgdisk reads the GPT."""
    table = subprocess.run(["sgdisk", "-p", str(disk)], capture_output=True, text=True,
                           check=True).stdout  # fmt: skip
    rows = re.findall(r"^\s+\d+\s+(\d+)\s+(\d+)\s+\S+ \S+\s+\S+\s+(\S+)$", table, re.MULTILINE)
    return {label: (int(first), int(last) - int(first) + 1) for first, last, label in rows}


def _extract(disk: Path, first: int, count: int, dest: Path) -> Path:
    subprocess.run(["dd", f"if={disk}", f"of={dest}", f"skip={first}", f"count={count}",
                    "status=none", "conv=sparse"], check=True)  # fmt: skip
    return dest


@pytest.mark.parametrize(("arch", "labels"), [
    ("amd64", ["EFI", "BIOS", "BOOT", "META"]), ("arm64", ["EFI", "BOOT", "META"]),
])  # fmt: skip
def test_independent_readers_agree_on_the_metal_disk(
    tree, tmp_path: Path, arch: str, labels: list[str]
) -> None:
    disk = _unzstd(tree[0] / "_out" / f"metal-{arch}.raw.zst", tmp_path / "metal.raw")
    verify = subprocess.run(["sgdisk", "-v", str(disk)], capture_output=True, text=True)
    assert verify.returncode == 0 and "No problems found" in verify.stdout, verify.stdout
    parts = _partitions(disk)
    assert list(parts) == labels
    assert parts["META"][1] * 512 == 1 << 20
    esp = _extract(disk, *parts["EFI"], tmp_path / "esp.img")
    subprocess.run(["fsck.vfat", "-n", str(esp)], check=True, capture_output=True)
    loader = "BOOTX64.EFI" if arch == "amd64" else "BOOTAA64.EFI"
    listing = subprocess.run(["mdir", "-b", "-i", str(esp), "::/EFI/BOOT"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert loader in listing
    boot = _extract(disk, *parts["BOOT"], tmp_path / "boot.img")
    subprocess.run(["e2fsck", "-fn", str(boot)], check=True, capture_output=True)
    files = subprocess.run(["debugfs", "-R", "ls -p /A", str(boot)], capture_output=True,
                           text=True, check=True).stdout  # fmt: skip
    assert "/vmlinuz/" in files and "/initramfs.xz/" in files


def test_disks_are_sparse_in_out_and_in_the_cache(tree) -> None:
    root, cache = tree
    raw = root / "_out" / "disks" / "oracle-amd64.raw"
    assert raw.stat().st_size == 8 << 30
    assert raw.stat().st_blocks * 512 < 64 << 20
    used = sum(p.stat().st_blocks * 512 for p in cache.rglob("*") if p.is_file())
    assert used < 1 << 30, f"the cache holds {used >> 20} MiB for two 8 GiB and two 1.2 GiB disks"


def _amd64_arm64(*targets: str) -> set[str]:
    return {f"{target}:{arch}" for target in targets for arch in ("amd64", "arm64")}


def test_a_format_change_rebuilds_only_that_image(tree) -> None:
    root, cache = tree
    profile = root / "targets" / "profiles" / "oracle.yaml"
    text = profile.read_text()
    profile.write_text(text.replace('outFormat: ".zst"', 'outFormat: ".xz"'))
    try:
        assert built(build(root, cache, *GOAL)) == _amd64_arm64("image-oracle")
        assert (root / "_out" / "oracle-arm64.qcow2.xz").is_file()
    finally:
        profile.write_text(text)
    assert built(build(root, cache, *GOAL)) == set()


def test_zstd_level_rebuilds_images_never_the_raw_disks(tree) -> None:
    root, cache = tree
    result = build(root, cache, *GOAL, "ZSTD_LEVEL=3")
    assert built(result) == _amd64_arm64("image-metal", "image-oracle")


def test_an_extra_kernel_arg_reaches_the_disk_but_not_the_kernel(tree) -> None:
    root, cache = tree
    more = f"IMAGER_ARGS={TEST_ARGS} --extra-kernel-arg=net.ifnames=0"
    result = build(root, cache, "image-metal", "PLATFORM=linux/amd64", more)
    assert built(result) == {"cmdline-metal:amd64", "disk-metal:amd64", "edit-metal:amd64",
                             "image-metal:amd64"}  # fmt: skip
    assert "net.ifnames=0" in (root / "_out" / "cmdline-metal-amd64").read_text()


def test_a_profile_with_the_same_disk_shares_it_and_converts_only(tree) -> None:
    root, cache = tree
    metal = (root / "targets" / "profiles" / "metal.yaml").read_text()
    qcow2 = root / "targets" / "profiles" / "metal-qcow2.yaml"
    qcow2.write_text(metal.replace("diskFormat: raw", "diskFormat: qcow2").replace(
        "outFormat: .zst", 'outFormat: ""'))  # fmt: skip
    try:
        result = build(root, cache, "image-metal", "image-metal-qcow2", BOTH, ARGS)
        assert built(result) == _amd64_arm64("image-metal-qcow2")
        assert "disk-metal:amd64" in result and "disk-metal-qcow2:amd64" not in result
        assert (root / "_out" / "metal-amd64.qcow2").is_file()
    finally:
        qcow2.unlink()
