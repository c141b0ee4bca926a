"""The graph of a goal: fan-out over arches, dependency order, DOT and tree output."""

import subprocess
import sys

import pytest
from project import build, make_project

from buildgraph.engine.errors import SpecError, UnknownTargetError

SPECS = """
targets:
  b:
    step: concat
    params: {text: "b"}
    outputs: [b.txt]
  c:
    step: concat
    params: {text: "c"}
    outputs: [c.txt]
  k:
    step: concat
    per_arch: true
    params: {text: "${ARCH}"}
    outputs: ["k-${ARCH}.txt"]
  top:
    doc: joins c, then b, then every k
    step: concat
    needs: [c, b, {target: k, arches: all}]
    outputs: [top.txt]
"""


def test_steps_see_dependencies_in_the_order_of_needs(tmp_path):
    root = make_project(tmp_path / "repo", SPECS)
    build(root, tmp_path / "cache", ["top"], PLATFORM="linux/arm64,linux/amd64")
    assert (root / "_out" / "top.txt").read_text() == "cbarm64amd64"


def _cli(root, *args):
    return subprocess.run(
        [sys.executable, "-m", "buildgraph.cli", "-C", str(root), *args],
        capture_output=True,
        text=True,
        check=False,
        env={"BUILDGRAPH_CACHE": str(root.parent / "cache"), "TAG": "v1", "PATH": "/usr/bin:/bin"},
    )


def test_graph_prints_dot_and_a_tree(tmp_path):
    root = make_project(tmp_path / "repo", SPECS)
    dot = _cli(root, "graph", "top", "PLATFORM=linux/amd64,linux/arm64")
    assert dot.returncode == 0, dot.stderr
    assert dot.stdout.startswith("digraph buildgraph {")
    assert '"top" -> "k:arm64";' in dot.stdout
    tree = _cli(root, "graph", "--text", "top", "PLATFORM=linux/amd64,linux/arm64")
    assert tree.stdout.splitlines() == ["top", "├── c", "├── b", "├── k:amd64", "└── k:arm64"]


def test_cli_errors_are_one_message(tmp_path):
    root = make_project(tmp_path / "repo", SPECS)
    done = _cli(root, "graph", "nope")
    assert done.returncode == 2
    assert done.stderr.startswith("buildgraph: error: unknown target 'nope'")


PER_ARCH = """
targets:
  k:
    step: concat
    per_arch: true
    params:
      text: {per_arch: {amd64: "level ${GOAMD64}", arm64: "plain"}}
    outputs: ["k-${ARCH}.txt"]
"""


def test_per_arch_params_give_each_arch_its_value_and_only_its_variables(tmp_path):
    root = make_project(tmp_path / "repo", PER_ARCH)
    cache = tmp_path / "cache"
    both = {"PLATFORM": "linux/amd64,linux/arm64"}
    assert build(root, cache, ["k"], **both) == {"k:amd64": "built", "k:arm64": "built"}
    assert (root / "_out" / "k-amd64.txt").read_text() == "level v2"
    assert (root / "_out" / "k-arm64.txt").read_text() == "plain"
    changed = build(root, cache, ["k"], GOAMD64="v3", **both)
    assert changed == {"k:amd64": "built", "k:arm64": "cached"}


def test_per_arch_is_refused_where_it_cannot_apply(tmp_path):
    one = PER_ARCH.replace("    per_arch: true\n", "").replace('"k-${ARCH}.txt"', "k.txt")
    out = _cli(make_project(tmp_path / "a", one), "graph", "k")
    assert out.returncode == 2 and "per_arch in target 'k', which is not per_arch" in out.stderr
    riscv = PER_ARCH.replace("arm64: ", "riscv64: ")
    out = _cli(make_project(tmp_path / "b", riscv), "graph", "k")
    assert "per_arch names unknown arch 'riscv64'" in out.stderr


def test_per_arch_on_params_itself_or_nested_is_refused(tmp_path):
    top = PER_ARCH.replace(
        '    params:\n      text: {per_arch: {amd64: "level ${GOAMD64}", arm64: "plain"}}',
        "    params: {per_arch: {amd64: {text: a}}}",
    )
    out = _cli(make_project(tmp_path / "a", top), "graph", "k")
    assert out.returncode == 2 and "not on params itself" in out.stderr
    nested = PER_ARCH.replace('arm64: "plain"', "arm64: {x: {per_arch: {arm64: y}}}")
    out = _cli(make_project(tmp_path / "b", nested), "graph", "k")
    assert out.returncode == 2 and "per_arch inside per_arch" in out.stderr


ARCHES = """
targets:
  disk:
    step: concat
    per_arch: true
    arches: [amd64]
    params: {text: "disk ${ARCH}"}
    outputs: ["disk-${ARCH}"]
  image:
    step: concat
    per_arch: true
    arches: [amd64]
    needs: [disk]
    outputs: ["image-${ARCH}"]
  bundle:
    step: concat
    needs: [{target: disk, arches: all}]
    outputs: [bundle]
"""
BOTH = {"PLATFORM": "linux/amd64,linux/arm64"}


def test_a_target_with_arches_fans_out_only_over_those(tmp_path):
    root = make_project(tmp_path / "repo", ARCHES)
    cache = tmp_path / "cache"
    assert build(root, cache, ["image"], **BOTH) == {"disk:amd64": "built", "image:amd64": "built"}
    assert build(root, cache, ["bundle"], **BOTH) == {"disk:amd64": "cached", "bundle": "built"}
    assert (root / "_out" / "bundle").read_text() == "disk amd64"


@pytest.mark.parametrize(
    ("goal", "platform", "message", "hint"),
    [
        (
            "image",
            "linux/arm64",
            "target 'image' builds for amd64 only; PLATFORM=linux/arm64 asks for none of them",
            "add linux/amd64 to PLATFORM",
        ),
        (
            "image:arm64",
            "linux/amd64,linux/arm64",
            "target 'image' builds for amd64 only; 'image:arm64' asks for arm64",
            "ask for image:amd64",
        ),
    ],
)
def test_asking_a_target_for_an_arch_it_does_not_build_is_refused(
    tmp_path, goal, platform, message, hint
):
    root = make_project(tmp_path / "repo", ARCHES)
    with pytest.raises(UnknownTargetError) as caught:
        build(root, tmp_path / "cache", [goal], PLATFORM=platform)
    assert caught.value.message == message
    assert caught.value.hint == hint


def test_a_same_arch_need_on_a_target_without_that_arch_is_refused(tmp_path):
    spec = ARCHES.replace("    arches: [amd64]\n    needs: [disk]", "    needs: [disk]")
    root = make_project(tmp_path / "repo", spec)
    with pytest.raises(SpecError) as caught:
        build(root, tmp_path / "cache", ["image"], PLATFORM="linux/amd64")
    assert str(caught.value).startswith(
        "targets/graph.yaml:12: target 'image' needs 'disk' for arm64,"
        " but 'disk' builds for amd64 only"
    )
    assert "arches: all" in caught.value.hint


def test_a_need_whose_arches_a_variable_makes_same_is_checked_when_planned(tmp_path):
    spec = ARCHES.replace(
        "    arches: [amd64]\n    needs: [disk]",
        '    needs: [{target: disk, arches: "${INSTALLER_ARCH}"}]',
    )
    root = make_project(tmp_path / "repo", spec)
    cache = tmp_path / "cache"
    built = build(root, cache, ["image:arm64"], INSTALLER_ARCH="all", **BOTH)
    assert built == {"disk:amd64": "built", "image:arm64": "built"}
    with pytest.raises(SpecError, match="target 'image' needs 'disk' for arm64"):
        build(root, cache, ["image:arm64"], INSTALLER_ARCH="targetarch", **BOTH)


ALIASES = """
default: [everything]
aliases:
  images: [image-%]
  everything: [images, bundle]
targets:
  image-%:
    step: concat
    per_arch: true
    profiles: profiles
    arches: ${profile.arches}
    params: {text: "${PROFILE} ${ARCH}"}
    outputs: ["${PROFILE}-${ARCH}.img"]
  bundle:
    step: concat
    params: {text: bundle}
    outputs: [bundle]
"""
PROFILES = {
    "targets/profiles/aws.yaml": "arches: [amd64, arm64]\n",
    "targets/profiles/vmware.yaml": "arches: [amd64]\n",
}


def test_an_alias_goal_builds_its_members_that_platform_allows(tmp_path):
    root = make_project(tmp_path / "repo", ALIASES, PROFILES)
    cache = tmp_path / "cache"
    assert build(root, cache, ["images"], PLATFORM="linux/arm64") == {"image-aws:arm64": "built"}
    assert build(root, cache, ["images:amd64"], **BOTH) == {
        "image-aws:amd64": "built",
        "image-vmware:amd64": "built",
    }
    assert build(root, cache, [], PLATFORM="linux/arm64") == {
        "image-aws:arm64": "cached",
        "bundle": "built",
    }


def test_an_alias_that_leaves_out_every_member_is_refused(tmp_path):
    root = make_project(
        tmp_path / "repo", ALIASES, {"targets/profiles/vmware.yaml": "arches: [amd64]\n"}
    )
    with pytest.raises(UnknownTargetError) as caught:
        build(root, tmp_path / "cache", ["images"], PLATFORM="linux/arm64")
    assert caught.value.message == (
        "alias 'images': none of its targets (image-vmware) builds for PLATFORM=linux/arm64"
    )
    with pytest.raises(UnknownTargetError, match="arch 'arm64' of 'images:arm64' is not in"):
        build(root, tmp_path / "cache", ["images:arm64"], PLATFORM="linux/amd64")


UNLESS = """
targets:
  b:
    step: concat
    params: {text: "b"}
    outputs: [b.txt]
  top:
    step: concat
    needs: [{target: b, unless: "${IMAGER_IMAGE}"}]
    params: {text: "top"}
    outputs: [top.txt]
"""


def test_a_need_with_unless_holds_only_while_its_variable_is_empty(tmp_path):
    root = make_project(tmp_path / "repo", UNLESS)
    cache = tmp_path / "cache"
    assert build(root, cache, ["top"]) == {"b": "built", "top": "built"}
    assert (root / "_out" / "top.txt").read_text() == "btop"
    # The variable keys the node: setting it drops the need and rebuilds top alone.
    assert build(root, cache, ["top"], IMAGER_IMAGE="local/me/imager:v1") == {"top": "built"}
    assert (root / "_out" / "top.txt").read_text() == "top"
    assert build(root, cache, ["top"]) == {"b": "cached", "top": "cached"}


def test_a_need_with_when_holds_only_while_its_variable_is_set(tmp_path):
    root = make_project(tmp_path / "repo", UNLESS.replace("unless:", "when:"))
    cache = tmp_path / "cache"
    assert build(root, cache, ["top"]) == {"top": "built"}
    assert (root / "_out" / "top.txt").read_text() == "top"
    assert build(root, cache, ["top"], IMAGER_IMAGE="local/me/imager:v1") == {
        "b": "built",
        "top": "built",
    }
    assert (root / "_out" / "top.txt").read_text() == "btop"


def test_unless_takes_one_variable(tmp_path):
    root = make_project(tmp_path / "repo", UNLESS.replace('"${IMAGER_IMAGE}"', "IMAGER_IMAGE"))
    with pytest.raises(SpecError, match=r"unless 'IMAGER_IMAGE': give one \$\{VARIABLE\}"):
        build(root, tmp_path / "cache", ["top"])


FLAGGED = """
targets:
  b:
    step: concat
    params: {text: "b"}
    outputs: [b.txt]
  top:
    step: concat
    needs: [{target: b, when: "${PUSH}"}]
    params: {text: "top${PUSH:+-pushed}"}
    outputs: ["top${PUSH:+-pushed}.txt"]
"""


def test_a_boolean_s_false_is_unset_for_when_and_for_an_alternative(tmp_path):
    root = make_project(tmp_path / "repo", FLAGGED)
    cache = tmp_path / "cache"
    assert build(root, cache, ["top"], PUSH="false") == {"top": "built"}
    assert (root / "_out" / "top.txt").read_text() == "top"
    assert build(root, cache, ["top"], PUSH="yes") == {"b": "built", "top": "built"}
    assert (root / "_out" / "top-pushed.txt").read_text() == "btop-pushed"
    assert build(root, cache, ["top"], PUSH="0") == {"top": "cached"}


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("a${X:+-b}c", {"X": "1"}, "a-bc"),
        ("a${X:+-b}c", {"X": ""}, "ac"),
        ("a${X:+-b}c", {"X": "false"}, "ac"),
        ("${X}${X:+!}", {"X": "v"}, "v!"),
        ("$${X:+b}", {"X": "1"}, "${X:+b}"),
        ("${X:+}", {"X": "1"}, ""),
    ],
)
def test_an_alternative_stands_for_its_text_while_the_variable_is_set(text, values, expected):
    from buildgraph.engine.specs import references, substitute

    assert substitute(text, values) == expected
    assert references(text) <= {"X"}


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("a.${X:-raw.zst}", {"X": "qcow2"}, "a.qcow2"),
        ("a.${X:-raw.zst}", {"X": ""}, "a.raw.zst"),
        ("${X:-d}", {"X": "false"}, "d"),
        ("${X:-}", {"X": ""}, ""),
        ("$${X:-d}", {"X": "v"}, "${X:-d}"),
    ],
)
def test_a_default_stands_for_the_variable_while_it_is_unset(text, values, expected):
    from buildgraph.engine.specs import references, substitute

    assert substitute(text, values) == expected
    assert references(text) <= {"X"}


def test_when_and_unless_take_a_plain_variable_not_an_alternative(tmp_path):
    root = make_project(tmp_path / "repo", UNLESS.replace("${IMAGER_IMAGE}", "${IMAGER_IMAGE:+x}"))
    with pytest.raises(SpecError, match=r"give one \$\{VARIABLE\}"):
        build(root, tmp_path / "cache", ["top"])
