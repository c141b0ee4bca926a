"""The imager profile: what to build and how to customize it, as Talos' imager has it.

A profile is a base (``iso``, ``installer``, a platform profile of targets/profiles/, or
a YAML document from stdin) with the command line's flags applied. Its fields
(DESIGN section 8) are checked against :data:`SCHEMA`: an unknown field is an error
naming it. :func:`build_request` turns a profile into what the graph understands: the
variables it sets and the target whose output is the asset.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from ..engine.errors import BuildgraphError
from ..engine.variables import unmet
from ..variables import ARCHES
from . import customizations
from .customizations import ANY_MAPPING, Customization

DEFAULT_ASSETS = "/usr/install"
"""Where an imager image holds the boot assets: the default input.kernel/initramfs paths."""
KINDS = ("iso", "image", "installer", "kernel", "initramfs", "cmdline", "uki")
SECUREBOOT_PREFIX = "secureboot-"
"""``secureboot-iso``, ``secureboot-metal``, ``secureboot-installer``: a base with
``secureboot: true``."""
_BASE: dict[str, Any] = {
    "arch": str,
    "platform": str,
    "secureboot": bool,
    "version": str,
    "customization": {},
    "input": {"kernel": {"path": str}, "initramfs": {"path": str, "imageRef": str}},
    "overlay": {},
    "output": {
        "kind": str,
        "outFormat": str,
        "imageOptions": {"diskSize": (int, str), "diskFormat": str},
    },
}


def _schema() -> dict[str, Any]:
    """The profile's fields: :data:`_BASE` and each customization's field where its path says."""
    schema = copy.deepcopy(_BASE)
    for row in customizations.TABLE:
        place, leaf = _place(schema, row.field)
        place[leaf] = row.shape.schema
    return schema


def _place(tree: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    """The mapping in ``tree`` that holds the last name of a dotted path (made where it is
    missing), and that name."""
    *parents, leaf = path.split(".")
    for name in parents:
        tree = tree.setdefault(name, {})
    return tree, leaf


SCHEMA = _schema()


class ProfileError(BuildgraphError):
    """A profile that cannot be built; the message names the field."""


def check(data: Any, schema: Any = SCHEMA, where: str = "profile") -> None:
    """Refuse unknown fields and values of the wrong type, naming the field."""
    if isinstance(schema, dict):
        if not isinstance(data, dict):
            raise ProfileError(f"{where}: must be a mapping, not {type(data).__name__}")
        for key, value in data.items():
            if key not in schema:
                raise ProfileError(
                    f"{where}: unknown field {key!r}",
                    hint=f"known fields there: {', '.join(schema)}",
                )
            check(value, schema[key], f"{where}.{key}")
    elif isinstance(schema, list):
        if not isinstance(data, list):
            raise ProfileError(f"{where}: must be a list, not {data!r}")
        for index, item in enumerate(data):
            check(item, schema[0], f"{where}[{index}]")
    elif schema == ANY_MAPPING:
        if not isinstance(data, dict) or not all(
            isinstance(v, (str, int, float, bool)) for v in data.values()
        ):
            raise ProfileError(f"{where}: must be a mapping of names to plain values")
    elif not isinstance(data, schema) or (schema is not bool and isinstance(data, bool)):
        kinds = schema if isinstance(schema, tuple) else (schema,)
        names = " or ".join({int: "a number", str: "a string", bool: "true or false"}[k]
                            for k in kinds)  # fmt: skip
        raise ProfileError(f"{where}: must be {names}, not {data!r}")


def ordered(data: Any, schema: Any = SCHEMA) -> Any:
    """``data`` with its mappings' keys in schema order: the order the profile prints in."""
    if isinstance(schema, dict) and isinstance(data, dict):
        return {key: ordered(data[key], schema[key]) for key in schema if key in data}
    if isinstance(schema, list) and isinstance(data, list):
        return [ordered(item, schema[0]) for item in data]
    return data


def base_profile(name: str, platforms: dict[str, dict], host_arch: str) -> dict[str, Any]:
    """The profile a base name stands for: iso, installer, or a platform profile, each
    also with the ``secureboot-`` prefix (Talos' secureboot-iso, secureboot-metal, ...)."""
    plain = name.removeprefix(SECUREBOOT_PREFIX)
    if plain != name and (plain in ("iso", "installer") or plain in platforms):
        return {**base_profile(plain, platforms, host_arch), "secureboot": True}
    if name == "iso":
        return {"arch": host_arch, "platform": "metal", "output": {"kind": "iso"}}
    if name == "installer":
        return {"arch": host_arch, "platform": "metal", "output": {"kind": "installer"}}
    if name in platforms:
        return {"arch": host_arch, "platform": platforms[name]["platform"],
                "output": {"kind": "image", **image_output(platforms[name])}}  # fmt: skip
    raise ProfileError(
        f"unknown imager profile {name!r}",
        hint="known are iso, installer, " + ", ".join(sorted(platforms))
        + ", each also as secureboot-<name>, or - (stdin)",
    )


def image_output(platform: dict) -> dict[str, Any]:
    return {
        "outFormat": platform["outFormat"] or "raw",
        "imageOptions": {"diskSize": platform["diskSize"], "diskFormat": platform["diskFormat"]},
    }


@dataclass(frozen=True)
class Request:
    """What the graph is asked: the variables, the asset's target, the command line's."""

    variables: dict[str, str]
    target: str
    cmdline_target: str | None
    arch: str


def build_request(
    profile: dict[str, Any], platforms: dict[str, dict], base: str | None = None
) -> Request:
    """Translate a checked profile; refuse what this graph cannot build, saying why.

    ``base``: the platform profile the imager was given by name, if any. Then a command
    line is that disk image's, whose META is on its partition, not the ISO's, which
    carries META itself.
    """
    arch = profile.get("arch")
    if arch not in ARCHES:
        raise ProfileError(f"profile.arch: {arch!r} is not one of {', '.join(ARCHES)}")
    output = profile.get("output") or {}
    kind = output.get("kind")
    if kind not in KINDS:
        raise ProfileError(f"profile.output.kind: {kind!r} is not one of {', '.join(KINDS)}")
    platform = profile.get("platform", "metal")
    name = _profile_for(platform, output if kind == "image" else {}, platforms, base)
    if kind == "uki" and not profile.get("secureboot"):
        raise ProfileError(
            "profile.output.kind: a uki is a secure boot asset, signed with your keys",
            hint="set secureboot: true (or use a secureboot-<name> profile)",
        )
    if kind in ("iso", "installer", "kernel", "initramfs") and platform != "metal":
        raise ProfileError(
            f"profile.platform: {kind} assets are built for metal, not {platform!r}",
            hint="leave --platform out, or use output kind image or cmdline",
        )
    _check_assets(profile.get("input") or {}, arch)
    values = {"PLATFORM": f"linux/{arch}", **_customizations(profile)}
    if profile.get("version"):
        values["TAG"] = profile["version"]
    secure = bool(profile.get("secureboot"))
    if secure:
        values["SECUREBOOT"] = "true"
    target = {"iso": "secureboot-iso" if secure else "iso",
              "installer": "secureboot-installer-image" if secure else "installer-image",
              "kernel": "kernel", "initramfs": "initramfs", "image": f"image-{name}",
              "uki": f"uki-{name}"}.get(kind)  # fmt: skip
    iso = kind in ("iso", "kernel", "initramfs") or (
        kind == "cmdline" and base is None and platform == "metal"
    )
    cmdline = "iso-cmdline" if iso else f"cmdline-{name}"
    if kind == "installer":
        cmdline = None
    return Request(values, target or cmdline, cmdline, arch)


def _profile_for(
    platform: str, output: dict, platforms: dict[str, dict], base: str | None
) -> str:
    """The profile of ``platform`` whose image is what ``output`` asks (its outFormat and
    imageOptions, where given): ``base`` if it fits, else the shortest-named that does."""
    candidates = sorted(
        (name for name, p in platforms.items() if p["platform"] == platform),
        key=lambda name: (name != base, name != platform, len(name), name),
    )
    if not candidates:
        raise ProfileError(
            f"profile.platform: unknown platform {platform!r}",
            hint="known are " + ", ".join(sorted({p["platform"] for p in platforms.values()})),
        )
    asked = {"outFormat": output.get("outFormat"), **(output.get("imageOptions") or {})}
    if all(value is None for value in asked.values()):
        return candidates[0]
    for name in candidates:
        built = image_output(platforms[name])
        has = {"outFormat": built["outFormat"], **built["imageOptions"]}
        if all(value is None or str(value) == str(has[key]) for key, value in asked.items()):
            return name
    wanted = ", ".join(f"{key}: {value}" for key, value in asked.items() if value is not None)
    raise ProfileError(
        f"profile.output: no {platform} profile builds {wanted}"
        f" (profiles of {platform}: {', '.join(candidates)})",
        hint=f"add a profile file under targets/profiles/ with platform: {platform} and"
        f" {wanted} (a new image format is a file of data)",
    )


def _where(row: Customization) -> str:
    """The profile field of a row, and the flag that sets it if one does, for messages."""
    return f"profile.{row.field}" + (f" ({row.flag.option})" if row.flag else "")


def _customizations(profile: dict[str, Any]) -> dict[str, str]:
    """The variable of each customization, as its row checks it, in canonical form; errors
    name the profile field (and the flag that sets it, if one does)."""
    values = {}
    for row in customizations.TABLE:
        field = _get(profile, row.field)
        try:
            values[row.variable] = row.validate("" if field is None else row.shape.read(field))
        except ValueError as err:  # Rejected, or a field the variable cannot be made of
            raise ProfileError(f"{_where(row)}: {err}") from None
    for row in customizations.TABLE:
        problem = unmet(row, lambda other: values.get(other, "")) if values[row.variable] else None
        if problem is None:
            continue
        kind, other = problem
        theirs = f"profile.{customizations.BY_VARIABLE[other].field}"
        if kind == "requires":
            raise ProfileError(
                f"{_where(row)} is set, but {theirs} is not",
                hint=f"give {theirs} too, or leave {_where(row)} out",
            )
        raise ProfileError(
            f"{_where(row)} cannot go with {theirs}: the rootfs is that image's",
            hint=f"leave {theirs} out to customize the rootfs, or drop {_where(row)}",
        )
    return values


def _get(profile: dict[str, Any], path: str) -> Any:
    """The value at a dotted field path, or None."""
    value: Any = profile
    for name in path.split("."):
        value = value.get(name) if isinstance(value, dict) else None
    return value


def apply_flags(profile: dict[str, Any], given: dict[str, str]) -> None:
    """Add the variables the flags set to ``profile``'s fields: a list field is extended,
    a mapping updated, any other replaced."""
    for row in customizations.TABLE:
        if row.variable not in given:
            continue
        place, leaf = _place(profile, row.field)
        value, old = row.shape.write(given[row.variable]), place.get(leaf)
        if isinstance(old, list):
            old.extend(value)
        elif isinstance(old, dict):
            old.update(value)
        else:
            place[leaf] = value


def _check_assets(inputs: dict[str, Any], arch: str) -> None:
    """input.kernel and input.initramfs: one imager image (IMAGER_IMAGE) or this graph's."""
    refs = {(inputs.get(k) or {}).get("imageRef", "") for k in ("kernel", "initramfs")}
    if len(refs) > 1:
        raise ProfileError(
            "profile.input: kernel and initramfs must come from the same imager image",
            hint="give both the same imageRef, or neither",
        )
    for key, default in (("kernel", "vmlinuz"), ("initramfs", "initramfs.xz")):
        path = (inputs.get(key) or {}).get("path")
        if path and path != f"{DEFAULT_ASSETS}/{arch}/{default}":
            raise ProfileError(
                f"profile.input.{key}.path: this graph builds the {key} (or takes it from an"
                f" imager image, imageRef); {path!r} is not an input here",
                hint=f"drop input.{key}.path, or give {DEFAULT_ASSETS}/{arch}/{default}, where"
                " an imager image holds what this graph builds",
            )
