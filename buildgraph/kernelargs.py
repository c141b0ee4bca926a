"""Kernel command lines, edited by the imager's rules (DESIGN section 8).

A command line is an ordered list of keys, each with its values; a repeated key joins
the first entry of that key. Extra arguments are handled per key group, in order of
first appearance: ``-key`` drops every value of a key and ``-key=value`` one value (the
key keeps its place either way); an *overwrite* key (``console``, the platform key) has
its values replaced in place; any other key appends.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

IMAGER_FLAG = "--extra-kernel-arg"


class Cmdline:
    def __init__(self, words: Iterable[str] = ()) -> None:
        self.keys: dict[str, list[str]] = {}
        for key, value in _pairs(words):
            self.keys.setdefault(key, []).append(value)

    def apply(self, extra: Iterable[str], overwrite: Iterable[str]) -> Cmdline:
        """Edit in place by the rules above; returns self."""
        overwrite = set(overwrite)
        groups: dict[str, list[str | None]] = {}
        for word in extra:
            key, sep, value = word.partition("=")
            if key in ("", "-"):
                raise ValueError(f"kernel argument {word!r} has no key")
            groups.setdefault(key, []).append(value if sep else None)
        for key, values in groups.items():
            if key.startswith("-"):
                name = key[1:]
                for value in values:
                    kept = self.keys.get(name, [])
                    self.keys[name] = [] if value is None else [v for v in kept if v != value]
            elif key in overwrite:
                self.keys[key] = [value or "" for value in values]
            else:
                self.keys.setdefault(key, []).extend(value or "" for value in values)
        return self

    def __str__(self) -> str:
        return " ".join(
            key if value == "" else f"{key}={value}"
            for key, values in self.keys.items()
            for value in values
        )


def _pairs(words: Iterable[str]) -> Iterable[tuple[str, str]]:
    for word in words:
        key, _sep, value = word.partition("=")
        yield key, value


def extra_from_imager_args(text: str) -> list[str]:
    """The ``--extra-kernel-arg`` values of an IMAGER_ARGS string, split into words."""
    words = shlex.split(text)
    extra: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word.startswith(IMAGER_FLAG + "="):
            extra.extend(word[len(IMAGER_FLAG) + 1 :].split())
        elif word == IMAGER_FLAG and index + 1 < len(words):
            index += 1
            extra.extend(words[index].split())
        else:
            raise ValueError(
                f"IMAGER_ARGS: {word!r} is not understood here; accepted is "
                f"{IMAGER_FLAG}=ARG (repeatable)"
            )
        index += 1
    Cmdline().apply(extra, ())  # refuses keyless words now, before any step runs
    return extra
