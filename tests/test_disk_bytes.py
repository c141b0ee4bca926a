"""The byte-level pieces of disk images: GRUB's BIOS pointers, VHD/VMDK fixes, sparse copies."""

from __future__ import annotations

import hashlib
import os
import re
import struct
import subprocess
from pathlib import Path

import pytest

from buildgraph.engine import sparse
from buildgraph.formats import biosboot, vdisk
from buildgraph.steps.disk import MIB, guid, minimum_size, parse_size
from buildgraph.steps.image import _check as check_image


def test_boot_sector_points_at_core_and_keeps_the_partition_table() -> None:
    boot_img = bytes(range(256)) * 2
    mbr = b"\0" * 0x1B8 + b"SIGN" + b"\0\0" + b"\xee" * 64 + b"\x55\xaa"
    sector = biosboot.boot_sector(boot_img, mbr, 206848)
    assert struct.unpack_from("<Q", sector, 0x5C) == (206848,)
    assert sector[0x64] == 0xFF
    assert sector[:0x5C] == boot_img[:0x5C]
    assert sector[0x1B8:] == mbr[0x1B8:]


def test_core_image_block_list_starts_after_its_first_sector() -> None:
    core = bytearray(5 * 512 - 100)
    struct.pack_into("<QHH", core, 500, 2, 4, 0x820)
    patched = biosboot.core_image(bytes(core), 1000)
    assert len(patched) == 5 * 512
    assert struct.unpack_from("<QHH", patched, 500) == (1001, 4, 0x820)


def test_core_image_with_a_wrong_block_list_is_refused() -> None:
    core = bytearray(3 * 512)
    struct.pack_into("<QHH", core, 500, 2, 7, 0x820)
    with pytest.raises(ValueError, match="covers 7 sectors, not the 2"):
        biosboot.core_image(bytes(core), 1000)


def _qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def _raw(path: Path, size: int = 4 * MIB) -> Path:
    with open(path, "wb") as f:
        os.truncate(f.fileno(), size)
        f.seek(MIB)
        f.write(b"data" * 1000)
    return path


def test_fixed_vhds_of_one_disk_made_at_different_times_are_equal(tmp_path: Path) -> None:
    raw = _raw(tmp_path / "disk.raw")
    digests = []
    for name in ("a.vhd", "b.vhd"):
        _qemu_img("convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size=on",
                  str(raw), str(tmp_path / name))  # fmt: skip
        vdisk.fix_vhd(tmp_path / name, 1700000000, "disk-amd64")
        digests.append((tmp_path / name).read_bytes())
        os.utime(raw, (0, 1))  # qemu-img stamps the wall clock, not the file's times
    assert digests[0] == digests[1]
    footer = digests[0][-512:]
    assert struct.unpack_from(">I", footer, 24) == (1700000000 - vdisk.VHD_EPOCH,)
    checksum = struct.unpack_from(">I", footer, 64)[0]
    assert checksum == ~(sum(footer) - sum(footer[64:68])) & 0xFFFFFFFF
    info = subprocess.run(["qemu-img", "info", "-f", "vpc", str(tmp_path / "a.vhd")],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert f"({4 * MIB} bytes)" in info


def test_vmdk_content_id_comes_from_the_name(tmp_path: Path) -> None:
    raw = _raw(tmp_path / "disk.raw")
    vmdk = tmp_path / "disk.vmdk"
    _qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized",
              str(raw), str(vmdk))  # fmt: skip
    vdisk.fix_vmdk(vmdk, "vmware-amd64")
    assert (
        b"\nCID=" + hashlib.sha256(b"vmware-amd64").hexdigest()[:8].encode()
        in (vmdk.read_bytes()[:4096])
    )
    _qemu_img("check", str(vmdk))


def test_a_vmdk_content_id_without_leading_zeros_is_replaced_whole(tmp_path: Path) -> None:
    vmdk = tmp_path / "disk.vmdk"
    _qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized",
              str(_raw(tmp_path / "disk.raw")), str(vmdk))  # fmt: skip
    data = vmdk.read_bytes()
    start = data.index(b"# Disk DescriptorFile")
    end = data.index(b"\0", start)
    text = re.sub(rb"(?m)^CID=\w+$", b"CID=abcdef1", data[start:end])  # as qemu-img prints
    # CIDs < 2**28; qemu-img's own may be shorter still, so keep the file's length.
    padded = text.ljust(end - start, b"\0")
    vmdk.write_bytes(data[:start] + padded + data[start + len(padded) :])
    vdisk.fix_vmdk(vmdk, "vmware-amd64")
    fixed = vmdk.read_bytes()
    assert len(fixed) == len(data)
    cid = hashlib.sha256(b"vmware-amd64").hexdigest()[:8].encode()
    assert b"\nCID=" + cid + b"\nparentCID=ffffffff\n" in fixed[start:end]
    _qemu_img("check", str(vmdk))


def test_files_that_are_not_vhd_or_vmdk_are_refused(tmp_path: Path) -> None:
    path = _raw(tmp_path / "disk.raw")
    with pytest.raises(ValueError, match="no VHD footer"):
        vdisk.fix_vhd(path, 0, "x")
    with pytest.raises(ValueError, match="not a sparse VMDK"):
        vdisk.fix_vmdk(path, "x")


def test_sparse_copy_keeps_data_and_holes(tmp_path: Path) -> None:
    src = _raw(tmp_path / "disk.raw", 64 * MIB)
    dst = tmp_path / "copy.raw"
    sparse.copy(src, dst)
    assert dst.read_bytes() == src.read_bytes()
    assert dst.stat().st_blocks * 512 < 2 * MIB


def test_a_canonical_copy_has_the_same_holes_whatever_holes_its_source_had(
    tmp_path: Path,
) -> None:
    data = os.urandom(8192)
    dense, holey = tmp_path / "dense.raw", tmp_path / "holey.raw"
    dense.write_bytes(bytes(MIB) + data + bytes(MIB))  # zeros written out: no holes
    with open(holey, "wb") as f:
        os.truncate(f.fileno(), 2 * MIB + len(data))
        os.pwrite(f.fileno(), data, MIB)
    tars = []
    for src in (dense, holey):
        copy = tmp_path / f"{src.stem}.copy"
        sparse.canonical_copy(src, copy)
        assert copy.read_bytes() == src.read_bytes()
        with open(copy, "rb") as f:
            assert list(sparse.extents(f.fileno(), copy.stat().st_size)) == [(MIB, len(data))]
        tar = tmp_path / f"{src.stem}.tar"
        subprocess.run(["tar", "--create", "--sparse", "--format=oldgnu", "--mtime=@0",
                        "--owner=0", "--group=0", "--numeric-owner", "-f", str(tar),
                        "-C", str(tmp_path), "--transform=s/.*/disk.raw/", copy.name],
                       check=True)  # fmt: skip
        tars.append(tar.read_bytes())
    assert tars[0] == tars[1], "tar --sparse records the holes it finds"


def test_bytes_written_sparsely_read_back_and_leave_zero_blocks_unallocated(
    tmp_path: Path,
) -> None:
    data = bytes(MIB) + b"meta" * 100 + bytes(MIB)  # one 4 KiB block holds anything
    disk = tmp_path / "disk.raw"
    with open(disk, "wb") as f:
        os.truncate(f.fileno(), 8 * MIB)
        sparse.write_into(data, f.fileno(), 3 * MIB)
    assert disk.read_bytes()[3 * MIB : 3 * MIB + len(data)] == data
    assert disk.stat().st_blocks * 512 <= 8192


def test_sparse_copy_into_an_offset(tmp_path: Path) -> None:
    src = _raw(tmp_path / "part.raw", 2 * MIB)
    dst = tmp_path / "disk.raw"
    with open(dst, "wb") as f:
        os.truncate(f.fileno(), 8 * MIB)
        sparse.copy_into(src, f.fileno(), 4 * MIB)
    data = dst.read_bytes()
    assert data[5 * MIB : 5 * MIB + 4000] == b"data" * 1000
    assert data[: 5 * MIB].count(0) == 5 * MIB


@pytest.mark.parametrize(
    ("text", "size"), [("1246MiB", 1246 * MIB), ("8GiB", 8 << 30), ("4096", 4096), (1024, 1024)]
)
def test_disk_sizes_parse(text: object, size: int) -> None:
    assert parse_size(text) == size


def test_a_bad_disk_size_says_how_to_write_one() -> None:
    with pytest.raises(ValueError, match="give bytes or a number with KiB, MiB or GiB"):
        parse_size("8 gigs")


def test_bios_boot_partition_only_when_bios_firmware() -> None:
    assert minimum_size(["i386-pc", "x86_64-efi"]) - minimum_size(["arm64-efi"]) == MIB


def test_guids_are_fixed_per_label() -> None:
    assert guid("BOOT") == guid("BOOT") != guid("EFI")
    assert guid("BOOT") == guid("BOOT").upper()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"format": "vdi"}, "unknown disk format 'vdi'; known: raw, qcow2, vhd, ova"),
        ({"compression": ".bz2"}, "unknown compression '.bz2'"),
        ({"format": "ova", "compression": ".zst"}, "an ova is already a tar"),
        ({"format": "qcow2", "compression": ".tar.gz"}, ".tar.gz holds a raw disk"),
        ({"compression": ".zst", "zstd_level": "22"}, "zstd level from 1 to 19"),
    ],
)
def test_image_params_are_checked(params: dict, message: str) -> None:
    base = {"epoch": "1", "name": "x", "format": "raw", "compression": "", "zstd_level": "3"}
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        check_image({**base, **params})
