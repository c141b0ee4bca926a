"""The real boot-asset graph: the ISO boots in qemu, readers agree, rebuilds are exact.

One build of both arches (module fixture) serves every test here; the tests that change
variables run in order on the same clone and cache, as a developer would.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from qemu import TEST_ARGS, banner, boot_iso
from realgraph import build, built, clone

pytestmark = pytest.mark.slow
BOTH = "PLATFORM=linux/amd64,linux/arm64"
ARGS = f"IMAGER_ARGS={TEST_ARGS}"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("boot")
    root, cache = clone(base / "repo"), base / "cache"
    build(root, cache, "iso", "kernel", "initramfs", BOTH, ARGS)
    return root, cache


@pytest.mark.parametrize(
    ("arch", "firmware"), [("amd64", "bios"), ("amd64", "uefi"), ("arm64", "uefi")]
)
def test_iso_boots_to_the_banner_with_the_asked_cmdline(tree, arch: str, firmware: str) -> None:
    root, _cache = tree
    console = boot_iso(root / "_out" / f"metal-{arch}.iso", arch, firmware)
    fields = banner(console)
    assert fields["arch"] == arch
    assert fields["version"] == "v1.0.0"
    assert fields["cmdline"] == (root / "_out" / f"cmdline-metal-{arch}").read_text().strip()
    assert "buildgraph.poweroff=1" in fields["cmdline"]


def test_kernel_and_initramfs_are_placed(tree) -> None:
    out = tree[0] / "_out"
    for arch in ("amd64", "arm64"):
        assert (out / f"vmlinuz-{arch}").stat().st_size > 1 << 20
        assert (out / f"initramfs-{arch}.xz").read_bytes()[:6] == b"\xfd7zXZ\0"


def test_independent_readers_agree(tree, tmp_path: Path) -> None:
    out = tree[0] / "_out"
    report = subprocess.run(
        ["xorriso", "-indev", str(out / "metal-amd64.iso"), "-report_el_torito", "plain"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "BIOS" in report and "UEFI" in report
    arm = subprocess.run(
        ["xorriso", "-indev", str(out / "metal-arm64.iso"), "-report_el_torito", "plain"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "UEFI" in arm and "BIOS" not in arm.split("El Torito boot img")[1]

    cpio = tmp_path / "initramfs.cpio"
    cpio.write_bytes(subprocess.run(["xz", "-dc", str(out / "initramfs-amd64.xz")],
                                    capture_output=True, check=True).stdout)  # fmt: skip
    listing = subprocess.run(["cpio", "-t", "-F", str(cpio)], capture_output=True,
                             text=True, check=True).stdout.split()  # fmt: skip
    assert {"init", "rootfs.sqsh", "lib/modules/load.list", "dev/console"} <= set(listing)
    assert any(name.endswith("/squashfs.ko") for name in listing)

    files = subprocess.run(["unsquashfs", "-l", str(out / "rootfs-amd64.sqsh")],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "squashfs-root/bin/busybox" in files and "squashfs-root/etc/os-release" in files


ISO = {"pkg-kernel", "pkg-base", "pkg-grub", "kernel", "init", "rootfs", "initramfs-base",
       "initramfs", "cmdline-metal", "iso-cmdline", "iso"}  # fmt: skip


def _amd64(*targets: str) -> set[str]:
    return {f"{target}:amd64" for target in targets}


def test_goamd64_rebuilds_the_init_and_what_holds_it_never_the_kernel(tree) -> None:
    root, cache = tree
    assert built(build(root, cache, "iso", ARGS, "GOAMD64=v3")) == _amd64(
        "init", "initramfs-base", "initramfs", "iso"
    )
    assert built(build(root, cache, "iso", ARGS)) == set()


def test_an_extra_kernel_arg_rebuilds_only_cmdline_and_iso(tree) -> None:
    root, cache = tree
    more = f"IMAGER_ARGS={TEST_ARGS} --extra-kernel-arg=net.ifnames=0"
    result = build(root, cache, "iso", more)
    assert built(result) == _amd64("cmdline-metal", "iso-cmdline", "iso")
    assert set(result) == _amd64(*ISO)
    assert built(build(root, cache, "iso", ARGS)) == set()
