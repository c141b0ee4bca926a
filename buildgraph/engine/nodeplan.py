"""A node of a compiled plan: everything needed to key and run it, as plain data.

Kept apart from graph.py so that a run whose plan is cached never imports networkx.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from .hashing import Component, digest_bytes


class NodePlan(NamedTuple):
    label: str
    target: str
    arch: str | None
    step: str
    step_version: int
    params: dict[str, Any]
    outputs: tuple[str, ...]
    sources: tuple[str, ...]
    deps: tuple[str, ...]
    vars: tuple[str, ...]
    tools: tuple[str, ...]
    probed: bool
    """Its step has a probe, run at every plan (see steps.Step.probe)."""
    static_encoded: str
    """:func:`static_components`, encoded once at compile time."""
    doc: str


def static_components(node: NodePlan) -> list[Component]:
    """The inputs of a node fixed by its spec: step and version, arch, outputs, params."""
    components: list[Component] = [("step", node.step, str(node.step_version))]
    if node.arch:
        components.append(("arch", "", node.arch))
    components.append(("outputs", "", json.dumps(list(node.outputs))))
    components.extend(("param", key, encode_param(node.params[key])) for key in sorted(node.params))
    return components


def encode_param(value: Any) -> str:
    """A param as canonical JSON (so False and "False" differ); long ones by digest."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 64 and "\n" not in text else "#" + digest_bytes(text.encode())
