"""The Talos build's variables: the rows of the engine's table (DESIGN section 3).

Each row says a variable's name, default, what it accepts and what it means; the
engine (buildgraph.engine.variables) resolves and validates values with them, and
``buildgraph vars`` and the README's table follow them.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import subprocess
from pathlib import Path

from .engine.variables import (
    Default,
    Family,
    Rejected,
    Validator,
    Values,
    Variable,
    boolean,
    const,
    one_of,
    ref,
    rooted,
    shell_words,
)

ARCHES = ("amd64", "arm64")
EMBEDDED_STORE = "local"
"""Registry name of the embedded OCI image-layout store: no server needed."""

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
_REFERENCE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::{_TAG})?(?:@sha256:[0-9a-f]{{64}})?$"
)
_PREFIX = re.compile(rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*$|^{_DOMAIN}$")


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


def _pattern(regex: re.Pattern[str] | str, accepted: str) -> Validator:
    compiled = re.compile(regex) if isinstance(regex, str) else regex

    def check(value: str) -> str:
        if not compiled.match(value):
            raise Rejected(accepted)
        return value

    return check


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


def _flag_value(name: str) -> Validator:
    def check(value: str) -> str:
        from .imager.flags import canonical

        try:
            return canonical(name, value)
        except ValueError as err:
            raise Rejected(str(err)) from None

    return check


def _is_path(value: str) -> bool:
    return value.startswith((".", "/"))


def _customization(value: str) -> str:
    if value and not _is_path(value):
        _reference(value)
    return value


def _rm(value: str) -> str:
    words = shlex.split(shell_words(value))
    for word in words:
        if ".." in Path(word).parts or word.strip("/") == "":
            raise Rejected(f"paths inside the root filesystem, no '..' ({word!r} is not)")
    return shlex.join(words)


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


def _extension_paths(value: str, root: Path) -> str:
    words = shlex.split(value)
    return shlex.join(rooted(w, root) if w.endswith(".tar") else w for w in words)


def _customization_path(value: str, root: Path) -> str:
    return rooted(value, root) if _is_path(value) else value


_reference = _pattern(_REFERENCE, "an OCI image reference like registry:5000/user/name:tag")
_registry = _pattern(
    rf"^{_DOMAIN}$", f"a registry host[:port], or '{EMBEDDED_STORE}' for the embedded store"
)

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
        _pattern(_PREFIX, "a registry and repository prefix like ghcr.io/me"),
        "where package images live",
        f"{EMBEDDED_STORE}/pkgs (the embedded store)",
    ),
    Variable(
        "PKGS",
        const("latest"),
        _pattern(f"^{_TAG}$", "an image tag: letters, digits, '.', '_', '-'"),
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
        _pattern(rf"^{_COMPONENT}$", "a lower-case repository path component like 'me'"),
        "repository namespace of the images this build makes",
        "$USER",
    ),
    Variable("PUSH", const("false"), boolean, "push images to IMAGE_REGISTRY", "false"),
    Variable(
        "TAG",
        _tag_default,
        _pattern(f"^{_TAG}$", "an image tag: letters, digits, '.', '_', '-'"),
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
        "ZSTD_LEVEL",
        const("18"),
        one_of(*(str(level) for level in range(1, 20))),
        "zstd compression level of .zst disk images",
        "18",
    ),
    Variable(
        "IMAGER_IMAGE",
        const(""),
        lambda value: value and _reference(value),
        "an imager image whose boot assets replace the locally built kernel and initramfs",
        "empty (build them)",
    ),
    Variable(
        "IMAGER_ARGS",
        const(""),
        _imager_args,
        "imager flags, e.g. --extra-kernel-arg=console=ttyS0; each sets the variable below",
        "empty",
    ),
    *(
        Variable(name, _from_imager_args(name), _flag_value(name), help, "from IMAGER_ARGS",
                 requires="OVERLAY_IMAGE" if name in ("OVERLAY_NAME", "OVERLAY_OPTIONS") else "",
                 derived_from="IMAGER_ARGS",
                 rooted=_extension_paths if name == "SYSTEM_EXTENSIONS" else None)
        for name, help in (
            ("KERNEL_ARGS", "kernel command line edits (--extra-kernel-arg)"),
            ("META", "initial META values, KEY=VALUE words (--meta)"),
            ("SYSTEM_EXTENSIONS", "system extension images or .tar paths"
             " (--system-extension-image)"),
            ("OVERLAY_IMAGE", "overlay image (--overlay-image)"),
            ("OVERLAY_NAME", "overlay name (--overlay-name)"),
            ("OVERLAY_OPTIONS", "overlay options, KEY=VALUE words (--overlay-option)"),
            ("BASE_INSTALLER_IMAGE", "installer base image (--base-installer-image)"),
        )
    ),
    Variable(
        "CUSTOMIZATION",
        const(""),
        _customization,
        "files added to the root filesystem: a directory, or an image reference",
        "empty",
        excludes="IMAGER_IMAGE",
        rooted=_customization_path,
    ),
    Variable(
        "RM",
        const(""),
        _rm,
        "root filesystem paths removed before CUSTOMIZATION is added (words)",
        "empty",
        excludes="IMAGER_IMAGE",
    ),
)  # fmt: skip


def _package_row(name: str, package: str) -> Variable:
    """The row for ``PKG_<NAME>``: one package image, defaulting into the package set."""
    return Variable(
        name,
        lambda values: f"{values['PKGS_PREFIX']}/{package}:{values['PKGS']}",
        _reference,
        f"image reference of package {package}",
        f"${{PKGS_PREFIX}}/{package}:${{PKGS}}",
    )


PACKAGES = Family("PKG_", _package_row)
"""``PKG_<NAME>`` for each package targets/ declares (``packages:``)."""
