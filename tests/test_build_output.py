"""What a build prints: one line per built node, then a summary and the goal's outputs.

doit's own ``.  <task>`` line is gone (buildgraph's ``built <node> in <s>s`` replaces
it); the summary is a line on the console and one ``summary`` event in the JSON log.
``buildgraph vars TARGET`` lists only the variables that target's nodes read.
"""

import json
import re
import subprocess
import sys

import pytest
from project import FIXED, REPO, doit, make_project, node_events

pytestmark = pytest.mark.slow

SPECS = """
default: [top]
targets:
  leaf:
    step: shell
    per_arch: true
    sources: [src/leaf.txt]
    params: {script: "cat $SRCS > $OUT/leaf-$ARCH.txt; echo ${GOAMD64} >> $OUT/leaf-$ARCH.txt"}
    outputs: ["leaf-${ARCH}.txt"]
  top:
    step: concat
    needs: [leaf]
    params: {text: "${TAG}"}
    outputs: [top.txt, top-copy.txt]
"""
SUMMARY = re.compile(r"^(\d+) nodes: (\d+) built, (\d+) cached, [0-9.]+ s$")


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "repo", SPECS, {"src/leaf.txt": "leaf\n"}), tmp_path / "cache"


def _console(done: subprocess.CompletedProcess) -> list[str]:
    assert done.returncode == 0, done.stderr
    assert not re.search(r"^\.  ", done.stdout, re.M), done.stdout  # doit's own line
    return done.stderr.splitlines()


def test_doit_prints_each_built_node_once_then_a_summary_and_the_outputs(project):
    root, cache = project
    lines = _console(doit(root, cache, "top", json_log=False))
    assert [line.split()[1] for line in lines if line.startswith("built")] == ["leaf:amd64", "top"]
    assert all(re.match(r"built +\S+ in [0-9.]+s", line) for line in lines[:2])
    assert SUMMARY.match(lines[2]).groups() == ("2", "2", "0")
    assert lines[3:] == ["  _out/top.txt", "  _out/top-copy.txt"]
    again = _console(doit(root, cache, "-n", "2", "top", json_log=False))
    assert SUMMARY.match(again[0]).groups() == ("2", "0", "2")
    assert len(again) == 3


def test_the_json_log_has_one_event_per_node_and_one_summary(project):
    root, cache = project
    done = doit(root, cache, "top", "GOAMD64=v3")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines()]
    assert len(node_events(done.stderr)) == 2
    summaries = [event for event in events if event["event"] == "summary"]
    assert len(summaries) == 1 and events[-1] is summaries[0]
    assert summaries[0]["nodes"] == 2 and summaries[0]["built"] == 2
    assert summaries[0]["outputs"] == ["_out/top.txt", "_out/top-copy.txt"]


def test_a_failed_build_says_what_was_not_built_and_lists_no_outputs(project):
    root, cache = project
    path = root / "targets" / "graph.yaml"
    path.write_text(path.read_text().replace("cat $SRCS >", "false;"))
    done = doit(root, cache, "top", json_log=False)
    assert done.returncode != 0
    assert done.stderr.splitlines()[-1].startswith("2 nodes: 0 built, 0 cached, 2 not built")


def _cli(root, cache, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "buildgraph.cli", *args],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "BUILDGRAPH_CACHE": str(cache)},
        capture_output=True,
        text=True,
        check=False,
    )


def test_buildgraph_build_prints_the_same_summary(project):
    root, cache = project
    fixed = [f"{name}={value}" for name, value in FIXED.items()]
    done = _cli(root, cache, "build", "top", *fixed)
    lines = _console(done)
    assert SUMMARY.match(lines[2]).groups() == ("2", "2", "0")
    assert lines[3:] == ["  _out/top.txt", "  _out/top-copy.txt"]


def test_vars_of_a_target_are_the_ones_its_nodes_read(project):
    root, cache = project
    leaf = _cli(root, cache, "vars", "leaf")
    assert leaf.returncode == 0, leaf.stderr
    assert [line.split()[0] for line in leaf.stdout.splitlines()] == ["PLATFORM", "GOAMD64"]
    top = _cli(root, cache, "vars", "top", "TAG=v2")
    assert [line.split()[:2] for line in top.stdout.splitlines()] == [
        ["PLATFORM", "linux/amd64"],
        ["GOAMD64", "v2"],
        ["TAG", "v2"],
    ]


def test_one_node_is_counted_in_the_singular(project):
    root, cache = project
    lines = _console(doit(root, cache, "leaf", json_log=False))
    assert re.match(r"^1 node: 1 built, 0 cached, [0-9.]+ s$", lines[1]), lines
