"""The OS side's steps: one module per kind of work, each registering one or two steps
with the engine's step interface (buildgraph.engine.step).

:data:`MODULES` tells the engine which module holds which step, so a build imports only
the modules of the steps it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..engine.step import ParamError

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
        ("edit_disk", ["edit-disk"]),
        ("image", ["image"]),
        ("oci_image", ["oci-image", "oci-publish"]),
        ("pyz", ["pyz"]),
        ("imagefile", ["files"]),
        ("extensions", ["extensions"]),
        ("secureboot", ["uki", "secureboot-enroll", "secureboot-iso"]),
        ("catalog", ["catalog"]),
    )
    for name in names
}


def check_types(
    params: Mapping[str, Any], texts: tuple[str, ...] = (), lists: tuple[str, ...] = ()
) -> None:
    """Each param of ``texts`` that is given is a string, each of ``lists`` a list of
    strings. A profile field lands in params as it is written (``consoles: console=tty1``
    is a string, not a list), so this is where its type is checked, at load."""
    for name in texts:
        if name in params and not isinstance(params[name], str):
            raise ParamError(name, f"params.{name} must be a string, not {params[name]!r}")
    for name in lists:
        value = params.get(name, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ParamError(name, f"params.{name} must be a list of strings, not {value!r}")


def check_epoch(params: Mapping[str, Any]) -> None:
    """params.epoch: seconds since 1970 (``${SOURCE_DATE_EPOCH}`` before substitution)."""
    epoch = str(params.get("epoch", ""))
    if not epoch.isdigit() and not epoch.startswith("${"):
        raise ValueError("params.epoch must be seconds since 1970, e.g. ${SOURCE_DATE_EPOCH}")
