"""YAML that remembers where each key came from.

Spec errors must name file and line; plain ``yaml.safe_load`` forgets both. This module
composes the node tree (libyaml when present) and builds dicts and lists that carry
their line numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import SpecError

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_scalars = yaml.constructor.SafeConstructor()


class LDict(dict):
    """A mapping with ``line`` (its own) and ``key_lines`` (each key's)."""

    line: int = 0
    key_lines: dict[Any, int]


class LList(list):
    """A sequence with ``line`` (its own) and ``item_lines`` (each item's)."""

    line: int = 0
    item_lines: list[int]


def load(path: Path, relname: str | None = None) -> Any:
    """Parse ``path``; errors name ``relname:line`` and the problem."""
    name = relname or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(name, f"cannot read: {err}") from None
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 0
        raise SpecError(
            f"{name}:{line}",
            f"broken YAML: {err.problem or err.context}",
            hint="fix the syntax at that line",
        ) from None
    except yaml.YAMLError as err:
        raise SpecError(name, f"broken YAML: {err}") from None
    return None if node is None else _convert(node, name)


_MERGE = "tag:yaml.org,2002:merge"


def _convert(node: yaml.Node, name: str) -> Any:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = LDict()
        out.line = line
        out.key_lines = {}
        own = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE)
        if own != len(node.value):
            _scalars.flatten_mapping(node)  # merged pairs (``<<: *anchor``) first, then own
        inherited = len(node.value) - own
        merged: set[Any] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = _convert(key_node, name)
            key_line = key_node.start_mark.line + 1
            if isinstance(key, (dict, list)):
                raise SpecError(f"{name}:{key_line}", "a key must be a plain scalar")
            if key in out and key not in merged:
                raise SpecError(
                    f"{name}:{key_line}",
                    f"duplicate key {key!r} (first at line {out.key_lines[key]})",
                )
            out[key] = _convert(value_node, name)
            out.key_lines[key] = key_line
            if index < inherited:
                merged.add(key)
            else:
                merged.discard(key)
        return out
    if isinstance(node, yaml.SequenceNode):
        seq = LList(_convert(item, name) for item in node.value)
        seq.line = line
        seq.item_lines = [item.start_mark.line + 1 for item in node.value]
        return seq
    try:
        return _scalars.construct_object(node)
    except yaml.constructor.ConstructorError as err:
        raise SpecError(f"{name}:{line}", f"bad scalar: {err.problem}") from None


def where(relname: str, container: Any, key: Any = None) -> str:
    """``file:line`` of ``key`` inside ``container`` (or of the container itself)."""
    if isinstance(container, LDict) and key is not None and key in container.key_lines:
        return f"{relname}:{container.key_lines[key]}"
    if isinstance(container, LList) and isinstance(key, int) and key < len(container.item_lines):
        return f"{relname}:{container.item_lines[key]}"
    return f"{relname}:{getattr(container, 'line', 0)}"
