"""The doit front end as users run it: `doit <target> NAME=value`, list, clean, -n."""

import os

import pytest
from project import doit, make_project, node_events, statuses

from buildgraph.engine.store import Store

pytestmark = pytest.mark.slow

SPECS = """
default: [top]
targets:
  leaf:
    doc: one file per arch
    step: shell
    per_arch: true
    sources: [src/leaf.txt]
    params:
      script: "cat $SRCS > $OUT/leaf-$ARCH.txt; echo ${ARCH} ${GOAMD64} >> $OUT/leaf-$ARCH.txt"
    outputs: ["leaf-${ARCH}.txt"]
  mid:
    doc: the leaves of every arch, joined
    step: concat
    per_arch: true
    needs: [{target: leaf, arches: all}]
    outputs: ["mid-${ARCH}.txt"]
  top:
    doc: everything
    step: concat
    needs: [mid]
    outputs: [top.txt]
"""
BOTH = "PLATFORM=linux/amd64,linux/arm64"


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "repo", SPECS, {"src/leaf.txt": "leaf\n"}), tmp_path / "cache"


def test_list_shows_targets_with_their_docs(project):
    root, cache = project
    done = doit(root, cache, "list", "--all", BOTH)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("leaf ") and "one file per arch" in line for line in lines)
    assert any(line.startswith("leaf:arm64") for line in lines)
    assert any(line.startswith("top ") and "everything" in line for line in lines)


def test_second_run_runs_no_step_and_logs_one_event_per_node(project):
    root, cache = project
    first = doit(root, cache, "top", BOTH)
    assert first.returncode == 0, first.stderr
    events = node_events(first.stderr)
    labels = [e["node"] for e in events]
    assert sorted(labels) == ["leaf:amd64", "leaf:arm64", "mid:amd64", "mid:arm64", "top"]
    assert all(e["status"] == "built" for e in events)
    top = next(e for e in events if e["node"] == "top")
    assert top["target"] == "top" and top["arch"] is None and len(top["key"]) == 32
    assert isinstance(top["seconds"], float)
    second = doit(root, cache, "top", BOTH)
    assert second.returncode == 0, second.stderr
    assert set(statuses(second.stderr).values()) == {"cached"}
    assert len(node_events(second.stderr)) == 5
    assert (root / "_out" / "top.txt").read_text().count("leaf") == 4


def test_parallel_run_builds_the_same_bytes(project, tmp_path):
    root, cache = project
    done = doit(root, cache, "-n", "2", "top", BOTH)
    assert done.returncode == 0, done.stderr
    assert len(node_events(done.stderr)) == 5
    parallel = (root / "_out" / "top.txt").read_bytes()
    serial_root = make_project(tmp_path / "serial", SPECS, {"src/leaf.txt": "leaf\n"})
    assert doit(serial_root, tmp_path / "cache2", "top", BOTH).returncode == 0
    assert (serial_root / "_out" / "top.txt").read_bytes() == parallel
    again = doit(root, cache, "-n", "2", "top", BOTH)
    assert set(statuses(again.stderr).values()) == {"cached"}


def test_thread_workers_are_refused_with_one_message(project):
    root, cache = project
    done = doit(root, cache, "-n", "2", "-P", "thread", "top", BOTH, json_log=False)
    assert done.returncode != 0
    assert "buildgraph: error: doit's thread workers (-P thread)" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_a_subtask_builds_one_arch(project):
    root, cache = project
    done = doit(root, cache, "leaf:arm64", BOTH)
    assert done.returncode == 0, done.stderr
    assert statuses(done.stderr) == {"leaf:arm64": "built"}
    assert sorted(os.listdir(root / "_out")) == ["leaf-arm64.txt"]


def test_switching_platform_back_rebuilds_nothing(project):
    root, cache = project
    assert doit(root, cache, "top", "PLATFORM=linux/amd64").returncode == 0
    assert doit(root, cache, "top", "PLATFORM=linux/arm64").returncode == 0
    back = doit(root, cache, "top", "PLATFORM=linux/amd64")
    assert set(statuses(back.stderr).values()) == {"cached"}


def test_one_variable_change_rebuilds_exactly_its_dependents(project):
    root, cache = project
    assert doit(root, cache, "top", BOTH).returncode == 0
    changed = doit(root, cache, "top", BOTH, "GOAMD64=v3")
    assert statuses(changed.stderr) == {
        "leaf:amd64": "built",
        "leaf:arm64": "built",
        "mid:amd64": "built",
        "mid:arm64": "built",
        "top": "built",
    }
    (root / "src" / "leaf.txt").write_text("leaf\n")  # same bytes, new mtime
    touched = doit(root, cache, "top", BOTH, "GOAMD64=v3")
    assert set(statuses(touched.stderr).values()) == {"cached"}


def test_clean_removes_outputs_but_keeps_the_cache(project):
    root, cache = project
    assert doit(root, cache, "top").returncode == 0
    assert (root / "_out" / "top.txt").exists()
    cleaned = doit(root, cache, "clean")
    assert cleaned.returncode == 0, cleaned.stderr
    assert not [p for p in (root / "_out").iterdir() if not p.name.startswith(".")]
    restored = doit(root, cache, "top")
    assert set(statuses(restored.stderr).values()) == {"cached"}
    assert (root / "_out" / "top.txt").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "unknown target 'nope'"),
        (["top", "PLATFORM=linux/riscv64"], "bad value 'linux/riscv64'"),
        (["top", "GOAMD64=v9"], "accepted is one of v1, v2, v3, v4"),
        (["top", "PUSH=maybe"], "variable PUSH"),
        (["top", "NOSUCH=1"], "unknown variable 'NOSUCH'"),
        (["leaf:riscv64"], "unknown arch 'riscv64' in 'leaf:riscv64': known arches are amd64"),
    ],
)
def test_bad_input_stops_before_anything_is_written(project, args, message):
    root, cache = project
    done = doit(root, cache, *args)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (root / "_out").exists()


def test_broken_yaml_is_one_clear_message(project):
    root, cache = project
    path = root / "targets" / "graph.yaml"
    path.write_text(path.read_text().replace("needs: [mid]", "needs: [mid"))
    done = doit(root, cache, "top")
    assert done.returncode != 0
    assert "targets/graph.yaml:" in done.stderr and "broken YAML" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_failing_step_leaves_no_output_and_no_cache_entry(project):
    root, cache = project
    path = root / "targets" / "graph.yaml"
    path.write_text(
        path.read_text().replace("cat $SRCS >", "echo half > $OUT/leaf-$ARCH.txt; false;")
    )
    done = doit(root, cache, "leaf")
    assert done.returncode != 0
    assert "leaf:amd64: step shell failed: sh exited with status 1" in done.stdout + done.stderr
    assert not (root / "_out").exists() or not list((root / "_out").iterdir())
    assert list(Store(cache).actions()) == []


def test_a_missing_tool_names_its_debian_package(project, tmp_path):
    root, cache = project
    bare = tmp_path / "bin"
    bare.mkdir()
    env_path = os.environ["PATH"]
    os.environ["PATH"] = str(bare)
    try:
        done = doit(root, cache, "leaf")
    finally:
        os.environ["PATH"] = env_path
    assert done.returncode != 0
    assert "tool 'sh' is not installed" in done.stderr
    assert "apt-get install dash" in done.stderr
    assert not (root / "_out").exists()


def test_a_deleted_source_is_named(project):
    root, cache = project
    assert doit(root, cache, "leaf").returncode == 0
    (root / "src" / "leaf.txt").unlink()
    done = doit(root, cache, "leaf")
    assert done.returncode != 0
    assert "src/leaf.txt" in done.stderr and "Traceback" not in done.stderr


def test_parallel_workers_never_share_a_log_line(tmp_path):
    specs = "targets:\n" + "".join(
        f"  n{i}:\n    step: concat\n    params: {{text: '{i}'}}\n    outputs: [n{i}.txt]\n"
        for i in range(100)
    )
    root = make_project(tmp_path / "repo", specs)
    done = doit(root, tmp_path / "cache", "-n", "2", *[f"n{i}" for i in range(100)])
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("{")]
    assert all(line.count('"event"') == 1 for line in lines), lines
    assert len(node_events(done.stderr)) == 100


ALIASED = """
aliases:
  images: [image-%]
targets:
  image-%:
    doc: the ${profile.name} image
    step: concat
    per_arch: true
    profiles: profiles
    arches: ${profile.arches}
    params: {text: "${profile.name} ${ARCH}"}
    outputs: ["${PROFILE}-${ARCH}.img"]
"""
PROFILES = {
    "targets/profiles/aws.yaml": "name: aws\narches: [amd64, arm64]\n",
    "targets/profiles/vmware.yaml": "name: vmware\narches: [amd64]\n",
}


def test_an_alias_is_a_goal_a_task_in_the_list_and_cleans_its_targets(tmp_path):
    root = make_project(tmp_path / "repo", ALIASED, PROFILES)
    cache = tmp_path / "cache"
    arm = doit(root, cache, "images", "PLATFORM=linux/arm64")
    assert arm.returncode == 0, arm.stderr
    assert statuses(arm.stderr) == {"image-aws:arm64": "built"}
    amd = doit(root, cache, "-n", "2", "images:amd64", BOTH)
    assert amd.returncode == 0, amd.stderr
    assert statuses(amd.stderr) == {"image-aws:amd64": "built", "image-vmware:amd64": "built"}
    again = doit(root, cache, "images", BOTH)
    assert again.returncode == 0, again.stderr
    assert len(node_events(again.stderr)) == 3
    assert set(statuses(again.stderr).values()) == {"cached"}
    listed = doit(root, cache, "list", BOTH)
    assert listed.returncode == 0, listed.stderr
    assert any(
        line.startswith("images ") and "alias of image-aws, image-vmware" in line
        for line in listed.stdout.splitlines()
    ), listed.stdout
    assert any(line.startswith("image-vmware ") for line in listed.stdout.splitlines())
    cleaned = doit(root, cache, "clean", "images", BOTH)
    assert cleaned.returncode == 0, cleaned.stderr
    assert not [p for p in (root / "_out").iterdir() if not p.name.startswith(".")]


def test_a_target_named_for_an_arch_it_does_not_build_is_one_message(tmp_path):
    root = make_project(tmp_path / "repo", ALIASED, PROFILES)
    done = doit(root, tmp_path / "cache", "image-vmware", "PLATFORM=linux/arm64", json_log=False)
    assert done.returncode != 0
    assert done.stderr == (
        "buildgraph: error: target 'image-vmware' builds for amd64 only;"
        " PLATFORM=linux/arm64 asks for none of them\n  hint: add linux/amd64 to PLATFORM\n"
    )
    assert not (root / "_out").exists()


def test_a_profile_sharing_another_s_target_is_listed_and_built_as_that_one(tmp_path):
    twins = {**PROFILES, "targets/profiles/vmware2.yaml": PROFILES["targets/profiles/vmware.yaml"]}
    root = make_project(tmp_path / "repo", ALIASED.replace("${PROFILE}", "${profile.name}"), twins)
    cache = tmp_path / "cache"
    listed = doit(root, cache, "list", BOTH)
    assert listed.returncode == 0, listed.stderr
    assert any(
        line.startswith("image-vmware2 ") and "the same as image-vmware" in line
        for line in listed.stdout.splitlines()
    ), listed.stdout
    done = doit(root, cache, "image-vmware2", "image-vmware", BOTH)
    assert done.returncode == 0, done.stderr
    assert statuses(done.stderr) == {"image-vmware:amd64": "built"}
