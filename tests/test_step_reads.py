"""A step may name repository files its params point at (``reads``): they become the
node's sources, so they key it, a change to one rebuilds it, and a missing one stops the
plan naming the target and the file."""

from __future__ import annotations

import pytest
from project import build, make_project

from buildgraph.engine.errors import SpecError
from buildgraph.engine.step import StepContext, step


@step("test-reads", version=1, reads=lambda params: [params["file"]])
def _copy(ctx: StepContext) -> None:
    (out,) = ctx.outputs
    ctx.output(out).write_bytes((ctx.root / ctx.params["file"]).read_bytes())


SPECS = """
targets:
  copied:
    step: test-reads
    params: {file: "data/${TAG}.txt"}
    outputs: [copied.txt]
"""
A = "data/v1.0.0.txt"
"""What the tests' fixed TAG names."""


def test_a_file_its_params_name_keys_the_node(tmp_path):
    root = make_project(tmp_path / "repo", SPECS, {A: "a\n", "data/v2.txt": "b\n"})
    cache = tmp_path / "cache"
    assert build(root, cache, ["copied"]) == {"copied": "built"}
    assert build(root, cache, ["copied"]) == {"copied": "cached"}
    (root / "data" / "v2.txt").write_text("b, changed\n")  # not named: nothing to do
    assert build(root, cache, ["copied"]) == {"copied": "cached"}
    (root / A).write_text("a, changed\n")
    assert build(root, cache, ["copied"]) == {"copied": "built"}
    assert (root / "_out" / "copied.txt").read_text() == "a, changed\n"
    assert build(root, cache, ["copied"], TAG="v2") == {"copied": "built"}
    assert (root / "_out" / "copied.txt").read_text() == "b, changed\n"


def test_a_missing_file_stops_the_plan_naming_target_and_file(tmp_path):
    root = make_project(tmp_path / "repo", SPECS, {A: "a\n"})
    with pytest.raises(SpecError, match=r"target 'copied': source 'data/nope\.txt' does not"):
        build(root, tmp_path / "cache", ["copied"], TAG="nope")
