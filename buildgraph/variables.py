"""The one table of build variables (DESIGN section 3).

Each row says a variable's name, default, what it accepts and what it means; parsing,
defaults, validation, ``buildgraph vars`` and the docs all read this table. Values come
from ``doit TARGET NAME=value``, then the environment, then the default, and an unknown
name or a rejected value stops everything before a single step runs.
"""

from __future__ import annotations

import difflib
import os
import platform
import re
import shlex
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import VariableError

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


class Rejected(ValueError):
    """Raised by a validator; its text says what is accepted."""


Validator = Callable[[str], str]
Default = Callable[["Values"], str]


@dataclass(frozen=True)
class Variable:
    name: str
    default: Default
    validate: Validator
    help: str
    default_doc: str
    fans_out: bool = False
    requires: str = ""
    """A variable that must be set too when this one is: it has no effect otherwise."""
    excludes: str = ""
    """A variable that must be empty when this one is set: they cannot both apply."""


def _one_of(*accepted: str) -> Validator:
    def check(value: str) -> str:
        if value not in accepted:
            raise Rejected("one of " + ", ".join(accepted))
        return value

    return check


def _boolean(value: str) -> str:
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return "true"
    if lowered in ("false", "0", "no", ""):
        return "false"
    raise Rejected("true or false (also 1/0, yes/no)")


def _platform(value: str) -> str:
    items = [item.strip() for item in value.split(",") if item.strip()]
    accepted = [f"linux/{arch}" for arch in ARCHES]
    bad = [item for item in items if item not in accepted]
    if bad or not items:
        raise Rejected("a comma list of " + ", ".join(accepted))
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


def _shell_words(value: str) -> str:
    try:
        shlex.split(value)
    except ValueError as err:
        raise Rejected(f"shell-quoted words ({err})") from None
    return value


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
    words = shlex.split(_shell_words(value))
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


def _const(value: str) -> Default:
    return lambda _values: value


def _ref(name: str) -> Default:
    return lambda values: values[name]


_reference = _pattern(_REFERENCE, "an OCI image reference like registry:5000/user/name:tag")
_registry = _pattern(
    rf"^{_DOMAIN}$", f"a registry host[:port], or '{EMBEDDED_STORE}' for the embedded store"
)

FROM_IMAGER_ARGS = "from IMAGER_ARGS"
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
        _const(f"{EMBEDDED_STORE}/pkgs"),
        _pattern(_PREFIX, "a registry and repository prefix like ghcr.io/me"),
        "where package images live",
        f"{EMBEDDED_STORE}/pkgs (the embedded store)",
    ),
    Variable(
        "PKGS",
        _const("latest"),
        _pattern(f"^{_TAG}$", "an image tag: letters, digits, '.', '_', '-'"),
        "package set tag",
        "the tag pinned in targets/",
    ),
    Variable(
        "GOAMD64",
        _const("v2"),
        _one_of("v1", "v2", "v3", "v4"),
        "amd64 micro-architecture level for Go binaries",
        "v2",
    ),
    Variable(
        "REGISTRY",
        _const(EMBEDDED_STORE),
        _registry,
        "registry images are named for and pushed to",
        f"{EMBEDDED_STORE} (the embedded store)",
    ),
    Variable(
        "IMAGE_REGISTRY",
        _ref("REGISTRY"),
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
    Variable("PUSH", _const("false"), _boolean, "push images to IMAGE_REGISTRY", "false"),
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
        _const("all"),
        _one_of("all", "targetarch"),
        "which arches' boot assets go into the imager image",
        "all",
    ),
    Variable(
        "ZSTD_LEVEL",
        _const("18"),
        _one_of(*(str(level) for level in range(1, 20))),
        "zstd compression level of .zst disk images",
        "18",
    ),
    Variable(
        "IMAGER_IMAGE",
        _const(""),
        lambda value: value and _reference(value),
        "an imager image whose boot assets replace the locally built kernel and initramfs",
        "empty (build them)",
    ),
    Variable(
        "IMAGER_ARGS",
        _const(""),
        _imager_args,
        "imager flags, e.g. --extra-kernel-arg=console=ttyS0; each sets the variable below",
        "empty",
    ),
    *(
        Variable(name, _from_imager_args(name), _flag_value(name), help, FROM_IMAGER_ARGS,
                 requires="OVERLAY_IMAGE" if name in ("OVERLAY_NAME", "OVERLAY_OPTIONS") else "")
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
        _const(""),
        _customization,
        "files added to the root filesystem: a directory, or an image reference",
        "empty",
        excludes="IMAGER_IMAGE",
    ),
    Variable(
        "RM",
        _const(""),
        _rm,
        "root filesystem paths removed before CUSTOMIZATION is added (words)",
        "empty",
        excludes="IMAGER_IMAGE",
    ),
)  # fmt: skip

BY_NAME: dict[str, Variable] = {row.name: row for row in TABLE}


def rooted(path: str, root: Path) -> str:
    """One spelling of a path given relative to the repository or absolute: ``./x`` for a
    path inside the repository, else absolute. ``hello.tar``, ``./hello.tar`` and
    ``$PWD/hello.tar`` are the same input, so they must be the same key."""
    full = (root / path).resolve()
    try:
        return "./" + full.relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(full)


def _extension_paths(value: str, root: Path) -> str:
    words = shlex.split(value)
    return shlex.join(rooted(w, root) if w.endswith(".tar") else w for w in words)


PATH_WORDS: dict[str, Callable[[str, Path], str]] = {
    "SYSTEM_EXTENSIONS": _extension_paths,
    "CUSTOMIZATION": lambda value, root: rooted(value, root) if _is_path(value) else value,
}
"""Variables whose paths are put in one spelling (relative ones are to the repository)."""
PKG_PATTERN = re.compile(r"^PKG_([A-Z0-9_]+)$")


def package_variable(name: str) -> Variable:
    """The row for ``PKG_<NAME>``: one package image, defaulting into the package set."""
    package = package_name(name)
    return Variable(
        name,
        lambda values: f"{values['PKGS_PREFIX']}/{package}:{values['PKGS']}",
        _reference,
        f"image reference of package {package}",
        f"${{PKGS_PREFIX}}/{package}:${{PKGS}}",
    )


def package_name(name: str) -> str | None:
    """``kernel`` for ``PKG_KERNEL``; None when ``name`` is not of the PKG_<NAME> form."""
    match = PKG_PATTERN.match(name)
    return match.group(1).lower().replace("_", "-") if match else None


def lookup(name: str, packages: frozenset[str] = frozenset()) -> Variable | None:
    """The table row for ``name``, or None.

    ``PKG_<NAME>`` rows exist for the packages targets/ declares, and only for them,
    so that PKG_CONFIG_PATH in the environment is not mistaken for a package.
    """
    row = BY_NAME.get(name)
    if row is None and package_name(name) in packages:
        row = package_variable(name)
    return row


def arches(platform_value: str) -> list[str]:
    """The arches of a validated PLATFORM value, in the order given."""
    return [item.split("/", 1)[1] for item in platform_value.split(",")]


class Values(Mapping[str, str]):
    """Resolved variable values; defaults are computed only when first read.

    Reading lazily keeps ``git describe`` (TAG) off the path of goals that never
    embed a version.
    """

    def __init__(
        self,
        given: Mapping[str, tuple[str, str]],
        root: Path,
        data_defaults: Mapping[str, str] | None = None,
        packages: frozenset[str] = frozenset(),
    ) -> None:
        self.given = dict(given)
        self.root = root
        self.data_defaults = dict(data_defaults or {})
        self.packages = packages
        self._resolved: dict[str, str] = {}
        self.read: set[str] = set()
        """Names read so far: a compiled plan stays valid while these keep their values."""

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        cached = self._resolved.get(name)
        if cached is not None:
            return cached
        row = lookup(name, self.packages)
        if row is None:
            raise KeyError(name)
        if name in self.given:
            value, where = self.given[name]
            value = _checked(row, value, where)
        elif name in self.data_defaults:
            value = _checked(row, self.data_defaults[name], "set in targets/ for")
        else:
            value = _checked(row, row.default(self), "defaulted for")
        if name in PATH_WORDS:
            value = PATH_WORDS[name](value, self.root)
        self._resolved[name] = value
        if value:
            _check_together(row, value, self)
        return value

    def __iter__(self):
        return iter(BY_NAME)

    def __len__(self) -> int:
        return len(BY_NAME)

    def arches(self) -> list[str]:
        return arches(self["PLATFORM"])

    def origin(self, name: str) -> str:
        """Where a value came from: command line, environment, targets/ or default."""
        if name in self.given:
            return self.given[name][1].split(" for")[0]
        if name in self.data_defaults:
            return "set in targets/"
        row = lookup(name, self.packages)
        if row is not None and row.default_doc == FROM_IMAGER_ARGS and self[name]:
            return "from IMAGER_ARGS"
        return "default"


def unmet(row: Variable, value_of: Callable[[str], str]) -> tuple[str, str] | None:
    """What a set ``row`` lacks or clashes with: ("requires", X) when X is empty,
    ("excludes", X) when X is set; None when it may be set."""
    if row.requires and not value_of(row.requires):
        return "requires", row.requires
    if row.excludes and value_of(row.excludes):
        return "excludes", row.excludes
    return None


def _check_together(row: Variable, value: str, values: Values) -> None:
    problem = unmet(row, values.__getitem__)
    if problem is None:
        return
    kind, other = problem
    if kind == "requires":
        raise VariableError(
            f"variable {row.name} is set ({value!r}) but {other} is empty, and"
            f" {row.name} does nothing without it",
            hint=f"set {other} too, or leave {row.name} out",
        )
    raise VariableError(
        f"variables {row.name} and {other} cannot both be set: {row.name} is the"
        f" {row.help}, and with {other} that is not built here",
        hint=f"leave {other} empty to use {row.name}, or drop {row.name}",
    )


def _checked(row: Variable, value: str, how: str) -> str:
    try:
        return row.validate(value)
    except Rejected as err:
        raise VariableError(
            f"bad value {value!r} {how} variable {row.name}: accepted is {err}",
            hint=f"{row.name} is the {row.help}; e.g. `doit <target> {row.name}=<value>`",
        ) from None


def resolve(
    cmdline: Mapping[str, str],
    environ: Mapping[str, str],
    root: Path,
    data_defaults: Mapping[str, str] | None = None,
    packages: frozenset[str] = frozenset(),
) -> Values:
    """Combine command line, environment and defaults, validating every given value.

    Unknown names on the command line are errors; the environment is only consulted
    for names the table knows, since it holds much else.
    """
    known = [*BY_NAME, *(f"PKG_{p.upper().replace('-', '_')}" for p in sorted(packages))]
    for name in cmdline:
        if lookup(name, packages) is None:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]}?" if close else "`buildgraph vars` lists them all"
            raise VariableError(
                f"unknown variable {name!r}: known are {', '.join(known)}",
                hint=hint,
            )
    given = {
        name: (value, "from the environment for")
        for name, value in environ.items()
        if lookup(name, packages) is not None
    }
    given.update(
        (name, (value, "given on the command line for")) for name, value in cmdline.items()
    )
    values = Values(given, root, data_defaults, packages)
    for name in given:
        values[name]
    return values
