"""``buildgraph imager``: profiles, flags, and the one cache it shares with doit.

The fast tests build command lines only (no packages needed); the boot of a customized
ISO and disk is in test_imager_boot.py.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from project import REPO, doit, imager, statuses

from buildgraph.imager.flags import parse_imager_args
from buildgraph.imager.profile import base_profile, build_request


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copytree(REPO / "targets", root / "targets")
    for name in ("dodo.py", "pyproject.toml"):
        shutil.copy(REPO / name, root / name)
    return root


def _fails(done, *expected: str) -> None:
    assert done.returncode != 0, done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("buildgraph: error:")]
    assert len(errors) == 1, done.stderr
    for text in expected:
        assert text in done.stderr, done.stderr


def test_the_profile_is_printed_then_the_command_line_and_the_asset(repo, tmp_path):
    args = ["--arch", "amd64", "--extra-kernel-arg", "net.ifnames=0",
            "--extra-kernel-arg=-console", "--extra-kernel-arg=console=ttyS1"]  # fmt: skip
    done = imager(repo, tmp_path / "cache", "metal", "--output-kind", "cmdline", *args)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:4] == ["profile ready:", "arch: amd64", "platform: metal", "customization:"]
    line = (repo / "_out" / "cmdline-metal-amd64").read_text().strip()
    assert f"kernel command line: {line}" in lines
    assert lines[-1] == f"output asset path: {repo / '_out' / 'cmdline-metal-amd64'}"
    # The seed's example: console=ttyS1 where the consoles stood, net.ifnames=0 at the end.
    assert line.startswith("buildgraph.platform=metal console=ttyS1 init_on_alloc=1")
    assert line.endswith(" net.ifnames=0")


def test_an_imager_run_and_the_same_doit_build_share_the_cache(repo, tmp_path):
    cache = tmp_path / "cache"
    flags = "--extra-kernel-arg=quiet --meta 0xa=hello --extra-kernel-arg=-console"
    done = doit(repo, cache, "iso-cmdline", "PLATFORM=linux/amd64", f"IMAGER_ARGS={flags}")
    assert done.returncode == 0, done.stderr
    assert set(statuses(done.stderr).values()) == {"built"}
    # Same flags in another spelling (META key in decimal): nothing to build.
    again = imager(repo, cache, "iso", "--arch=amd64", "--output-kind=cmdline",
                   "--extra-kernel-arg", "quiet -console", "--meta", "10=hello")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert set(statuses(again.stderr).values()) == {"cached"}, again.stderr
    line = (repo / "_out" / "iso-cmdline-amd64").read_text()
    assert "buildgraph.meta=" in line and "console=" not in line


def test_output_copies_the_asset_to_a_directory(repo, tmp_path):
    done = imager(repo, tmp_path / "cache", "aws", "--arch=arm64", "--output-kind=cmdline",
                  "--output", str(tmp_path / "assets"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    copied = tmp_path / "assets" / "cmdline-aws-arm64"
    assert done.stdout.splitlines()[-1] == f"output asset path: {copied}"
    assert copied.read_text() == (repo / "_out" / "cmdline-aws-arm64").read_text()
    assert "buildgraph.platform=aws" in copied.read_text()


def test_a_profile_from_stdin_with_an_unknown_field_fails_naming_it(repo, tmp_path):
    profile = "arch: amd64\noutput: {kind: iso}\ncustomization: {extraKernelArgs: [], bogus: 1}\n"
    done = imager(repo, tmp_path / "cache", "-", stdin=profile)
    _fails(done, "profile.customization: unknown field 'bogus'", "extraKernelArgs")
    assert not (repo / "_out").exists()


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["nosuch"], None, "unknown imager profile 'nosuch'"),
        (["-"], "arch: [1\n", "the profile on stdin is not YAML"),
        (["-"], "arch: amd64\noutput: {kind: floppy}\n", "profile.output.kind: 'floppy'"),
        (["metal", "--output-kind", "uki"], None, "a uki is a secure boot asset"),
        (["secureboot-nosuch"], None, "each also as secureboot-<name>"),
        (["-"], "arch: s390x\noutput: {kind: iso}\n", "profile.arch: 's390x'"),
        (["-"], "arch: amd64\noutput: {kind: iso}\ninput: {systemExtensions: [{}]}\n",
         "each entry has one of imageRef, tarballPath"),
        (["-"], "arch: amd64\noutput: {kind: image, outFormat: .xz}\n",
         "profile.output: no metal profile builds outFormat: .xz (profiles of metal: metal)"),
        (["iso", "--platform=aws"], None, "iso assets are built for metal"),
        (["iso", "--meta", "0x1ff=x"], None, "--meta"),
        (["iso", "--overlay-option", "novalue"], None, "is not KEY=VALUE"),
        (["iso", "--system-extension-image", "Bad:Ref"], None, "bad image reference"),
        (["iso", "--base-installer-image", "Bad:Ref"], None, "--base-installer-image"),
        (["-"], "arch: amd64\noutput: {kind: iso}\ncustomization: {rootfs: {remove: [../x]}}\n",
         "profile.customization.rootfs.remove: paths inside the root filesystem, no '..'"),
        (["-"], "arch: amd64\noutput: {kind: iso}\ncustomization: {rootfs: {remove: [/x]}}\n"
         "input: {kernel: {imageRef: local/me/imager:v1},"
         " initramfs: {imageRef: local/me/imager:v1}}\n",
         "profile.customization.rootfs.remove cannot go with profile.input.kernel.imageRef"),
        (["iso", "--overlay-option", "board=x"], None,
         "profile.overlay.options (--overlay-option) is set, but profile.overlay.image is not"),
        (["-"], "arch: amd64\noutput: {kind: iso}\ninput: {kernel: {path: /boot/vmlinuz}}\n",
         "profile.input.kernel.path: this graph builds the kernel"),
    ],
)  # fmt: skip
def test_bad_profiles_and_flags_stop_before_anything_is_built(repo, tmp_path, args, stdin,
                                                              message):  # fmt: skip
    _fails(imager(repo, tmp_path / "cache", *args, stdin=stdin), message)
    assert not (repo / "_out").exists()


def test_imager_args_take_the_same_flags_and_canonical_values():
    found = parse_imager_args(
        "--meta 10=a --meta 0x1=b --overlay-option z=1 --overlay-option a=2"
        " --extra-kernel-arg 'x=1 y' --system-extension-image local/me/ext:v1"
    )
    assert found == {
        "META": "0x1=b 0xa=a",
        "OVERLAY_OPTIONS": "a=2 z=1",
        "KERNEL_ARGS": "x=1 y",
        "SYSTEM_EXTENSIONS": "local/me/ext:v1",
    }


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"CUSTOMIZATION": "./files", "IMAGER_IMAGE": "local/me/imager:v1"},
         "variables CUSTOMIZATION and IMAGER_IMAGE cannot both be set"),
        ({"RM": "/etc/motd", "IMAGER_ARGS": "", "IMAGER_IMAGE": "local/me/imager:v1"},
         "variables RM and IMAGER_IMAGE cannot both be set"),
        ({"OVERLAY_OPTIONS": "board=x"}, "variable OVERLAY_OPTIONS is set ('board=x') but"
         " OVERLAY_IMAGE is empty"),
        ({"IMAGER_ARGS": "--overlay-name example"}, "variable OVERLAY_NAME is set"),
    ],
)  # fmt: skip
def test_variables_that_only_apply_together_are_refused_apart(tmp_path, given, message):
    from buildgraph.engine.errors import VariableError
    from buildgraph.engine.variables import resolve

    with pytest.raises(VariableError, match=re.escape(message)):
        values = resolve(given, {}, tmp_path)  # given values are checked at once,
        for name in ("CUSTOMIZATION", "RM", "OVERLAY_NAME", "OVERLAY_OPTIONS"):
            values[name]  # the ones IMAGER_ARGS sets when a target reads them


def test_an_image_format_picks_the_profile_that_builds_it():
    metal = {"platform": "metal", "diskSize": "1246MiB", "diskFormat": "raw", "outFormat": ".zst"}
    platforms = {"metal": metal, "metal-qcow2": {**metal, "diskFormat": "qcow2", "outFormat": ""}}

    def target(output: dict, base: str | None = None) -> str:
        profile = {"arch": "amd64", "platform": "metal", "output": {"kind": "image", **output}}
        return build_request(profile, platforms, base).target

    assert target({}) == "image-metal"
    assert target({}, base="metal-qcow2") == "image-metal-qcow2"
    assert target({"imageOptions": {"diskFormat": "qcow2"}}) == "image-metal-qcow2"
    assert target({"outFormat": "raw", "imageOptions": {"diskFormat": "qcow2"}}) == (
        "image-metal-qcow2"
    )
    assert target({"outFormat": ".zst"}, base="metal-qcow2") == "image-metal"


def test_a_cmdline_profile_is_its_platform_s_and_metal_s_is_the_iso_s():
    platforms = {"metal": {"platform": "metal"}, "aws": {"platform": "aws"}}

    def cmdline(platform: str, base: str | None = None) -> str:
        profile = {"arch": "amd64", "platform": platform, "output": {"kind": "cmdline"}}
        return build_request(profile, platforms, base).target

    assert cmdline("aws") == "cmdline-aws"
    assert cmdline("metal") == "iso-cmdline"  # the ISO's, with META on it
    assert cmdline("metal", base="metal") == "cmdline-metal"  # the disk's: META on its partition


def test_an_output_directory_that_cannot_be_written_is_one_error(repo, tmp_path):
    (tmp_path / "file").write_text("not a directory\n")
    done = imager(repo, tmp_path / "cache", "aws", "--arch=amd64", "--output-kind=cmdline",
                  "--output", str(tmp_path / "file"))  # fmt: skip
    _fails(done, f"--output {tmp_path / 'file'}: cannot copy cmdline-aws-amd64 there")
    assert (tmp_path / "file").read_text() == "not a directory\n"
    assert (repo / "_out" / "cmdline-aws-amd64").exists()  # the asset is built, and said where


def test_meta_too_long_for_the_kernel_command_line_is_refused_for_an_iso(repo, tmp_path):
    done = imager(repo, tmp_path / "cache", "iso", "--arch=amd64", "--output-kind=cmdline",
                  "--meta", "0xa=" + "a" * 3000)  # fmt: skip
    _fails(done, "the kernel command line with META is", "the kernel keeps 2047",
           "use a disk image")  # fmt: skip
    assert not (repo / "_out" / "iso-cmdline-amd64").exists()


def test_meta_larger_than_its_partition_is_refused_before_anything_runs(repo, tmp_path):
    words = " ".join(f"--meta={key}={'x' * 60000}" for key in range(10))
    done = imager(repo, tmp_path / "cache", "metal", *words.split())
    _fails(done, "--meta", "a copy has room for 524288")
    assert not (repo / "_out").exists()


def test_the_default_kernel_and_initramfs_paths_of_the_seed_profile_are_accepted(repo, tmp_path):
    profile = (
        "arch: amd64\nplatform: metal\noutput: {kind: cmdline}\ninput:\n"
        "  kernel: {path: /usr/install/amd64/vmlinuz}\n"
        "  initramfs: {path: /usr/install/amd64/initramfs.xz}\n"
    )
    done = imager(repo, tmp_path / "cache", "-", stdin=profile)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].endswith("iso-cmdline-amd64")


def test_a_copy_that_cannot_land_leaves_no_temporary_file(repo, tmp_path):
    assets = tmp_path / "assets"
    (assets / "cmdline-aws-amd64").mkdir(parents=True)  # a directory where the file goes
    done = imager(repo, tmp_path / "cache", "aws", "--arch=amd64", "--output-kind=cmdline",
                  "--output", str(assets))  # fmt: skip
    _fails(done, f"--output {assets}: cannot copy cmdline-aws-amd64 there")
    assert sorted(p.name for p in assets.iterdir()) == ["cmdline-aws-amd64"]


def test_the_secureboot_profiles_are_their_bases_signed():
    metal = {"platform": "metal", "diskSize": "1246MiB", "diskFormat": "raw", "outFormat": ".zst"}
    platforms = {"metal": metal}

    def request(name: str, kind: str | None = None):
        profile = base_profile(name, platforms, "amd64")
        if kind:
            profile["output"] = {"kind": kind}
        return build_request(profile, platforms, name.removeprefix("secureboot-"))

    for name, target in [("secureboot-iso", "secureboot-iso"),
                         ("secureboot-metal", "image-metal"),
                         ("secureboot-installer", "secureboot-installer-image")]:  # fmt: skip
        found = request(name)
        assert (found.target, found.variables["SECUREBOOT"]) == (target, "true"), name
    assert "SECUREBOOT" not in request("metal").variables
    assert request("secureboot-metal", "uki").target == "uki-metal"
