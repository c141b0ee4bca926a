"""The imager's customization flags, made from the customizations table.

``buildgraph imager`` and ``IMAGER_ARGS`` take the same flags: each sets the variable of
its row of :data:`buildgraph.imager.customizations.TABLE`, in that row's canonical form.
"""

from __future__ import annotations

import argparse
import functools
import shlex

from .customizations import BY_VARIABLE, FLAGS


def canonical(variable: str, value: str) -> str:
    """A flag variable's value checked and in canonical form; ValueError says why not."""
    return BY_VARIABLE[variable].validate(value)


class _Refused(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would exit the process
        raise _Refused(message)


def add_to(parser: argparse.ArgumentParser) -> None:
    """Add the flags to an argparse parser; each lands in ``args.<VARIABLE>``."""
    for row, flag in FLAGS:
        parser.add_argument(
            flag.option,
            dest=row.variable,
            metavar=flag.metavar,
            help=flag.help + (" (repeatable)" if flag.repeatable else ""),
            action="append",
            default=[],
        )


def to_variables(args: argparse.Namespace) -> dict[str, str]:
    """The variables the flags in ``args`` set (only those given), canonical."""
    found = {}
    for row, flag in FLAGS:
        given: list[str] = getattr(args, row.variable)
        if not given:
            continue
        words = [w for value in given for w in value.split()] if flag.split else given
        try:
            found[row.variable] = row.validate(shlex.join(words))
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
        accepted = ", ".join(flag.option for _row, flag in FLAGS)
        raise ValueError(f"{rest[0]!r} is not understood here; accepted are {accepted}")
    return tuple(to_variables(args).items())
