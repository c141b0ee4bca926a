"""The fast path of a no-op run agrees with the full plan, whatever was edited.

After a complete build, a plan whose sources, outputs and tools all keep their stats
marks every node cached without keying any (Session._fast_path). Hypothesis draws the
random projects and edits of test_incremental_property; after every edit, a plan with
the fast path and one without must want to run the same nodes, and a build must then
match the reference model. Sources are trusted by stat at once here (RACY_SECONDS
below zero), and every edit gives the file a new mtime, so the stats that the fast
path compares are the ones a slower clock would give.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_incremental_property import (
    VAR_CHOICES,
    Model,
    apply_edit,
    build,
    check,
    project_strategy,
    write_project,
)

from buildgraph.engine.session import Session

_CLOCK = itertools.count(1)


def _new_mtimes(root: Path, files: list[str]) -> None:
    """Every file an mtime of its own, as if each edit came a second after the last."""
    base = time.time_ns() - 10**15
    for name in files:
        stamp = base + next(_CLOCK) * 10**9
        os.utime(root / name, ns=(stamp, stamp))


def _edited(what: str) -> list[str]:
    """The file an edit described by apply_edit wrote, if it wrote one."""
    words = what.split()
    if words[0] == "write":
        return [words[1]]
    if words[0] == "append":
        return [words[-1]]
    return []


def _pending(root: Path, cache: Path, nodes, given, fast: bool) -> list[str]:
    cmdline = {name: value for name, value in given.items() if value is not None}
    session = Session(root, [n.name for n in nodes], cmdline, {}, cache)
    pending = session.plan(fast=fast)
    if fast:  # a plan that did not hold to the fast path removed the stamp
        event(f"the fast path held: {session._fast_path_file.exists()}")
    return pending


@settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # the patch is the same for every example
    ],
)
@given(project=project_strategy(), data=st.data())
def test_fast_path_and_full_plan_agree(project, data, monkeypatch_racy) -> None:
    nodes, files = project
    with tempfile.TemporaryDirectory(prefix="bg-fast-") as tmp:
        root, cache = Path(tmp) / "repo", Path(tmp) / "cache"
        write_project(root, nodes, files)
        _new_mtimes(root, sorted(files))
        model = Model(nodes, dict(files))
        history: dict[str, list] = {path: [content] for path, content in files.items()}
        history.update({name: [None] for name in VAR_CHOICES})
        check(build(root, cache, nodes, model.given), root, model, "the first build")
        for _ in range(data.draw(st.integers(1, 8), label="number of edits")):
            what = apply_edit(data, root, model, history)
            _new_mtimes(root, _edited(what))
            fast = _pending(root, cache, nodes, model.given, fast=True)
            full = _pending(root, cache, nodes, model.given, fast=False)
            assert fast == full, what
            check(build(root, cache, nodes, model.given), root, model, what)


def _one_source_project(root: Path, targets: str) -> None:
    """``targets`` (YAML) over one source, src/a.txt, whose stat is trusted at once."""
    (root / "targets").mkdir(parents=True)
    (root / "src").mkdir()
    (root / "src" / "a.txt").write_text("a\n")
    (root / "targets" / "graph.yaml").write_text("targets:\n" + targets)
    _new_mtimes(root, ["src/a.txt"])


def test_a_no_op_after_a_complete_build_takes_the_fast_path(tmp_path, monkeypatch_racy):
    root, cache = tmp_path / "repo", tmp_path / "cache"
    _one_source_project(
        root, "  top:\n    step: concat\n    sources: [src/a.txt]\n    outputs: [top.out]\n"
    )
    assert Session(root, ["top"], {}, {}, cache).build() == {"top": "built"}
    session = Session(root, ["top"], {}, {}, cache)
    assert session._fast_path()
    assert session.plan() == [] and session.status == {"top": "cached"}
    (root / "src" / "a.txt").write_text("b\n")
    _new_mtimes(root, ["src/a.txt"])
    session = Session(root, ["top"], {}, {}, cache)
    assert not session._fast_path()
    assert session.plan() == ["top"]


def test_forgetting_a_node_voids_the_fast_path_of_every_goal_that_holds_it(
    tmp_path, monkeypatch_racy
):
    from buildgraph.engine.forget import forget

    root, cache = tmp_path / "repo", tmp_path / "cache"
    _one_source_project(
        root,
        "  leaf:\n    step: concat\n    sources: [src/a.txt]\n    outputs: [leaf.out]\n"
        "  top:\n    step: concat\n    needs: [leaf]\n    outputs: [top.out]\n",
    )
    assert Session(root, ["top"], {}, {}, cache).build() == {"leaf": "built", "top": "built"}
    assert Session(root, ["top"], {}, {}, cache)._fast_path()
    leaf_only = Session(root, ["leaf"], {}, {}, cache)
    assert forget(leaf_only, ["leaf"]) == ["leaf"]
    assert Session(root, ["top"], {}, {}, cache).build() == {"leaf": "built", "top": "cached"}


def test_forgetting_the_goal_itself_rebuilds_it_despite_its_stamp(tmp_path, monkeypatch_racy):
    from buildgraph.engine.forget import forget

    root, cache = tmp_path / "repo", tmp_path / "cache"
    _one_source_project(
        root, "  top:\n    step: concat\n    sources: [src/a.txt]\n    outputs: [top.out]\n"
    )
    assert Session(root, ["top"], {}, {}, cache).build() == {"top": "built"}
    assert Session(root, ["top"], {}, {}, cache).build() == {"top": "cached"}  # stamps it
    assert forget(Session(root, ["top"], {}, {}, cache), ["top"]) == ["top"]
    assert Session(root, ["top"], {}, {}, cache).build() == {"top": "built"}


def test_a_stamp_made_from_a_plan_compiled_before_a_spec_edit_is_not_used(
    tmp_path, monkeypatch_racy
):
    root, cache = tmp_path / "repo", tmp_path / "cache"
    body = "  top:\n    step: concat\n    params: {text: %s}\n    outputs: [top.out]\n"
    _one_source_project(root, body % "one")
    spec = root / "targets" / "graph.yaml"
    old = Session(root, ["top"], {}, {}, cache)  # a long build has planned
    spec.write_text("targets:\n" + body % "two")
    Session(root, ["top"], {}, {}, cache).plan(dry=True)  # `explain` compiles the new plan
    assert old.build() == {"top": "built"}  # the long build ends, stamping its plan
    assert (root / "_out" / "top.out").read_text() == "one"
    assert Session(root, ["top"], {}, {}, cache).build() == {"top": "built"}
    assert (root / "_out" / "top.out").read_text() == "two"


def test_the_fast_path_logs_one_event_per_node_with_its_key(
    tmp_path, monkeypatch, monkeypatch_racy
):
    from buildgraph.engine import log

    root, cache = tmp_path / "repo", tmp_path / "cache"
    _one_source_project(
        root,
        "  leaf:\n    step: concat\n    sources: [src/a.txt]\n    outputs: [leaf.out]\n"
        "  top:\n    step: concat\n    needs: [leaf]\n    outputs: [top.out]\n",
    )
    said: list[tuple[str, str, str]] = []
    monkeypatch.setattr(log, "wants_cached", lambda: True)  # as BUILDGRAPH_LOG=json does
    monkeypatch.setattr(log, "node", lambda label, _t, _a, key, status, _s: said.append(
        (label, key, status)))  # fmt: skip

    Session(root, ["top"], {}, {}, cache).build()
    built = {label: key for label, key, _status in said}
    Session(root, ["top"], {}, {}, cache).build()  # a full plan, which stamps
    said.clear()
    session = Session(root, ["top"], {}, {}, cache)
    assert session._fast_path_file.exists()
    assert session.build() == {"leaf": "cached", "top": "cached"}
    assert said == [(label, built[label], "cached") for label in ("leaf", "top")]
