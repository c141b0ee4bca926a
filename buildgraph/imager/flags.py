"""The imager's customization flags, one table, each row a build variable.

``buildgraph imager --meta 0xa=x`` and ``doit iso IMAGER_ARGS='--meta 0xa=x'`` and
``doit iso META=0xa=x`` are the same build: every flag sets one variable, whose value is
put in a canonical form (:func:`canonical`), so the three give the same node keys and
share the cache. A target reads only the variables it needs, so adding an extension
does not touch the kernel command line, and a kernel argument does not touch the
initramfs.
"""

from __future__ import annotations

import argparse
import functools
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..kernelargs import Cmdline

_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_OPTION_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


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


def _extensions(words: list[str]) -> list[str]:
    """Image references, or paths to ``.tar`` files."""
    _refs([word for word in words if not word.endswith(".tar")])
    return words


def _refs(words: list[str]) -> list[str]:
    from ..oci.reference import parse

    for word in words:
        parse(word)
    return words


@dataclass(frozen=True)
class Flag:
    option: str
    variable: str
    metavar: str
    help: str
    check: Callable[[list[str]], list[str]]
    repeatable: bool = True
    split: bool = False
    """Each value is whitespace-split into several words (kernel arguments)."""


FLAGS: tuple[Flag, ...] = (
    Flag("--extra-kernel-arg", "KERNEL_ARGS", "ARG",
         "edit the kernel command line: key=value appends, -key / -key=value removes",
         _kernel_args, split=True),
    Flag("--meta", "META", "KEY=VALUE",
         "an initial META value; KEY is 0..255 in any base (0xa)", _meta),
    Flag("--system-extension-image", "SYSTEM_EXTENSIONS", "REF",
         "a system extension: an OCI image reference, or a path to an extension .tar",
         _extensions),
    Flag("--overlay-image", "OVERLAY_IMAGE", "REF", "an overlay image reference",
         lambda words: _refs(_one(words)), repeatable=False),
    Flag("--overlay-name", "OVERLAY_NAME", "NAME", "the overlay's name", _overlay_name,
         repeatable=False),
    Flag("--overlay-option", "OVERLAY_OPTIONS", "KEY=VALUE", "an option for the overlay",
         _options),
    Flag("--base-installer-image", "BASE_INSTALLER_IMAGE", "REF",
         "the image an installer is built on, instead of this build's installer-base",
         lambda words: _refs(_one(words)), repeatable=False),
)  # fmt: skip
BY_VARIABLE = {flag.variable: flag for flag in FLAGS}


def canonical(variable: str, value: str) -> str:
    """A flag variable's value checked and in canonical form; ValueError says why not."""
    flag = BY_VARIABLE[variable]
    try:
        words = shlex.split(value)
    except ValueError as err:
        raise ValueError(f"shell-quoted words ({err})") from None
    return shlex.join(flag.check(words))


class _Refused(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would exit the process
        raise _Refused(message)


def add_to(parser: argparse.ArgumentParser, flags: Iterable[Flag] = FLAGS) -> None:
    """Add the flags to an argparse parser; each lands in ``args.<VARIABLE>``."""
    for flag in flags:
        parser.add_argument(
            flag.option,
            dest=flag.variable,
            metavar=flag.metavar,
            help=flag.help + (" (repeatable)" if flag.repeatable else ""),
            action="append",
            default=[],
        )


def to_variables(args: argparse.Namespace) -> dict[str, str]:
    """The variables the flags in ``args`` set (only those given), canonical."""
    found = {}
    for flag in FLAGS:
        given: list[str] = getattr(args, flag.variable)
        if not given:
            continue
        words = [w for value in given for w in value.split()] if flag.split else given
        try:
            found[flag.variable] = shlex.join(flag.check(words))
        except ValueError as err:
            raise ValueError(f"{flag.option}: {err}") from None
    return found


def parse_imager_args(text: str) -> dict[str, str]:
    """The variables an ``IMAGER_ARGS`` string sets; ValueError names what is wrong."""
    return dict(_parsed(text))


@functools.lru_cache(maxsize=16)
def _parsed(text: str) -> tuple[tuple[str, str], ...]:
    """Parsed once per text: each variable IMAGER_ARGS sets reads it (and the table checks
    it first)."""
    parser = _Parser(prog="IMAGER_ARGS", add_help=False, allow_abbrev=False)
    add_to(parser)
    try:
        words = shlex.split(text)
    except ValueError as err:
        raise ValueError(f"shell-quoted words ({err})") from None
    try:
        args, rest = parser.parse_known_args(words)
    except _Refused as err:
        raise ValueError(str(err)) from None
    if rest:
        accepted = ", ".join(f.option for f in FLAGS)
        raise ValueError(f"{rest[0]!r} is not understood here; accepted are {accepted}")
    return tuple(to_variables(args).items())
