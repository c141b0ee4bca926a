"""Package images from a real registry, tags that move, and bad package inputs.

One clone and cache (module fixture) first builds the amd64 ISO from the Debian pins;
kernel package images made from that build's kernel package (its vmlinuz padded with
zero bytes, so each is a different, still bootable kernel) are pushed with skopeo to a
real registry (docker-registry) and named with PKG_KERNEL.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from project import doit
from realgraph import build, built, clone, sha256
from registry_server import RunningRegistry, free_port, serve_registry

from buildgraph.oci.layout import Image, Layout

pytestmark = pytest.mark.slow
AMD64 = "PLATFORM=linux/amd64"
# The other kernel package differs in its vmlinuz only: initramfs-base runs again and
# gives the same bytes, so initramfs (base + extensions) is cut off.
KERNEL_CHAIN = {"pkg-kernel:amd64", "kernel:amd64", "initramfs-base:amd64", "iso:amd64"}


class _Padded:
    """A tar member's data followed by ``extra`` zero bytes, read in full blocks."""

    def __init__(self, data, extra: int) -> None:
        self.data = data
        self.extra = extra

    def read(self, size: int) -> bytes:
        chunk = self.data.read(size)
        zeros = min(size - len(chunk), self.extra)
        self.extra -= zeros
        return chunk + b"\0" * zeros


def padded_kernel_package(src: Path, dest: Path, extra: int) -> None:
    """Copy a package tar, streaming, with ``extra`` zero bytes after boot/vmlinuz-*."""
    with tarfile.open(src, "r:") as old, tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as new:
        padded = 0
        for member in old:
            data = old.extractfile(member) if member.isreg() else None
            if member.isreg() and member.name.startswith("boot/vmlinuz-"):
                member.size += extra
                data = _Padded(data, extra)
                padded += 1
            new.addfile(member, data)
    assert padded == 1, f"{src} has {padded} boot/vmlinuz-* files"


@dataclass
class Tree:
    root: Path
    cache: Path
    work: Path
    registry: RunningRegistry
    kernel_package: Path
    """A copy of the default build's pkgs/kernel-amd64.tar (_out/ changes as tests build)."""
    vmlinuz: str
    """sha256 of the default build's vmlinuz-amd64."""
    initramfs: str
    layouts: dict[int, Path] = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return self.root / "_out"

    def kernel_image(self, extra: int) -> Path:
        """An OCI layout with image ``x``: the default kernel package, vmlinuz + extra zeros."""
        if extra not in self.layouts:
            layer = self.work / f"kernel-{extra}.tar"
            padded_kernel_package(self.kernel_package, layer, extra)
            layout = self.work / f"layout-{extra}"
            Layout(layout).write_image("x", {"amd64": Image(layers=[layer])})
            layer.unlink()
            self.layouts[extra] = layout
        return self.layouts[extra]

    def push(self, extra: int, repository_tag: str) -> str:
        """Push the image padded by ``extra`` as ``<registry>/<repository_tag>``."""
        ref = f"{self.registry.host}/{repository_tag}"
        subprocess.run(
            ["skopeo", "copy", *self.registry.skopeo_dest_args(),
             f"oci:{self.kernel_image(extra)}:x", f"docker://{ref}"],
            check=True, capture_output=True,
        )  # fmt: skip
        return ref


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("pkgimages")
    root, cache = clone(base / "repo"), base / "cache"
    assert built(build(root, cache, "iso", AMD64)) == {
        f"{target}:amd64"
        for target in ("pkg-kernel", "pkg-base", "pkg-grub", "kernel", "init", "rootfs",
                       "initramfs-base", "initramfs", "cmdline-metal", "iso-cmdline", "iso")
    }  # fmt: skip
    out = root / "_out"
    kernel_package = shutil.copyfile(out / "pkgs" / "kernel-amd64.tar", base / "kernel.tar")
    with serve_registry(base / "registry") as registry:
        yield Tree(root, cache, base, registry, kernel_package, sha256(out / "vmlinuz-amd64"),
                   sha256(out / "initramfs-amd64.xz"))  # fmt: skip


def _is_padded(path: Path, extra: int, tree: Tree) -> bool:
    """``path`` is the default build's vmlinuz followed by ``extra`` zero bytes."""
    with open(path, "rb") as file:
        head = file.read(path.stat().st_size - extra)
        return hashlib.sha256(head).hexdigest() == tree.vmlinuz and file.read() == b"\0" * extra


def test_a_kernel_package_from_a_registry_rebuilds_exactly_the_kernel_chain(tree: Tree) -> None:
    ref = tree.push(4096, "me/kernel:v1")
    result = build(tree.root, tree.cache, "iso", AMD64, f"PKG_KERNEL={ref}")
    assert built(result) == KERNEL_CHAIN
    assert _is_padded(tree.out / "vmlinuz-amd64", 4096, tree)
    # initramfs ran (it reads the kernel package's modules) and made the same bytes: the
    # ISO was rebuilt for the new vmlinuz.
    assert sha256(tree.out / "initramfs-amd64.xz") == tree.initramfs

    back = build(tree.root, tree.cache, "iso", AMD64)
    assert built(back) == set()
    assert set(back.values()) == {"cached"}
    assert sha256(tree.out / "vmlinuz-amd64") == tree.vmlinuz


def test_a_moved_tag_is_noticed_at_the_next_plan_and_moving_it_back_is_a_cache_hit(
    tree: Tree,
) -> None:
    ref = tree.push(4096, "me/kernel:moving")
    build(tree.root, tree.cache, "iso", AMD64, f"PKG_KERNEL={ref}")
    assert _is_padded(tree.out / "vmlinuz-amd64", 4096, tree)

    tree.push(8192, "me/kernel:moving")
    assert built(build(tree.root, tree.cache, "iso", AMD64, f"PKG_KERNEL={ref}")) == KERNEL_CHAIN
    assert _is_padded(tree.out / "vmlinuz-amd64", 8192, tree)

    tree.push(4096, "me/kernel:moving")
    assert built(build(tree.root, tree.cache, "iso", AMD64, f"PKG_KERNEL={ref}")) == set()
    assert _is_padded(tree.out / "vmlinuz-amd64", 4096, tree)


# -- bad input ---------------------------------------------------------------------------------


def _snapshot(out: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under _out/ with its inode, size and mtime: a new or replaced file shows."""
    if not out.exists():
        return {}
    found = {}
    for path in sorted(out.rglob("*")):
        st = path.lstat()
        found[str(path.relative_to(out))] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return found


def _error(done: subprocess.CompletedProcess) -> str:
    """The one ``buildgraph: error:`` message on stderr (with its hint), checked for shape."""
    assert done.returncode != 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    text = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("{"))
    assert text.count("buildgraph: error: ") == 1, (
        f"expected one `buildgraph: error:` message on stderr\n"
        f"--- stderr:\n{done.stderr}\n--- stdout:\n{done.stdout}"
    )
    assert text.startswith("buildgraph: error: "), text
    assert "\n  hint: " in text, text
    return text


def _missing_digest() -> str:
    return "sha256:" + hashlib.sha256(b"no image has this digest").hexdigest()


def _unreachable_registry(tree: Tree) -> str:
    return f"127.0.0.1:{free_port()}/me/kernel:v1"  # nothing listens there


def _missing_tag(tree: Tree) -> str:
    tree.push(4096, "me/kernel:v1")  # the repository exists; the tag does not
    return f"{tree.registry.host}/me/kernel:no-such-tag"


def _not_in_the_store(tree: Tree) -> str:
    return "local/nope/kernel:v1"


BAD_KERNEL_REFS = {
    "unreachable registry": (_unreachable_registry, ["cannot reach registry", "refused"]),
    "missing tag": (_missing_tag, ["has no manifest", "skopeo list-tags"]),
    "not in the embedded store": (_not_in_the_store, ["not in the embedded store", "PKG_KERNEL"]),
}


@pytest.mark.parametrize("case", list(BAD_KERNEL_REFS))
def test_a_bad_kernel_package_reference_stops_with_one_message_and_places_nothing(
    tree: Tree, case: str
) -> None:
    make_ref, expected = BAD_KERNEL_REFS[case]
    ref = make_ref(tree)
    before = _snapshot(tree.out)
    done = doit(tree.root, tree.cache, "iso", AMD64, f"PKG_KERNEL={ref}")
    message = _error(done)
    assert ref in message
    for words in expected:
        assert words in message
    assert _snapshot(tree.out) == before


def test_a_digest_pin_that_does_not_match_names_both_digests_and_places_nothing(
    tree: Tree,
) -> None:
    ref = tree.push(4096, "me/kernel:pinned")
    holds = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", f"docker://{ref}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    pinned = f"{ref}@{_missing_digest()}"
    before = _snapshot(tree.out)
    done = doit(tree.root, tree.cache, "iso", AMD64, f"PKG_KERNEL={pinned}")
    message = _error(done)
    for words in (pinned, _missing_digest(), holds):
        assert words in message
    assert _snapshot(tree.out) == before


def test_a_wrong_sha256_in_the_lock_file_names_the_package_both_digests_and_the_fix(
    tmp_path: Path,
) -> None:
    root, cache = clone(tmp_path / "repo"), tmp_path / "cache"  # a fresh cache: must download
    lock = root / "targets" / "packages.lock.json"
    data = json.loads(lock.read_text())
    (pin,) = data["packages"]["base"]["amd64"]
    assert pin["name"] == "busybox-static"
    pinned, wrong = pin["sha256"], "0" * 64
    pin["sha256"] = wrong
    lock.write_text(json.dumps(data, indent=2) + "\n")

    done = doit(root, cache, "pkg-base", AMD64)
    message = _error(done)
    for words in ("busybox-static", pinned, wrong, "buildgraph pins refresh"):
        assert words in message
    assert _snapshot(root / "_out") == {}


def test_a_missing_tool_names_it_and_its_debian_package(
    tree: Tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    for directory in ("/usr/bin", "/usr/sbin"):
        for entry in os.scandir(directory):
            if entry.name != "xorriso" and not os.path.lexists(tools / entry.name):
                (tools / entry.name).symlink_to(entry.path)
    venv = Path(sys.executable).parent
    monkeypatch.setenv("PATH", f"{tools}:{venv}")
    before = _snapshot(tree.out)
    done = doit(tree.root, tree.cache, "iso", AMD64)
    message = _error(done)
    assert "'xorriso'" in message
    assert "apt-get install xorriso" in message
    assert _snapshot(tree.out) == before
