"""Partition layouts, as data: which labels tell an OS's disk, and where it mounts each.

Lint rules name paths as the running OS sees them (``/boot/flatcar/first_boot``); a
layout turns them into a partition and a path in it (EFI-SYSTEM, ``/flatcar/first_boot``).
A partition a layout does not list is read as if mounted at ``/``, so nothing on a disk
goes unchecked. The first layout whose labels are all present is the disk's; a new OS is
a row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Layout:
    name: str
    labels: frozenset[str]
    """All present: the disk has this layout."""
    mounts: Mapping[str, str] = field(default_factory=dict)
    """Partition label -> where the OS mounts it."""

    def mount(self, label: str) -> str:
        return self.mounts.get(label, "/")


LAYOUTS = (
    Layout(
        "flatcar",
        frozenset({"EFI-SYSTEM", "USR-A"}),
        {
            "EFI-SYSTEM": "/boot",
            "USR-A": "/usr",
            "USR-B": "/usr",
            "OEM": "/oem",
            "ROOT": "/",
        },
    ),
    # Ours, which is Talos': EFI inside BOOT, EPHEMERAL made on first boot of an install.
    Layout(
        "talos",
        frozenset({"EFI", "BOOT", "META"}),
        {
            "EFI": "/boot/EFI",
            "BOOT": "/boot",
            "EPHEMERAL": "/var",
        },
    ),
    Layout("generic", frozenset(), {"OEM": "/oem"}),
)


def detect(labels: Iterable[str]) -> Layout:
    present = set(labels)
    return next(layout for layout in LAYOUTS if layout.labels <= present)


def under(path: str, mount: str) -> bool:
    """Whether the OS path ``path`` lies at or below ``mount``."""
    return mount == "/" or path == mount or path.startswith(mount + "/")


def os_path(mount: str, path: str) -> str:
    """The OS path of ``path`` (absolute within a partition) mounted at ``mount``."""
    return path if mount == "/" else mount + path
