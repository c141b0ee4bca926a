"""Partition edits as data: a profile's ``edits`` reach its image through the edit-%
node, cached apart from the disk build; LINT=true lints what image-% converts; an edited
metal disk boots with the edit.

One clone and cache (module fixture) serve every test, in order.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from project import doit, statuses
from qemu import TEST_ARGS, banner, boot_disk
from realgraph import build, built, clone

from buildgraph.diskimage import gpt
from buildgraph.engine import sparse

pytestmark = pytest.mark.slow
AMD64 = "PLATFORM=linux/amd64"
ARGS = f"IMAGER_ARGS={TEST_ARGS}"


def profile(root: Path, name: str, edits: str) -> None:
    """A profile ``name`` (metal-x): metal's fields, ``edits`` (YAML), and the variant -x
    that names its image apart from metal's."""
    metal = (root / "targets" / "profiles" / "metal.yaml").read_text()
    variant = name.removeprefix("metal")
    text = f"{metal}variant: {variant}\nedits:\n{edits}"
    (root / "targets" / "profiles" / f"{name}.yaml").write_text(text)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("edits")
    root, cache = clone(base / "repo"), base / "cache"
    (root / "targets" / "edits").mkdir(exist_ok=True)
    (root / "targets" / "edits" / "motd.txt").write_text("edited offline\n")
    profile(root, "metal-custom", """\
  - partition: BOOT
    add: {src: targets/edits/motd.txt, dest: /motd.txt}
    mkdir: /custom
""")  # fmt: skip
    build(root, cache, "image-metal", "image-metal-custom", AMD64, ARGS)
    return root, cache


def boot_partition(disk: Path, dest: Path) -> Path:
    """BOOT of ``disk`` as a file of its own, found by our GPT reader."""
    found = next(p for p in gpt.read(disk, str(disk)).partitions if p.name == "BOOT")
    with open(disk, "rb") as src, open(dest, "wb") as out:
        os.truncate(out.fileno(), found.size)
        sparse.copy_range(src.fileno(), found.offset, found.size, out.fileno(), 0)
    return dest


def debugfs(image: Path, request: str) -> str:
    done = subprocess.run(["debugfs", "-R", request, str(image)], capture_output=True,
                          text=True, check=True)  # fmt: skip
    return done.stdout


def test_a_profile_s_edits_reach_its_disk_and_the_raw_disk_is_shared(tree, tmp_path) -> None:
    root, _cache = tree
    edited = root / "_out" / "disks" / "metal-custom-amd64.edited.raw"
    boot = boot_partition(edited, tmp_path / "boot.ext4")
    assert debugfs(boot, "cat /motd.txt") == "edited offline\n"
    stat = debugfs(boot, "stat /motd.txt")
    assert "User:     0   Group:     0" in stat and "Mode:  0644" in stat
    assert "Type: directory" in debugfs(boot, "stat /custom")
    subprocess.run(["e2fsck", "-fn", str(boot)], check=True, capture_output=True)
    plain = boot_partition(root / "_out" / "disks" / "metal-amd64.raw", tmp_path / "plain.ext4")
    assert "motd.txt" not in debugfs(plain, "ls /")
    assert (root / "_out" / "metal-custom-amd64.raw.zst").is_file()
    assert not (root / "_out" / "disks" / "metal-custom-amd64.raw").exists(), (
        "metal-custom's raw disk is metal's: the same work, one node"
    )
    unedited = root / "_out" / "disks" / "metal-amd64.edited.raw"
    assert unedited.stat().st_ino == (root / "_out" / "disks" / "metal-amd64.raw").stat().st_ino


def test_an_edited_file_re_edits_and_re_converts_but_never_rebuilds_the_disk(tree) -> None:
    root, cache = tree
    (root / "targets" / "edits" / "motd.txt").write_text("edited again\n")
    result = build(root, cache, "image-metal", "image-metal-custom", AMD64, ARGS)
    assert built(result) == {"edit-metal-custom:amd64", "image-metal-custom:amd64"}
    assert built(build(root, cache, "image-metal", "image-metal-custom", AMD64, ARGS)) == set()


def test_an_edit_of_a_missing_file_is_one_message_naming_it(tree) -> None:
    root, cache = tree
    profile(root, "metal-typo", "  - {partition: BOOT, add: {src: targets/edits/nope, dest: /x}}\n")
    try:
        done = doit(root, cache, "image-metal-typo", AMD64, ARGS)
    finally:
        (root / "targets" / "profiles" / "metal-typo.yaml").unlink()
    assert done.returncode != 0
    said = [line for line in done.stderr.splitlines() if line.startswith("buildgraph: error")]
    assert len(said) == 1 and "targets/edits/nope" in said[0], done.stderr[-3000:]


def test_lint_true_passes_our_image_and_stops_at_a_world_writable_edit(tree) -> None:
    root, cache = tree
    result = build(root, cache, "image-metal", AMD64, ARGS, "LINT=true")
    assert "image-metal:amd64" in built(result)
    profile(root, "metal-open", """\
  - partition: BOOT
    add: {src: targets/edits/motd.txt, dest: /motd.txt, mode: "0666"}
""")  # fmt: skip
    try:
        done = doit(root, cache, "image-metal-open", AMD64, ARGS, "LINT=true")
        assert done.returncode != 0
        assert "world-writable" in done.stderr and "/boot/motd.txt" in done.stderr, done.stderr
        ran = statuses(done.stderr)
        assert ran["edit-metal-open:amd64"] == "built", "the edit is fine: the lint refuses it"
        assert ran["image-metal-open:amd64"] == "failed"
        assert not (root / "_out" / "metal-open-amd64.raw.zst").exists()
    finally:
        (root / "targets" / "profiles" / "metal-open.yaml").unlink()


def test_an_edited_metal_disk_boots_with_its_kernel_arg(tree, tmp_path) -> None:
    root, cache = tree
    disk = root / "_out" / "disks" / "metal-amd64.raw"
    grub_cfg = debugfs(boot_partition(disk, tmp_path / "boot.ext4"), "cat /grub/grub.cfg")
    assert " buildgraph.poweroff=1" in grub_cfg
    edited_cfg = grub_cfg.replace(
        " buildgraph.poweroff=1", " buildgraph.poweroff=1 edited.offline=1"
    )
    (root / "targets" / "edits" / "grub.cfg").write_text(edited_cfg)
    profile(root, "metal-booted", """\
  - partition: BOOT
    add:
      - {src: targets/edits/grub.cfg, dest: /grub/grub.cfg}
      - {src: targets/edits/motd.txt, dest: /motd.txt}
""")  # fmt: skip
    build(root, cache, "edit-metal-booted", AMD64, ARGS)
    disk = root / "_out" / "disks" / "metal-booted-amd64.edited.raw"
    for firmware in ("bios", "uefi"):
        fields = banner(boot_disk(disk, "amd64", firmware))
        assert "edited.offline=1" in fields["cmdline"].split(), firmware
    boot = boot_partition(disk, tmp_path / "edited.ext4")
    assert debugfs(boot, "cat /motd.txt") == "edited again\n"
