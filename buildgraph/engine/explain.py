"""Why a node would run: its inputs now against those of its last build here.

Keys keep every component (kind, name, value), not only their sum, so the answer
names the variable, file, upstream node, step or tool that changed, old -> new.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

from .hashing import Component, key_of
from .session import Session

_KIND = {
    "var": "variable",
    "file": "file",
    "dep": "upstream",
    "tool": "tool",
    "step": "step",
    "param": "param",
    "arch": "arch",
    "outputs": "outputs",
    "probe": "external input of step",
}


def explain(session: Session, only: Collection[str] | None = None) -> Iterator[str]:
    """Lines saying, for each node of the goal (or those in ``only``), cached or would
    run, and why."""
    session.plan(dry=True)
    labels = [label for label in session.order if only is None or label in only]
    width = max((len(label) for label in labels), default=0)
    for label in labels:
        status = session.status[label]
        said = session.remote_status.get(label)
        if status == "cached":
            yield f"{label:<{width}}  {'remote hit' if said == 'hit' else 'cached'}"
            continue
        yield f"{label:<{width}}  would run"
        if said is not None:
            yield f"  {'remote miss' if said == 'miss' else 'remote entry ' + said}"
        yield from (f"  {reason}" for reason in reasons(session, label))


def reasons(session: Session, label: str) -> list[str]:
    node = session.by_label[label]
    waiting = [dep for dep in node.deps if session.status.get(dep) == "run"]
    now = session.components(node, known_only=True)
    last = session.state.nodes.get(label)
    found = [f"upstream {dep} would run first" for dep in waiting]
    if last is None:
        return [*found, "never built in this checkout"]
    entry = session.store.get_action(last[0])
    if entry is None:
        return [*found, "its last build is no longer in the cache: what changed is unknown"]
    before = [tuple(component) for component in entry["components"]]
    found.extend(_diff(before, now, skip=set(waiting)))
    if not found:
        if key_of(now) == last[0]:
            found.append("same inputs as its last build, but the cache no longer holds the result")
        else:
            found.append("inputs reordered since its last build")
    return found


def _diff(before: list[Component], after: list[Component], skip: set[str]) -> list[str]:
    old = {(kind, name): value for kind, name, value in before}
    new = {(kind, name): value for kind, name, value in after}
    lines = []
    for kind, name in dict.fromkeys([*new, *old]):
        if kind == "dep" and name.split("/", 1)[0] in skip:
            continue
        was, now = old.get((kind, name)), new.get((kind, name))
        if was == now:
            continue
        what = f"{_KIND.get(kind, kind)} {name}".rstrip()
        if was is None:
            lines.append(f"{what}: new input ({_short(now)})")
        elif now is None:
            lines.append(f"{what}: no longer an input (was {_short(was)})")
        else:
            lines.append(f"{what}: {_short(was)} -> {_short(now)}")
    return lines


def _short(value: str | None) -> str:
    if value is None:
        return "-"
    if len(value) == 32 and all(c in "0123456789abcdef" for c in value):
        return value[:12]
    return value if value else "''"
