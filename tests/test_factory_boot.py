"""Assets downloaded from a running factory boot in qemu: an ISO, a disk, and PXE.

The schematic adds the hello example extension and kernel arguments; each booted banner
shows the extension, the schematic itself as the ``schematic@<id>`` extension, and the
arguments. PXE boots for real: QEMU's iPXE is handed the factory's ``/pxe/`` URL as the
DHCP boot file and reaches the factory only through a guestfwd to its loopback port.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from factory_server import serve_factory
from project import FIXED
from qemu import BANNER, banner, boot_disk, boot_iso
from realgraph import clone

pytestmark = pytest.mark.slow
VERSION = FIXED["TAG"]
ARGS = ["buildgraph.poweroff=1", "panic=1", "buildgraph.from=factory"]
SCHEMATIC = (
    "customization:\n  extraKernelArgs: [" + ", ".join(ARGS) + "]\n"
    "  systemExtensions:\n    officialExtensions: [buildgraph/ext-hello]\n"
).encode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("factory-boot")
    root, cache = clone(base / "repo"), base / "cache"
    with serve_factory(root, cache) as factory:
        answer = factory.request("POST", "/schematics", SCHEMATIC)
        assert answer.status == 201, answer.text
        yield {"factory": factory, "id": json.loads(answer.body)["id"], "base": base}


def _download(served, name: str) -> Path:
    answer = served["factory"].request("GET", f"/image/{served['id']}/{VERSION}/{name}")
    assert answer.status == 200, answer.text
    path = served["base"] / name
    path.write_bytes(answer.body)
    return path


def _check(console: str, schematic_id: str) -> None:
    fields = banner(console)
    assert fields["extensions"] == f"hello@1.0.0,schematic@{schematic_id}", fields
    assert fields["cmdline"].endswith(" ".join(ARGS)), fields["cmdline"]


def test_an_iso_from_the_factory_boots_with_its_schematic(served) -> None:
    iso = _download(served, "metal-amd64.iso")
    _check(boot_iso(iso, "amd64", "bios"), served["id"])


def test_a_disk_from_the_factory_boots_in_the_format_asked(served) -> None:
    disk = _download(served, "metal-amd64.qcow2")
    check = subprocess.run(["qemu-img", "check", str(disk)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    _check(boot_disk(disk, "amd64", "uefi", fmt="qcow2"), served["id"])


def test_ipxe_boots_from_the_factory_s_pxe_script(served) -> None:
    factory, schematic_id = served["factory"], served["id"]
    url = f"http://10.0.2.100/pxe/{schematic_id}/{VERSION}/metal-amd64"
    netdev = (f"user,id=n0,restrict=on,bootfile={url},"
              f"guestfwd=tcp:10.0.2.100:80-tcp:127.0.0.1:{factory.port}")  # fmt: skip
    # The guest asks for the kernel through the forward: have it built before iPXE asks.
    for name in ("kernel-amd64", "initramfs-amd64.xz"):
        assert factory.request("HEAD", f"/image/{schematic_id}/{VERSION}/{name}").status == 200
    argv = ["qemu-system-x86_64", "-m", "1024", "-cpu", "max", "-netdev", netdev,
            "-device", "virtio-net-pci,netdev=n0", "-boot", "n", "-display", "none",
            "-serial", "stdio", "-monitor", "none", "-no-reboot"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, timeout=600, check=False)
    console = done.stdout.decode(errors="replace").replace("\r", "")
    assert BANNER.search(console), console[-3000:]
    _check(console, schematic_id)
