"""Kernel command lines, edited by the imager's rules (DESIGN section 8).

A command line is an ordered list of keys, each with its values; a repeated key joins
the first entry of that key. Extra arguments are handled per key group, in order of
first appearance: ``-key`` drops every value of a key and ``-key=value`` one value (the
key keeps its place either way); an *overwrite* key (``console``, the platform key) has
its values replaced in place; any other key appends.
"""

from __future__ import annotations

from collections.abc import Iterable


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
