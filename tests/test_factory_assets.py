"""The factory's asset path grammar: what each name asks for, first match winning."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buildgraph.factory.assets import KINDS, SUFFIXES, Asset, AssetError, machine, name, parse


@pytest.mark.parametrize(
    ("path", "asset"),
    [
        ("kernel-amd64", Asset("kernel", "amd64")),
        ("cmdline-metal-arm64-secureboot", Asset("cmdline", "arm64", "metal", True)),
        ("initramfs-arm64.xz", Asset("initramfs", "arm64")),
        ("metal-amd64.iso", Asset("iso", "amd64")),
        ("metal-amd64-secureboot-uki.efi", Asset("uki", "amd64", "metal", True)),
        ("installer-amd64-secureboot.tar", Asset("installer", "amd64", "metal", True)),
        ("aws-installer-arm64.tar", Asset("installer", "arm64", "aws")),
        ("digital-ocean-amd64.raw.gz", Asset("image", "amd64", "digital-ocean", False, "raw.gz")),
        ("gcp-amd64.raw.tar.gz", Asset("image", "amd64", "gcp", False, "raw.tar.gz")),
        ("vmware-amd64.ova", Asset("image", "amd64", "vmware", False, "ova")),
        ("metal-arm64-secureboot.qcow2.zst", Asset("image", "arm64", "metal", True, "qcow2.zst")),
    ],
)
def test_a_path_names_its_asset(path: str, asset: Asset) -> None:
    assert parse(path) == asset
    assert name(asset) == path


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("metal-amd64.vdi", "invalid profile path"),
        ("metal-amd64.ova.xz", "do not come as .xz"),
        ("metal-amd64.qcow2.tar.gz", "do not come as .tar.gz"),
        ("metal-riscv64.raw", "not <platform>-<arch>"),
        ("../metal-amd64.raw", "not <platform>-<arch>"),
        ("", "invalid profile path"),
    ],
)
def test_a_path_that_names_no_asset_says_why(path: str, says: str) -> None:
    with pytest.raises(AssetError, match=says.replace(".", r"\.")):
        parse(path)


PLATFORMS = st.from_regex(r"[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,5})?", fullmatch=True).filter(
    lambda p: p not in ("kernel", "cmdline", "initramfs", "installer")
    and not p.endswith("-installer")
)


@given(
    kind=st.sampled_from(sorted({kind for kind, _ in KINDS} | {"image"})),
    arch=st.sampled_from(["amd64", "arm64"]),
    platform=PLATFORMS,
    secureboot=st.booleans(),
    suffix=st.sampled_from(SUFFIXES),
)
def test_every_asset_s_name_parses_back_to_it(kind, arch, platform, secureboot, suffix) -> None:
    asset = Asset(
        kind,
        arch,
        "metal" if kind in ("kernel", "initramfs") else platform,
        secureboot and kind not in ("kernel", "initramfs"),
        suffix if kind == "image" else "",
    )
    assert parse(name(asset)) == asset


def test_a_pxe_path_is_a_machine_without_a_suffix() -> None:
    assert machine("digital-ocean-amd64") == Asset("cmdline", "amd64", "digital-ocean")
    with pytest.raises(AssetError, match="invalid PXE path"):
        machine("metal-amd64.iso")
