"""Making nodes rebuild: ``doit forget`` and ``doit -a`` drop what the cache knows of them.

A node is cached when the action cache holds an entry under its key, and this checkout's
state remembers the key it last had. Dropping both makes the next build run its step;
the objects stay in the CAS, so a rebuild that makes the same bytes stores nothing new.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .hashing import key_of
from .session import Session, forget_fast_paths
from .state import State, workspace_dir
from .store import Store


def forget(session: Session, labels: Iterable[str]) -> list[str]:
    """Drop the entries of ``labels``: under the key each has now and the one it last had
    here. Returns the labels that had one; the others were not cached."""
    session.plan(dry=True)
    dropped = []
    for label in labels:
        keys = {session.resolved[label][0]} if label in session.resolved else set()
        last = session.state.nodes.pop(label, None)
        if last is not None:
            keys.add(last[0])
            session.state.dirty = True
        if [key for key in keys if session.store.drop_action(key)]:
            dropped.append(label)
    forget_fast_paths(session.state.directory)
    session.finish()
    return dropped


def forget_all(root: Path, store: Store) -> list[str]:
    """Drop the entries of every node the checkout at ``root`` has built, whatever the goal."""
    state = State(workspace_dir(store.root, root))
    dropped = [label for label, last in sorted(state.nodes.items()) if store.drop_action(last[0])]
    state.nodes.clear()
    state.save(force=True)
    forget_fast_paths(state.directory)
    return dropped


def forget_now(session: Session, label: str) -> None:
    """Drop the entry a node's inputs key now that its dependencies are built, so that
    :meth:`Session.run_node` runs its step even where an upstream rebuild made the same
    bytes as before."""
    session.store.drop_action(key_of(session.components(session.by_label[label])))
