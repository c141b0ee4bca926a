"""Boot assets are reproducible: two clean builds, in two clones with two caches, agree.

Nothing is shared between the builds: not the checkout path, not the cache (package
downloads, Go build cache, apt state), not HOME, not the time of day, not the order in
which steps run (the second build runs two steps at a time). TAG and SOURCE_DATE_EPOCH
are the same, as tests/project.py fixes them.

Disk images of every format and compression come from profiles added to both clones,
as a user adds a platform; their disks are as small as the partitions allow. The assets
are customized as the imager does it: a system extension (as a tarball), a rootfs
customization adding a file and removing one, and a META value.
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest
from realgraph import build, clone, sha256

pytestmark = pytest.mark.slow
ARCHES = ("amd64", "arm64")
OUTPUTS = {
    "kernel": "vmlinuz-{arch}",
    "initramfs": "initramfs-{arch}.xz",
    "rootfs": "rootfs-{arch}.sqsh",
    "extensions": "extensions-{arch}.cpio.xz",
    "iso": "metal-{arch}.iso",
    "image-repro-raw": "repro-raw-{arch}.raw",
    "installer-image": "installer-{arch}.tar",
    "imager-image": "images/imager-{arch}.tar",
}
INDEXES = ("installer-base", "installer", "imager")
# profile -> (diskFormat, outFormat); built for amd64, and repro-raw for arm64 too.
FORMATS = {
    "repro-raw": ("raw", ""),
    "repro-qcow2": ("qcow2", ""),
    "repro-vhd": ("vhd", ""),
    "repro-ova": ("ova", ""),
    "repro-zst": ("raw", ".zst"),
    "repro-xz": ("raw", ".xz"),
    "repro-gz": ("raw", ".gz"),
    "repro-targz": ("raw", ".tar.gz"),
}
AMD64_IMAGES = {f"image-{name}": f"{name}-{{arch}}.{fmt}{comp}" for name, (fmt, comp) in
                FORMATS.items()}  # fmt: skip


def _add_profiles(root: Path) -> None:
    for name, (fmt, compression) in FORMATS.items():
        arches = "[amd64, arm64]" if name == "repro-raw" else "[amd64]"
        (root / "targets" / "profiles" / f"{name}.yaml").write_text(
            f"platform: {name}\narches: {arches}\nconsoles: [console=ttyS0]\nkernelArgs: []\n"
            f'diskSize: 1105MiB\ndiskFormat: {fmt}\noutFormat: "{compression}"\n'
        )


CUSTOMIZED = ("SYSTEM_EXTENSIONS=custom/hello.tar", "CUSTOMIZATION=./custom/files",
              "RM=/bin/dmesg", "META=0xa=hello")  # fmt: skip


def _add_customization(root: Path) -> None:
    """The hello example as a tarball (made here: its bytes differ per clone, its files
    not), and a directory of files for the rootfs."""
    custom = root / "custom"
    (custom / "files" / "etc").mkdir(parents=True)
    (custom / "files" / "etc" / "added.txt").write_text("added\n")
    with tarfile.open(custom / "hello.tar", "w") as tar:
        tar.add(root / "targets" / "extensions" / "hello", arcname=".")


@pytest.fixture(scope="module")
def outs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    dirs = []
    for side, jobs in (("first", ()), ("second", ("-n", "2"))):
        base = tmp_path_factory.mktemp(side)
        root, cache = clone(base / "repo"), base / "cache"
        _add_profiles(root)
        _add_customization(root)
        result = build(root, cache, *jobs, "iso", "kernel", "initramfs", *AMD64_IMAGES,
                       "image-repro-raw:arm64", *INDEXES, "PLATFORM=linux/amd64,linux/arm64",
                       "ZSTD_LEVEL=3", "USERNAME=me", *CUSTOMIZED)  # fmt: skip
        # Each build made every node itself: no step output came from the other's cache.
        assert set(result.values()) == {"built"}, result
        images = 1 + 3 * len(ARCHES) + len(INDEXES)  # the installer program, archives, indexes
        per_profile = 4  # cmdline, disk, edit, image; for repro-raw on arm64 too
        assert len(result) == 13 * len(ARCHES) + per_profile * (len(FORMATS) + 1) + images
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


@pytest.mark.parametrize("image", AMD64_IMAGES)
def test_disk_images_of_every_format_are_reproducible(outs: tuple[Path, Path], image: str) -> None:
    first, second = (out / AMD64_IMAGES[image].format(arch="amd64") for out in outs)
    assert sha256(first) == sha256(second), f"{first.name} differs"


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{argv[0]}: {done.stdout}{done.stderr}"
    return done.stdout


def test_independent_readers_accept_every_format(outs: tuple[Path, Path]) -> None:
    out = outs[0]
    assert "No problems found" in _run("sgdisk", "-v", str(out / "repro-raw-amd64.raw"))
    _run("qemu-img", "check", str(out / "repro-qcow2-amd64.qcow2"))
    info = _run("qemu-img", "info", "-f", "vpc", "--output=json", str(out / "repro-vhd-amd64.vhd"))
    assert f'"virtual-size": {1105 << 20}' in info
    assert _run("tar", "-tf", str(out / "repro-ova-amd64.ova")).split() == [
        "repro-ova-amd64.ovf", "disk.vmdk",
    ]  # fmt: skip
    assert _run("tar", "-tzf", str(out / "repro-targz-amd64.raw.tar.gz")).split() == ["disk.raw"]
    _run("zstd", "-tq", str(out / "repro-zst-amd64.raw.zst"))
    _run("xz", "-t", str(out / "repro-xz-amd64.raw.xz"))
    _run("gzip", "-t", str(out / "repro-gz-amd64.raw.gz"))


@pytest.mark.parametrize("name", INDEXES)
def test_container_images_have_the_same_digests(outs: tuple[Path, Path], name: str) -> None:
    first, second = (out / "images" / f"{name}.index.json" for out in outs)
    assert first.read_bytes() == second.read_bytes()
