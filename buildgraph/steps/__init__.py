"""The OS side's steps: one module per kind of work, each registering one or two steps
with the engine's step interface (buildgraph.engine.step).

:data:`MODULES` tells the engine which module holds which step, so a build imports only
the modules of the steps it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MODULES: dict[str, str] = {
    name: f"{__name__}.{module}"
    for module, names in (
        ("shell", ["shell"]),
        ("concat", ["concat"]),
        ("cmdline", ["cmdline", "cmdline-meta"]),
        ("package", ["package"]),
        ("kernel", ["kernel"]),
        ("gobuild", ["go-build"]),
        ("rootfs", ["rootfs"]),
        ("initramfs", ["initramfs"]),
        ("iso", ["iso"]),
        ("disk", ["disk"]),
        ("image", ["image"]),
        ("oci_image", ["oci-image", "oci-publish"]),
        ("pyz", ["pyz"]),
        ("imagefile", ["files"]),
        ("extensions", ["extensions"]),
    )
    for name in names
}


def check_epoch(params: Mapping[str, Any]) -> None:
    """params.epoch: seconds since 1970 (``${SOURCE_DATE_EPOCH}`` before substitution)."""
    epoch = str(params.get("epoch", ""))
    if not epoch.isdigit() and not epoch.startswith("${"):
        raise ValueError("params.epoch must be seconds since 1970, e.g. ${SOURCE_DATE_EPOCH}")
