"""Pointing GRUB's BIOS boot code at its core image, as grub-bios-setup would.

grub-bios-setup wants a block device; on a disk image file the two pointers it writes
are plain bytes: the MBR's boot code learns the first sector of core.img, and core.img's
first sector (diskboot) learns where the rest of itself lies.
"""

from __future__ import annotations

import struct

SECTOR = 512
_KERNEL_SECTOR = 0x5C  # boot.img: LBA of core.img's first sector
_BOOT_DRIVE = 0x64  # boot.img: 0xff = the drive the BIOS booted from
_DRIVE_CHECK = 0x66  # boot.img: two NOPs keep the hard-disk drive number check
_MBR_CODE_END = 0x1B8  # the disk signature and partition table follow
_BLOCKLIST = SECTOR - 12  # diskboot: start (u64), sectors (u16), segment (u16)


def boot_sector(boot_img: bytes, mbr: bytes, core_lba: int) -> bytes:
    """``mbr`` (the GPT protective MBR) with GRUB's boot code loading core.img at ``core_lba``."""
    if len(boot_img) != SECTOR or len(mbr) != SECTOR:
        raise ValueError("boot.img and the MBR are one sector each")
    sector = bytearray(boot_img[:_MBR_CODE_END] + mbr[_MBR_CODE_END:])
    struct.pack_into("<Q", sector, _KERNEL_SECTOR, core_lba)
    sector[_BOOT_DRIVE] = 0xFF
    struct.pack_into("<H", sector, _DRIVE_CHECK, 0x9090)
    return bytes(sector)


def core_image(core_img: bytes, core_lba: int) -> bytes:
    """``core_img`` with diskboot's block list pointing at its own sectors from ``core_lba``."""
    sectors = -(-len(core_img) // SECTOR)
    image = bytearray(core_img.ljust(sectors * SECTOR, b"\0"))
    _start, count, _segment = struct.unpack_from("<QHH", image, _BLOCKLIST)
    if count != sectors - 1:
        raise ValueError(
            f"core.img's block list covers {count} sectors, not the {sectors - 1} it holds"
        )
    struct.pack_into("<Q", image, _BLOCKLIST, core_lba + 1)
    return bytes(image)
