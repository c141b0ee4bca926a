"""A customized ISO and metal disk, built by ``buildgraph imager`` and booted in qemu.

Both carry the two example extensions (one from the embedded store, one as a tarball),
a root filesystem customization that adds a file and removes one, and META 0xa=hello:
the ISO on its command line, the disk in its META partition (read by the init). The
disk also has the example overlay, whose option reaches the kernel command line.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from project import REPO, imager
from qemu import banner, boot_disk, boot_iso
from realgraph import build, built, clone, sha256

pytestmark = pytest.mark.slow
STORE = "local/buildgraph"  # the test env has no USER: USERNAME defaults to buildgraph
LS = "/usr/local/bin,/usr/lib/firmware/buildgraph,/etc/added.txt,/bin/dmesg"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("imager")
    root, cache = clone(base / "repo"), base / "cache"
    build(root, cache, "examples", "PLATFORM=linux/amd64,linux/arm64")
    firmware = base / "firmware.tar"
    subprocess.run(["tar", "-C", root / "targets/extensions/firmware", "-cf", firmware,
                    "manifest.yaml", "rootfs"], check=True)  # fmt: skip
    custom = base / "custom"
    (custom / "etc").mkdir(parents=True)
    (custom / "etc" / "added.txt").write_text("added by the customization\n")
    profile = {
        "arch": "amd64",
        "customization": {
            "extraKernelArgs": ["buildgraph.poweroff=1", "panic=1", f"buildgraph.ls={LS}"],
            "metaContents": [{"key": "0xa", "value": "hello"}],
            "rootfs": {"files": str(custom), "remove": ["/bin/dmesg"]},
        },
        "input": {
            "systemExtensions": [
                {"imageRef": f"{STORE}/ext-hello:v1.0.0"},
                {"tarballPath": str(firmware)},
            ]
        },
        "output": {"kind": "iso"},
    }
    runs = {}
    for name, kind in (("iso", "iso"), ("iso-cmdline", "cmdline")):
        runs[name] = _imager(root, cache, {**profile, "output": {"kind": kind}})
    disk = {**profile, "platform": "metal", "output": {"kind": "image"},
            "overlay": {"image": {"imageRef": f"{STORE}/overlay-example:v1.0.0"},
                        "options": {"board": "qemu"}}}  # fmt: skip
    runs["disk"] = _imager(root, cache, disk)
    return {"root": root, "cache": cache, "runs": runs, "firmware": firmware, "custom": custom}


def _imager(root: Path, cache: Path, profile: dict) -> subprocess.CompletedProcess:
    done = imager(root, cache, "-", stdin=yaml.safe_dump(profile))
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    return done


def _asset(done: subprocess.CompletedProcess) -> Path:
    return Path(done.stdout.splitlines()[-1].removeprefix("output asset path: "))


def _check_customized(console: str, fields: dict[str, str]) -> None:
    assert fields["extensions"] == "hello@1.0.0,firmware@1.0.0"
    assert fields["meta"] == "0xa=hello"
    lines = set(re.findall(r"^ls .*$", console, re.MULTILINE))
    assert "ls /usr/local/bin: dir hello" in lines, console
    assert "ls /usr/lib/firmware/buildgraph: dir example-1.bin example-2.bin" in lines
    assert "ls /etc/added.txt: file 27" in lines
    assert "ls /bin/dmesg: absent" in lines


def test_a_customized_iso_boots_with_extensions_meta_and_files(made) -> None:
    iso = _asset(made["runs"]["iso"])
    assert iso.name == "metal-amd64.iso"
    console = boot_iso(iso, "amd64", "bios")
    fields = banner(console)
    _check_customized(console, fields)
    # --output-kind cmdline writes exactly the line the booted system shows.
    assert fields["cmdline"] == _asset(made["runs"]["iso-cmdline"]).read_text().strip()
    assert "buildgraph.meta=" in fields["cmdline"]


def test_a_customized_metal_disk_reads_meta_from_its_partition(made, tmp_path: Path) -> None:
    image = _asset(made["runs"]["disk"])
    assert image.name == "metal-amd64.raw.zst"
    disk = tmp_path / "metal.raw"
    subprocess.run(["zstd", "-d", "-q", "--sparse", str(image), "-o", str(disk)], check=True)
    console = boot_disk(disk, "amd64", "uefi")
    fields = banner(console)
    _check_customized(console, fields)
    assert "buildgraph.meta=" not in fields["cmdline"]  # so META came from the partition
    assert "buildgraph.board=qemu" in fields["cmdline"]  # the overlay's option
    # The overlay's boot files and its options are in BOOT.
    readme = REPO / "targets/overlays/example/boot/overlay/README.txt"
    assert _boot_file(disk, "overlay/README.txt") == readme.read_bytes()
    options = yaml.safe_load(_boot_file(disk, "overlay/options.yaml"))
    assert options == {"name": "example", "options": {"board": "qemu"}}


def _boot_file(disk: Path, path: str) -> bytes:
    """A file of the BOOT partition, read by debugfs at the partition's offset."""
    table = subprocess.run(["sgdisk", "-p", str(disk)], capture_output=True, text=True,
                           check=True).stdout  # fmt: skip
    (first,) = [int(line.split()[1]) for line in table.splitlines() if line.endswith(" BOOT")]
    done = subprocess.run(["debugfs", "-R", f"cat /{path}", f"{disk}?offset={first * 512}"],
                          capture_output=True, check=True)  # fmt: skip
    assert done.stdout, f"BOOT has no /{path}: {done.stderr.decode()}"
    return done.stdout


def test_the_same_build_through_doit_is_all_cached(made) -> None:
    runs = build(made["root"], made["cache"], "iso", "PLATFORM=linux/amd64",
                 f"KERNEL_ARGS=buildgraph.poweroff=1 panic=1 buildgraph.ls={LS}",
                 "META=10=hello", "RM=/bin/dmesg", f"CUSTOMIZATION={made['custom']}",
                 f"SYSTEM_EXTENSIONS={STORE}/ext-hello:v1.0.0 {made['firmware']}")  # fmt: skip
    assert built(runs) == set(), runs


def test_an_installer_on_a_base_installer_image_equals_the_one_built_on_installer_base(
    made,
) -> None:
    root, cache = made["root"], made["cache"]
    build(root, cache, "installer-base", "PLATFORM=linux/amd64")
    done = imager(root, cache, "installer", "--arch=amd64",
                  f"--base-installer-image={STORE}/installer-base:v1.0.0")  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    asset = _asset(done)
    assert asset.name == "installer-amd64.tar"
    on_base = sha256(asset)
    runs = build(root, cache, "installer-image", "PLATFORM=linux/amd64")
    assert "installer-image:amd64" in built(runs)  # another node: its base is a dependency
    assert sha256(root / "_out" / "installer-amd64.tar") == on_base


def test_an_arm64_iso_with_an_extension_boots_with_it(made) -> None:
    done = imager(made["root"], made["cache"], "iso", "--arch=arm64",
                  f"--system-extension-image={STORE}/ext-hello:v1.0.0", "--meta=0xff=arm",
                  "--extra-kernel-arg=buildgraph.poweroff=1", "--extra-kernel-arg=panic=1",
                  "--extra-kernel-arg=buildgraph.ls=/usr/local/bin")  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    console = boot_iso(_asset(done), "arm64", "uefi")
    fields = banner(console)
    assert fields["arch"] == "arm64"
    assert fields["extensions"] == "hello@1.0.0"
    assert fields["meta"] == "0xff=arm"
    assert "ls /usr/local/bin: dir hello" in console


def test_a_customization_image_puts_its_files_into_the_rootfs(made) -> None:
    root = made["root"]
    runs = build(root, made["cache"], "rootfs", "PLATFORM=linux/amd64",
                 f"CUSTOMIZATION={STORE}/ext-hello:v1.0.0", "RM=/etc/os-release /bin")  # fmt: skip
    assert built(runs) == {"customization:amd64", "rootfs:amd64"}
    listing = subprocess.run(["unsquashfs", "-l", "-d", "", str(root / "_out/rootfs-amd64.sqsh")],
                             capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert "/manifest.yaml" in listing and "/rootfs/usr/local/bin/hello" in listing
    assert "/etc/os-release" not in listing and not any(p.startswith("/bin") for p in listing)
    assert "/etc/hostname" in listing and "/usr/local/bin" in listing  # the rest stays


def test_a_customization_replaces_symlinks_and_never_writes_through_them(made, tmp_path) -> None:
    root = made["root"]
    files = tmp_path / "files"
    (files / "bin").mkdir(parents=True)
    (files / "bin" / "sh").write_text("#!/bin/false\n")
    (files / "bin" / "sh").chmod(0o755)
    (files / "tmp").mkdir(mode=0o755)
    (files / "tmp" / "note").write_text("x\n")
    build(root, made["cache"], "rootfs", "PLATFORM=linux/amd64", f"CUSTOMIZATION={files}")
    listing = subprocess.run(["unsquashfs", "-lls", "-d", "", str(root / "_out/rootfs-amd64.sqsh")],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    entries = {line.split()[-1] if " -> " not in line else line.split()[-3]: line
               for line in listing.splitlines() if line[:1] in "-dlcb"}  # fmt: skip
    assert entries["/bin/sh"].startswith("-rwxr-xr-x") and " 13 " in entries["/bin/sh"]
    assert " -> " not in entries["/bin/sh"]
    assert int(entries["/bin/busybox"].split()[2]) > 100_000  # busybox itself untouched
    assert entries["/bin/ls"].endswith("-> busybox")
    assert entries["/tmp"].startswith("drwxrwxrwt")  # the OS's directory keeps its mode
    assert "/tmp/note" in entries
