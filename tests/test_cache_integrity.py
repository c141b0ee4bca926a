"""The cache never serves bytes a from-scratch build would not produce.

Each test pins a way the cache could be fooled: writes through the hard links in
_out/ or in a step's inputs, links as outputs, params that print alike, edits the plan
cache could miss, sources edited mid-step.
"""

import os
import threading
import time

import pytest
from project import build, make_project

from buildgraph.engine.errors import SpecError, StepFailedError
from buildgraph.engine.store import Store

CHAIN = """
targets:
  leaf:
    step: shell
    sources: [src/a.txt]
    params: {script: "cat $SRCS > $OUT/leaf.txt"}
    outputs: [leaf.txt]
  top:
    step: concat
    needs: [leaf]
    params: {text: "${GOAMD64}"}
    outputs: [top.txt]
"""


def _writable(path):
    os.chmod(path, 0o644)
    return path


def test_an_edit_through_out_is_not_served(tmp_path):
    cache = tmp_path / "cache"
    root = make_project(tmp_path / "one", CHAIN, {"src/a.txt": "a\n"})
    build(root, cache, ["top"])
    with open(_writable(root / "_out" / "leaf.txt"), "a") as handle:
        handle.write("CORRUPT\n")
    other = make_project(tmp_path / "two", CHAIN, {"src/a.txt": "a\n"})
    status = build(other, cache, ["top"], GOAMD64="v3")
    assert status == {"leaf": "built", "top": "built"}
    assert (other / "_out" / "top.txt").read_text() == "a\nv3"
    assert build(root, cache, ["top"]) == {"leaf": "cached", "top": "cached"}
    assert (root / "_out" / "leaf.txt").read_text() == "a\n"


def test_a_step_that_edits_its_input_fails_and_the_cache_survives(tmp_path):
    cache = tmp_path / "cache"
    spec = CHAIN.replace(
        'step: concat\n    needs: [leaf]\n    params: {text: "${GOAMD64}"}',
        "step: shell\n    needs: [leaf]\n"
        '    params: {script: "chmod +w $DEPS; echo x >> $DEPS; cp $DEPS $OUT/top.txt"}',
    )
    root = make_project(tmp_path / "one", spec, {"src/a.txt": "a\n"})
    with pytest.raises(StepFailedError, match=r"top: step shell modified its input leaf/leaf\.txt"):
        build(root, cache, ["top"])
    assert build(root, cache, ["leaf"]) == {"leaf": "built"}
    assert (root / "_out" / "leaf.txt").read_text() == "a\n"


def test_a_symlink_output_is_refused_and_the_source_untouched(tmp_path):
    spec = """
    targets:
      top:
        step: shell
        sources: [src/a.txt]
        params: {script: "ln -s $SRCS $OUT/top.txt"}
        outputs: [top.txt]
    """
    root = make_project(tmp_path / "repo", spec, {"src/a.txt": "a\n"})
    mode = (root / "src" / "a.txt").stat().st_mode
    with pytest.raises(StepFailedError, match=r"wrote top\.txt as symbolic links"):
        build(root, tmp_path / "cache", ["top"])
    assert (root / "src" / "a.txt").stat().st_mode == mode


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("true", r"did not write sub/top\.txt"),
        ("mkdir $OUT/sub; echo a > $OUT/sub/top.txt; echo b > $OUT/sub/extra",
         r"wrote undeclared sub/extra"),
        ("mkdir $OUT/sub; mkfifo $OUT/sub/top.txt", r"wrote sub/top\.txt as special files"),
    ],
)
def test_a_step_must_leave_exactly_its_declared_regular_files(tmp_path, script, message):
    spec = f"""
    targets:
      top:
        step: shell
        params: {{script: "{script}"}}
        outputs: [sub/top.txt]
    """
    root = make_project(tmp_path / "repo", spec, {})
    with pytest.raises(StepFailedError, match=message):
        build(root, tmp_path / "cache", ["top"])
    assert not (root / "_out" / "sub" / "top.txt").exists()


def test_a_hard_linked_output_is_copied_not_captured(tmp_path):
    spec = """
    targets:
      top:
        step: shell
        sources: [src/a.txt]
        params: {script: "ln $SRCS $OUT/top.txt"}
        outputs: [top.txt]
    """
    root = make_project(tmp_path / "repo", spec, {"src/a.txt": "a\n"})
    mode = (root / "src" / "a.txt").stat().st_mode
    build(root, tmp_path / "cache", ["top"])
    assert (root / "src" / "a.txt").stat().st_mode == mode
    assert (root / "_out" / "top.txt").stat().st_ino != (root / "src" / "a.txt").stat().st_ino


def test_executable_outputs_stay_executable(tmp_path):
    spec = """
    targets:
      tool:
        step: shell
        params: {script: "printf '#!/bin/sh\\necho ran\\n' > $OUT/tool; chmod 755 $OUT/tool"}
        outputs: [tool]
      top:
        step: shell
        needs: [tool]
        params: {script: "$DEPS > $OUT/top.txt"}
        outputs: [top.txt]
    """
    root = make_project(tmp_path / "repo", spec)
    build(root, tmp_path / "cache", ["top"])
    assert (root / "_out" / "top.txt").read_text() == "ran\n"
    assert os.access(root / "_out" / "tool", os.X_OK)


def test_params_that_print_alike_have_different_keys(tmp_path):
    spec = """
    targets:
      top:
        step: concat
        sources: [src/a.txt]
        params: {strip: STRIP}
        outputs: [top.txt]
    """
    root = make_project(
        tmp_path / "repo", spec.replace("STRIP", "false"), {"src/a.txt": "  a  \n\n"}
    )
    cache = tmp_path / "cache"
    build(root, cache, ["top"])
    assert (root / "_out" / "top.txt").read_text() == "  a  \n\n"
    (root / "targets" / "graph.yaml").write_text(spec.replace("STRIP", '"False"'))
    assert build(root, cache, ["top"]) == {"top": "built"}
    assert (root / "_out" / "top.txt").read_text() == "a\n"


def test_an_edit_that_keeps_size_and_mtime_is_seen(tmp_path):
    spec = """
    targets:
      top:
        step: concat
        params: {text: BBBB}
        outputs: [top.txt]
    """
    root = make_project(tmp_path / "repo", spec)
    cache = tmp_path / "cache"
    build(root, cache, ["top"])
    path = root / "targets" / "graph.yaml"
    st = path.stat()
    with open(path, "r+") as handle:
        handle.write(path.read_text().replace("BBBB", "CCCC"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    build(root, cache, ["top"])
    assert (root / "_out" / "top.txt").read_text() == "CCCC"


def test_an_edited_profile_in_a_nested_directory_is_seen(tmp_path):
    spec = """
    targets:
      image-%:
        step: shell
        profiles: profiles/cloud
        params: {script: "echo ${profile.size} > $OUT/${PROFILE}.img"}
        outputs: ["${PROFILE}.img"]
    """
    root = make_project(tmp_path / "repo", spec, {"targets/profiles/cloud/aws.yaml": "size: 1\n"})
    cache = tmp_path / "cache"
    assert build(root, cache, ["image-aws"]) == {"image-aws": "built"}
    profile = root / "targets" / "profiles" / "cloud" / "aws.yaml"
    profile.write_text("# in GiB\nsize: 1\n")  # the file is no source: only the fields read key
    assert build(root, cache, ["image-aws"]) == {"image-aws": "cached"}
    profile.write_text("size: 2\n")
    assert build(root, cache, ["image-aws"]) == {"image-aws": "built"}
    assert (root / "_out" / "aws.img").read_text() == "2\n"
    (root / "targets" / "profiles" / "cloud" / "gcp.yaml").write_text("size: 3\n")
    assert build(root, cache, ["image-gcp"]) == {"image-gcp": "built"}


def test_globs_follow_linked_directories_and_skip_out(tmp_path):
    spec = """
    targets:
      top:
        step: concat
        sources: ["**/*.txt"]
        outputs: [top.txt]
    """
    outside = tmp_path / "ext"
    outside.mkdir()
    (outside / "e1.txt").write_text("e1\n")
    root = make_project(tmp_path / "repo", spec, {"src/a.txt": "a\n"})
    os.symlink(outside, root / "src" / "ext")
    cache = tmp_path / "cache"
    build(root, cache, ["top"])
    assert (root / "_out" / "top.txt").read_text() == "a\ne1\n"
    assert build(root, cache, ["top"]) == {"top": "cached"}
    (outside / "e2.txt").write_text("e2\n")
    assert build(root, cache, ["top"]) == {"top": "built"}
    assert (root / "_out" / "top.txt").read_text() == "a\ne1\ne2\n"


def test_a_source_edited_while_its_step_runs_is_not_cached(tmp_path):
    spec = """
    targets:
      top:
        step: shell
        sources: [src/a.txt]
        params: {script: "sleep 1; cat $SRCS > $OUT/top.txt"}
        outputs: [top.txt]
    """
    root = make_project(tmp_path / "repo", spec, {"src/a.txt": "old\n"})
    cache = tmp_path / "cache"

    def edit():
        time.sleep(0.5)
        (root / "src" / "a.txt").write_text("new\n")

    editor = threading.Thread(target=edit)
    editor.start()
    with pytest.raises(StepFailedError, match=r"source src/a\.txt changed while its step ran"):
        build(root, cache, ["top"])
    editor.join()
    assert list(Store(cache).actions()) == []
    (root / "src" / "a.txt").write_text("old\n")
    build(root, cache, ["top"])
    assert (root / "_out" / "top.txt").read_text() == "old\n"


def test_dollar_dollar_is_a_literal_dollar(tmp_path):
    spec = """
    targets:
      top:
        step: shell
        params: {script: "x=1; echo $${x} > $OUT/top.txt"}
        outputs: [top.txt]
    """
    root = make_project(tmp_path / "repo", spec)
    build(root, tmp_path / "cache", ["top"])
    assert (root / "_out" / "top.txt").read_text() == "1\n"


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ('["a/b.txt", "a"]', "one is a directory of the other"),
        ('["x${KERNEL_ARGS}"]', "must be a relative path inside _out/"),
    ],
)
def test_outputs_that_cannot_coexist_or_escape_are_refused(tmp_path, outputs, message):
    spec = f"""
    targets:
      top:
        step: concat
        outputs: {outputs}
    """
    root = make_project(tmp_path / "repo", spec)
    with pytest.raises(SpecError, match=message):
        build(root, tmp_path / "cache", ["top"], KERNEL_ARGS="/../../escape")
    assert not (root / "_out").exists()


def test_output_names_with_commas_do_not_collide(tmp_path):
    spec = """
    targets:
      t1: {step: concat, outputs: [a, b]}
      t2: {step: concat, outputs: ["a,b"]}
    """
    root = make_project(tmp_path / "repo", spec)
    cache = tmp_path / "cache"
    build(root, cache, ["t1"])
    assert build(root, cache, ["t2"]) == {"t2": "built"}
