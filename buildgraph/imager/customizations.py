"""The imager's customizations, one table: each row is a build variable, an imager flag
and a profile field at once, as mkosi's SETTINGS table drives its parser, CLI and docs.

``buildgraph imager --meta 0xa=x``, ``doit iso IMAGER_ARGS='--meta 0xa=x'``, ``doit iso
META=0xa=x`` and a profile's ``customization.metaContents`` are the same build: each
sets one variable, which its row puts in one canonical form, so all give the same node
keys and share the cache. From :data:`TABLE` come the variable rows
(buildgraph.variables), the argparse flags (imager.flags) and the profile's schema and
fields (imager.profile); no other module lists them.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.variables import Rejected, Validator, accepting, rooted, shell_words
from ..kernelargs import Cmdline
from ..oci import reference

_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_OPTION_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
ANY_MAPPING = "mapping"
"""A profile schema leaf: a mapping of names to plain values (overlay options)."""


image_reference = accepting(
    reference.parse, "an OCI image reference like registry:5000/user/name:tag"
)


def _words(check: Callable[[list[str]], list[str]]) -> Validator:
    """A validator of a value of shell words, canonical: ``check`` on the words, rejoined."""

    def validate(value: str) -> str:
        try:
            words = shlex.split(value)
        except ValueError as err:
            raise Rejected(f"shell-quoted words ({err})") from None
        try:
            return shlex.join(check(words))
        except ValueError as err:
            raise Rejected(str(err)) from None

    return validate


def _kernel_args(words: list[str]) -> list[str]:
    Cmdline().apply(words, ())  # refuses keyless words
    return words


def _meta(words: list[str]) -> list[str]:
    from ..formats.meta import key_name, parse_words, partition_body

    values = parse_words(words)
    partition_body(values)  # refuses values that do not fit the META partition
    return [f"{key_name(key)}={values[key]}" for key in sorted(values)]


def _options(words: list[str]) -> list[str]:
    options: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not _OPTION_KEY.match(key):
            raise ValueError(f"overlay option {word!r} is not KEY=VALUE")
        options[key] = value
    return [f"{key}={options[key]}" for key in sorted(options)]


def _one(words: list[str]) -> list[str]:
    if len(words) > 1:
        raise ValueError(f"given {len(words)} times ({', '.join(words)}); give it once")
    return words


def _overlay_name(words: list[str]) -> list[str]:
    for word in _one(words):
        if not _NAME.match(word):
            raise ValueError(f"{word!r} is not a name like rpi_generic or example")
    return words


def _refs(words: list[str]) -> list[str]:
    for word in words:
        reference.parse(word)
    return words


def _extensions(words: list[str]) -> list[str]:
    """Image references, or paths to ``.tar`` files."""
    _refs([word for word in words if not word.endswith(".tar")])
    return words


def _is_path(value: str) -> bool:
    return value.startswith((".", "/"))


def _customization(value: str) -> str:
    if value and not _is_path(value):
        image_reference(value)
    return value


def _rm(value: str) -> str:
    words = shlex.split(shell_words(value))
    for word in words:
        if ".." in Path(word).parts or word.strip("/") == "":
            raise Rejected(f"paths inside the root filesystem, no '..' ({word!r} is not)")
    return shlex.join(words)


def _extension_paths(value: str, root: Path) -> str:
    words = shlex.split(value)
    return shlex.join(rooted(w, root) if w.endswith(".tar") else w for w in words)


def _customization_path(value: str, root: Path) -> str:
    return rooted(value, root) if _is_path(value) else value


@dataclass(frozen=True)
class Field:
    """How a profile holds a customization: its field's schema (as imager.profile.check
    reads it) and the conversions between the field's value and the variable's."""

    schema: Any
    read: Callable[[Any], str]
    """The field's value (checked against the schema) -> the variable's value.
    Raises ValueError saying what is wrong with it."""
    write: Callable[[str], Any]
    """A canonical variable value -> the field's value, as the profile prints it."""


def _extension(entry: dict[str, str]) -> str:
    if ("imageRef" in entry) == ("tarballPath" in entry):
        raise ValueError("each entry has one of imageRef, tarballPath")
    if "imageRef" in entry:
        return entry["imageRef"]
    path = Path(entry["tarballPath"]).expanduser().resolve()
    if path.suffix != ".tar" or not path.is_file():
        raise ValueError(
            f"tarballPath {entry['tarballPath']!r} is not a .tar file; give the path of an"
            " extension tarball (manifest.yaml and rootfs/ at its top)"
        )
    return str(path)


def _files(text: str) -> str:
    """A directory given to the imager is relative to the working directory."""
    if not text or not text.startswith((".", "/", "~")):
        return text
    return str(Path(text).expanduser().resolve())


def _pairs(words: str) -> list[tuple[str, str]]:
    """``KEY=VALUE`` words (canonical: each has its ``=``) as pairs."""
    return [(key, value) for key, _, value in (w.partition("=") for w in shlex.split(words))]


WORDS = Field([str], shlex.join, shlex.split)
TEXT = Field(str, str, str)
IMAGE = Field({"imageRef": str}, lambda image: image.get("imageRef", ""),
              lambda ref: {"imageRef": ref})
META = Field([{"key": (int, str), "value": str}],
             lambda entries: shlex.join(f"{m['key']}={m['value']}" for m in entries),
             lambda words: [{"key": k, "value": v} for k, v in _pairs(words)])
OPTIONS = Field(ANY_MAPPING, lambda options: shlex.join(f"{k}={v}" for k, v in options.items()),
                lambda words: dict(_pairs(words)))
EXTENSIONS = Field([{"imageRef": str, "tarballPath": str}],
                   lambda entries: shlex.join(map(_extension, entries)),
                   lambda words: [{"tarballPath": w} if w.endswith(".tar") else {"imageRef": w}
                                  for w in shlex.split(words)])
FILES = Field(str, _files, str)  # fmt: skip


@dataclass(frozen=True)
class Flag:
    option: str
    metavar: str
    help: str
    repeatable: bool = True
    split: bool = False
    """Each value is whitespace-split into several words (kernel arguments)."""


@dataclass(frozen=True)
class Customization:
    variable: str
    help: str
    field: str
    """Its field's path in an imager profile, dotted: ``customization.extraKernelArgs``."""
    shape: Field
    validate: Validator
    """The variable's value checked and in its one canonical spelling, or Rejected."""
    flag: Flag | None = None
    """The imager flag that sets it; a row with one defaults from IMAGER_ARGS."""
    default_doc: str = "empty"
    requires: str = ""
    excludes: str = ""
    rooted: Callable[[str, Path], str] | None = None

    @property
    def variable_help(self) -> str:
        return f"{self.help} ({self.flag.option})" if self.flag else self.help


TABLE: tuple[Customization, ...] = (
    Customization("KERNEL_ARGS", "kernel command line edits", "customization.extraKernelArgs",
                  WORDS, _words(_kernel_args),
                  Flag("--extra-kernel-arg", "ARG", "edit the kernel command line: key=value"
                       " appends, -key / -key=value removes", split=True)),
    Customization("META", "initial META values, KEY=VALUE words", "customization.metaContents",
                  META, _words(_meta),
                  Flag("--meta", "KEY=VALUE",
                       "an initial META value; KEY is 0..255 in any base (0xa)")),
    Customization("SYSTEM_EXTENSIONS", "system extension images or .tar paths",
                  "input.systemExtensions", EXTENSIONS, _words(_extensions),
                  Flag("--system-extension-image", "REF", "a system extension: an OCI image"
                       " reference, or a path to an extension .tar"),
                  rooted=_extension_paths),
    Customization("OVERLAY_IMAGE", "overlay image", "overlay.image", IMAGE,
                  _words(lambda words: _refs(_one(words))),
                  Flag("--overlay-image", "REF", "an overlay image reference", repeatable=False)),
    Customization("OVERLAY_NAME", "overlay name", "overlay.name", TEXT, _words(_overlay_name),
                  Flag("--overlay-name", "NAME", "the overlay's name", repeatable=False),
                  requires="OVERLAY_IMAGE"),
    Customization("OVERLAY_OPTIONS", "overlay options, KEY=VALUE words", "overlay.options",
                  OPTIONS, _words(_options),
                  Flag("--overlay-option", "KEY=VALUE", "an option for the overlay"),
                  requires="OVERLAY_IMAGE"),
    Customization("BASE_INSTALLER_IMAGE", "installer base image", "input.baseInstaller", IMAGE,
                  _words(lambda words: _refs(_one(words))),
                  Flag("--base-installer-image", "REF", "the image an installer is built on,"
                       " instead of this build's installer-base", repeatable=False)),
    Customization("CUSTOMIZATION",
                  "files added to the root filesystem: a directory, or an image reference",
                  "customization.rootfs.files", FILES, _customization,
                  excludes="IMAGER_IMAGE", rooted=_customization_path),
    Customization("RM", "root filesystem paths removed before CUSTOMIZATION is added (words)",
                  "customization.rootfs.remove", WORDS, _rm, excludes="IMAGER_IMAGE"),
    Customization("IMAGER_IMAGE", "an imager image whose boot assets replace the locally"
                  " built kernel and initramfs", "input.kernel.imageRef", TEXT,
                  lambda value: value and image_reference(value),
                  default_doc="empty (build them)"),
)  # fmt: skip
BY_VARIABLE = {row.variable: row for row in TABLE}
FLAGS: tuple[tuple[Customization, Flag], ...] = tuple(
    (row, row.flag) for row in TABLE if row.flag is not None
)
"""The rows that have a flag, each with its flag."""
