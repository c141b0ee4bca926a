"""Overlays: an image that adds a profile fragment and boot-partition files.

An overlay image (OVERLAY_IMAGE, flattened to a tar by the ``files`` step) holds
``overlay.yaml`` and ``boot/``::

    name: example
    options: {board: generic}        # the --overlay-option keys it accepts, defaults
    profile:                         # merged into the platform profile
      kernelArgs: ["buildgraph.board={board}"]
      diskSize: 2GiB
    boot/...                         # files for the BOOT partition

``{option}`` in a kernel argument is that option's value. The cmdline step adds the
kernel arguments, the disk step the size and the files (and ``overlay.yaml`` with the
options it was given, at ``overlay/options.yaml`` in BOOT, for the OS to read).
"""

from __future__ import annotations

import re
import shlex
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..engine.errors import StepFailedError

FIELDS = ("name", "options", "profile")
PROFILE_FIELDS = ("kernelArgs", "diskSize")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.-]*)\}")


@dataclass(frozen=True)
class Overlay:
    name: str
    options: dict[str, str]
    kernel_args: list[str]
    disk_size: str | None
    boot: dict[str, tarfile.TarInfo]
    """Members under ``boot/``, by their path inside BOOT."""


def load(tar_path: Path, name: str, options_words: str) -> Overlay:
    """Read and check an overlay, given ``--overlay-name`` (may be "") and its options."""
    import yaml  # not at the top: the installer program imports this module without PyYAML

    with tarfile.open(tar_path) as tar:
        members = {m.name.removeprefix("./"): m for m in tar}
        if "overlay.yaml" not in members:
            raise StepFailedError(
                "the overlay image holds no overlay.yaml",
                hint="an overlay image carries overlay.yaml (name, options, profile) and boot/",
            )
        with tar.extractfile(members["overlay.yaml"]) as file:
            try:
                data = yaml.safe_load(file.read())
            except yaml.YAMLError as err:
                raise StepFailedError(f"the overlay's overlay.yaml is not YAML: {err}") from None
    data = _mapping(data, "overlay.yaml", FIELDS)
    own = str(data.get("name", ""))
    if name and name != own:
        raise StepFailedError(
            f"--overlay-name {name!r} does not match the overlay image, which is {own!r}",
            hint=f"give --overlay-name={own} or leave it out",
        )
    defaults = {str(k): str(v) for k, v in _mapping(data.get("options") or {}, "options").items()}
    given = dict(word.split("=", 1) for word in shlex.split(options_words))
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise StepFailedError(
            f"overlay {own!r} has no option {unknown[0]!r}",
            hint=f"its options are: {', '.join(sorted(defaults)) or 'none'}",
        )
    options = {**defaults, **given}
    profile = _mapping(data.get("profile") or {}, "profile", PROFILE_FIELDS)
    args = profile.get("kernelArgs") or []
    if not isinstance(args, list):
        raise StepFailedError(f"overlay {own!r}: profile.kernelArgs must be a list")

    def fill(arg: object) -> str:
        def value(match: re.Match[str]) -> str:
            if match.group(1) not in options:
                raise StepFailedError(f"overlay {own!r}: {arg!r} names no option {match[0]}")
            return options[match.group(1)]

        filled = _PLACEHOLDER.sub(value, str(arg))
        if not filled or any(c.isspace() for c in filled):
            raise StepFailedError(
                f"overlay {own!r}: kernel argument {arg!r} becomes {filled!r}, which is not"
                " one argument",
                hint="give the overlay options it uses values without spaces",
            )
        return filled

    boot = {
        n[len("boot/") :]: m for n, m in members.items() if n.startswith("boot/") and m.isfile()
    }
    size = profile.get("diskSize")
    return Overlay(own, options, [fill(a) for a in args], None if size is None else str(size),
                   boot)  # fmt: skip


def _mapping(data: object, what: str, fields: tuple[str, ...] = ()) -> dict:
    if not isinstance(data, dict):
        raise StepFailedError(f"the overlay's {what} must be a mapping")
    unknown = sorted(set(data) - set(fields)) if fields else []
    if unknown:
        raise StepFailedError(
            f"the overlay's {what} has an unknown field {unknown[0]!r}",
            hint=f"known fields: {', '.join(fields)}",
        )
    return data
