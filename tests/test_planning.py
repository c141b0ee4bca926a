"""The planner keys nodes from pieces; the runner from whole component lists. They agree.

If they did not, every node would look changed to the planner and be handed to doit,
where the runner's own lookup would find it cached: correct bytes, but a no-op that
pays for every node. So the test asserts on the plan itself.
"""

from project import FIXED, build, make_project

from buildgraph.engine.hashing import key_of
from buildgraph.engine.session import Session

SPECS = """
targets:
  leaf:
    step: shell
    per_arch: true
    vars: [PUSH]
    sources: [src/a.txt, src/b.txt]
    params: {script: "cat $SRCS > $OUT/leaf-$ARCH.txt; echo ${GOAMD64} >> $OUT/leaf-$ARCH.txt"}
    outputs: ["leaf-${ARCH}.txt"]
  top:
    step: shell
    needs: [{target: leaf, arches: all}]
    sources: [src/b.txt]
    params: {script: "cat $DEPS $SRCS > $OUT/top.txt"}
    outputs: [top.txt]
"""


def test_a_no_op_plan_hands_nothing_to_run(tmp_path):
    root = make_project(tmp_path / "repo", SPECS, {"src/a.txt": "a\n", "src/b.txt": "b\n"})
    cache = tmp_path / "cache"
    both = {"PLATFORM": "linux/amd64,linux/arm64"}
    build(root, cache, ["top"], **both)
    session = Session(root, ["top"], {**FIXED, **both}, environ={}, cache_dir=cache)
    assert session.plan(dry=True) == []
    for node in session.nodes:
        assert key_of(session.components(node)) == session.resolved[node.label][0]
