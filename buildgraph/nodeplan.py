"""A node of a compiled plan: everything needed to key and run it, as plain data.

Kept apart from graph.py so that a run whose plan is cached never imports networkx.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .hashing import Component


class NodePlan(NamedTuple):
    label: str
    target: str
    arch: str | None
    step: str
    params: dict[str, Any]
    outputs: tuple[str, ...]
    sources: tuple[str, ...]
    deps: tuple[str, ...]
    vars: tuple[str, ...]
    tools: tuple[str, ...]
    static: tuple[Component, ...]
    static_encoded: str
    doc: str
