"""The Talos build's variables: the rows of the engine's table (DESIGN section 3).

Each row says a variable's name, default, what it accepts and what it means; the
engine (buildgraph.engine.variables) resolves and validates values with them, and
``buildgraph vars`` and the README's table follow them. The imager's customizations
(KERNEL_ARGS, META, ...) are rows made from the customizations table
(buildgraph.imager.customizations), which also makes their flags and profile fields.
A value that becomes part of an image reference is checked by the reference grammar
(buildgraph.oci.reference), the one that reads it later.
"""

from __future__ import annotations

import os
import platform
import subprocess

from .engine.variables import (
    Default,
    Family,
    Rejected,
    Values,
    Variable,
    accepting,
    boolean,
    const,
    one_of,
    ref,
    rooted,
)
from .imager import customizations
from .imager.customizations import Customization, image_reference
from .oci import reference
from .steps.image import SUFFIXES

ARCHES = ("amd64", "arm64")
EMBEDDED_STORE = "local"
"""Registry name of the embedded OCI image-layout store: no server needed."""


def _platform(value: str) -> str:
    items = [item.strip() for item in value.split(",") if item.strip()]
    accepted = [f"linux/{arch}" for arch in ARCHES]
    bad = [item for item in items if item not in accepted]
    if bad or not items:
        # a bare arch (arm64) or another OS's (darwin/arm64): the same arch on linux
        meant = list(dict.fromkeys(f"linux/{item.rsplit('/', 1)[-1]}" for item in items))
        raise Rejected(
            "a comma list of " + ", ".join(accepted),
            ",".join(meant) if items and all(m in accepted for m in meant) else None,
        )
    return ",".join(dict.fromkeys(items))


def _epoch(value: str) -> str:
    if not value.isdigit():
        raise Rejected("a non-negative integer number of seconds since 1970-01-01 UTC")
    return str(int(value))


def _imager_args(value: str) -> str:
    from .imager.flags import parse_imager_args

    try:
        parse_imager_args(value)
    except ValueError as err:
        raise Rejected(f"imager flags ({err})") from None
    return value


def _from_imager_args(name: str) -> Default:
    def default(values: Values) -> str:
        from .imager.flags import parse_imager_args

        return parse_imager_args(values["IMAGER_ARGS"]).get(name, "")

    return default


def _customization_row(row: Customization) -> Variable:
    """The variable of a row of the customizations table; a flag's defaults from IMAGER_ARGS."""
    flagged = row.flag is not None
    return Variable(
        row.variable,
        _from_imager_args(row.variable) if flagged else const(""),
        row.validate,
        row.variable_help,
        "from IMAGER_ARGS" if flagged else row.default_doc,
        requires=row.requires,
        excludes=row.excludes,
        derived_from="IMAGER_ARGS" if flagged else "",
        rooted=row.rooted,
    )


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, "amd64"
    )


def _git(values: Values, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(values.root), *args],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def _tag_default(values: Values) -> str:
    return _git(values, "describe", "--tags", "--always", "--dirty") or "v0.0.0-dev"


def _epoch_default(values: Values) -> str:
    return _git(values, "log", "-1", "--format=%ct") or "0"


_registry = accepting(
    reference.registry_of,
    f"a registry host[:port], or '{EMBEDDED_STORE}' for the embedded store",
)
_tag = accepting(reference.is_tag, "an image tag: letters, digits, '.', '_', '-'")

TABLE: tuple[Variable, ...] = (
    Variable(
        "PLATFORM",
        lambda _values: f"linux/{host_arch()}",
        _platform,
        "target platforms; per-arch targets fan out over them",
        "linux/<host arch>",
        fans_out=True,
    ),
    Variable(
        "PKGS_PREFIX",
        const(f"{EMBEDDED_STORE}/pkgs"),
        accepting(lambda value: reference.parse(f"{value}/package:tag"),
                 "a registry and repository prefix like ghcr.io/me"),
        "where package images live",
        f"{EMBEDDED_STORE}/pkgs (the embedded store)",
    ),
    Variable(
        "PKGS",
        const("latest"),
        _tag,
        "package set tag",
        "the tag pinned in targets/",
    ),
    Variable(
        "GOAMD64",
        const("v2"),
        one_of("v1", "v2", "v3", "v4"),
        "amd64 micro-architecture level for Go binaries",
        "v2",
    ),
    Variable(
        "REGISTRY",
        const(EMBEDDED_STORE),
        _registry,
        "registry images are named for and pushed to",
        f"{EMBEDDED_STORE} (the embedded store)",
    ),
    Variable(
        "IMAGE_REGISTRY",
        ref("REGISTRY"),
        _registry,
        "registry of the images this build makes",
        "${REGISTRY}",
    ),
    Variable(
        "USERNAME",
        lambda _values: (os.environ.get("USER") or "buildgraph").lower(),
        accepting(reference.is_component, "a lower-case repository path component like 'me'"),
        "repository namespace of the images this build makes",
        "$USER",
    ),
    Variable("PUSH", const("false"), boolean, "push images to IMAGE_REGISTRY", "false"),
    Variable(
        "TAG",
        _tag_default,
        _tag,
        "image tag and version string",
        "git describe --tags --always --dirty",
    ),
    Variable(
        "SOURCE_DATE_EPOCH",
        _epoch_default,
        _epoch,
        "the timestamp inside every output",
        "time of the last commit",
    ),
    Variable(
        "INSTALLER_ARCH",
        const("all"),
        one_of("all", "targetarch"),
        "which arches' boot assets go into the imager image",
        "all",
        as_arches={"targetarch": "same", "all": "all"},
    ),
    Variable(
        "IMAGER_ARGS",
        const(""),
        _imager_args,
        "imager flags, e.g. --extra-kernel-arg=console=ttyS0; each sets the variable below",
        "empty",
    ),
    *map(_customization_row, customizations.TABLE),
    Variable(
        "SECUREBOOT",
        const("false"),
        boolean,
        "disk images boot a signed UKI under Secure Boot (named <platform>-<arch>-secureboot)",
        "false",
    ),
    Variable(
        "SECUREBOOT_KEYS",
        const(""),
        accepting(lambda value: "\n" not in value, "a directory"),
        "directory of the Secure Boot keys secure boot assets are signed with",
        "none (`buildgraph secureboot keys DIR` makes a set)",
        rooted=lambda value, root: value and rooted(value, root),
    ),
    Variable(
        "IMAGE_SUFFIX",
        const(""),
        one_of("", *SUFFIXES),
        "format and compression of image-% disks, as a file name ends (qcow2, raw.xz)",
        "each profile's own (diskFormat, outFormat)",
    ),
    Variable(
        "LINT",
        const("false"),
        boolean,
        "image-% lints each disk it converts (`buildgraph lint-image`) and fails on an error",
        "false",
    ),
    Variable(
        "ZSTD_LEVEL",
        const("18"),
        one_of(*(str(level) for level in range(1, 20))),
        "zstd compression level of .zst disk images",
        "18",
    ),
)  # fmt: skip


def _package_row(name: str, package: str) -> Variable:
    """The row for ``PKG_<NAME>``: one package image, defaulting into the package set."""
    return Variable(
        name,
        lambda values: f"{values['PKGS_PREFIX']}/{package}:{values['PKGS']}",
        image_reference,
        f"image reference of package {package}",
        f"${{PKGS_PREFIX}}/{package}:${{PKGS}}",
    )


PACKAGES = Family("PKG_", _package_row)
"""``PKG_<NAME>`` for each package targets/ declares (``packages:``)."""
