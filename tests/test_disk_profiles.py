"""Disk-image profiles are data: each bad one stops the plan with one message, before
anything is built or written to _out/."""

from __future__ import annotations

from pathlib import Path

import pytest
from checkout import copy_checkout
from project import doit

GOOD = """platform: test
arches: [amd64]
consoles: [console=ttyS0]
kernelArgs: []
diskSize: 2GiB
diskFormat: raw
outFormat: .zst
"""


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_checkout(tmp_path_factory.mktemp("profiles") / "repo")


def _plan(root: Path, profile: str | None, *args: str) -> str:
    """doit's stderr for a failed run with targets/profiles/test.yaml set to ``profile``."""
    path = root / "targets" / "profiles" / "test.yaml"
    if profile is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(profile)
    done = doit(root, root.parent / "cache", *args, json_log=False)
    assert done.returncode != 0, done.stderr
    assert not (root / "_out").exists(), sorted((root / "_out").rglob("*"))
    errors = [line for line in done.stderr.splitlines() if line.startswith("buildgraph: error:")]
    assert len(errors) == 1, done.stderr
    return done.stderr


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("diskFormat: raw", "diskFormat: raw\ncolour: blue"),
            "profile 'test' has unknown field 'colour'",
        ),
        (
            ("diskSize: 2GiB", "diskSize: 512MiB"),
            "disk size '512MiB' (536870912 bytes) is too"
            " small for the partitions, which need 1104 MiB",
        ),
        (("diskSize: 2GiB", "diskSize: lots"), "disk size 'lots': give bytes or a number"),
        (("diskFormat: raw", "diskFormat: vdi"), "unknown disk format 'vdi'"),
        (("outFormat: .zst", "outFormat: .bz2"), "unknown compression '.bz2'"),
        (("arches: [amd64]", "arches: [riscv64]"), "unknown arch 'riscv64'"),
    ],
)
def test_a_bad_profile_is_refused_with_its_reason(
    checkout: Path, edit: tuple[str, str], message: str
) -> None:
    stderr = _plan(checkout, GOOD.replace(*edit), "image-test", "PLATFORM=linux/amd64")
    assert message in stderr
    assert "targets/profiles/test.yaml" in stderr


def test_a_profile_missing_a_field_names_it(checkout: Path) -> None:
    stderr = _plan(checkout, GOOD.replace("diskSize: 2GiB\n", ""), "image-test")
    assert "diskSize" in stderr and "targets/profiles/test.yaml" in stderr


def test_an_arch_the_profile_does_not_support_is_refused(checkout: Path) -> None:
    stderr = _plan(checkout, None, "image-vmware", "PLATFORM=linux/arm64")
    assert "'image-vmware' builds for amd64 only" in stderr
    assert "add linux/amd64 to PLATFORM" in stderr


def test_an_unknown_profile_lists_the_known_ones(checkout: Path) -> None:
    stderr = _plan(checkout, None, "image-nope")
    assert "unknown profile 'nope' for target image-%" in stderr
    assert "metal" in stderr and "aws" in stderr
