"""Which partitions edit-image writes, and why it refuses the others.

The seed's rule is never to modify /usr: it is signed or hashed (dm-verity) and
replaced whole by updates, so a /usr or verity partition is refused by its GPT type
whatever it holds, and so is a partition with the GPT read-only attribute. Of the rest,
only FAT and ext2/3/4 are written: squashfs, erofs and iso9660 are read-only by design,
and nothing here writes btrfs or xfs without mounting them.
"""

from __future__ import annotations

import uuid

from .gpt import Partition

WRITERS = {"vfat": "fat", "ext2": "ext", "ext3": "ext", "ext4": "ext"}
"""Filesystem (filesystems.probe's name) -> the kind of writer that edits it."""

PROTECTED_TYPES = {
    uuid.UUID(guid): what
    for guid, what in (
        ("5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6", "a Container Linux (Flatcar) /usr partition"),
        ("8484680c-9521-48c6-9c11-b0720656f69e", "an x86-64 /usr partition"),
        ("b0e01050-ee5f-4390-949a-9101b17104e9", "an arm64 /usr partition"),
        ("77ff5f63-e7b6-4633-acf4-1565b864c0e6", "an x86-64 /usr verity partition"),
        ("6e11a4e7-fbca-4ded-b9e9-e1a512bb664e", "an arm64 /usr verity partition"),
        ("2c7357ed-ebd2-46d9-aec1-23d437ec2bf5", "an x86-64 root verity partition"),
        ("df3300ce-d69f-4c92-978c-9bfb0f38d820", "an arm64 root verity partition"),
    )
}
"""Type GUID -> what it is (as sgdisk names them)."""
READ_ONLY_ATTRIBUTE = 1 << 60
"""GPT attribute bit 60: read-only, as the Discoverable Partitions Specification has it."""
_READ_ONLY_FILESYSTEMS = ("squashfs", "erofs", "iso9660")


def refusal(partition: Partition, filesystem: str) -> str | None:
    """Why ``partition`` (holding ``filesystem``) must not be edited; None: it may be."""
    what = PROTECTED_TYPES.get(partition.type_guid)
    if what is not None:
        return (
            f"its type ({partition.type_guid}) makes it {what}, which is signed or hashed"
            " and replaced whole by updates: never modify /usr"
        )
    if partition.attributes & READ_ONLY_ATTRIBUTE:
        return "its GPT attributes mark it read-only (bit 60)"
    if filesystem in WRITERS:
        return None
    if filesystem in _READ_ONLY_FILESYSTEMS:
        return f"it holds {filesystem}, a read-only filesystem"
    if filesystem == "none":
        return "it holds no filesystem (zeros)"
    if filesystem == "unknown":
        return "it holds no filesystem this tool knows"
    return f"it holds {filesystem}, which edit-image cannot write (only FAT and ext2/3/4)"
