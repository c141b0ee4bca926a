"""What a step's tools see: no caller environment, a fixed umask, no way out of the tree."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
from project import build, make_project

from buildgraph.engine.errors import StepFailedError
from buildgraph.engine.step import StepContext
from buildgraph.steps.rootfs import rootfs

SPECS = """
targets:
  probe-env:
    step: shell
    params:
      script: |
        touch $OUT/f
        stat -c %a $OUT/f > $OUT/env.txt
        echo $${LEAK:-none} >> $OUT/env.txt  # $$: the shell's ${...}, not a variable
    outputs: [f, env.txt]
"""


def test_tools_see_neither_the_callers_environment_nor_its_umask(tmp_path, monkeypatch):
    monkeypatch.setenv("LEAK", "from-the-caller")
    root = make_project(tmp_path / "repo", SPECS)
    old = os.umask(0o077)
    try:
        build(root, tmp_path / "cache", ["probe-env"])
    finally:
        os.umask(old)
    assert (root / "_out" / "env.txt").read_text() == "644\nnone\n"


def test_rootfs_refuses_to_write_through_a_symlink_of_the_base_package(tmp_path: Path) -> None:
    victim = tmp_path / "host-etc"
    victim.mkdir()
    base = tmp_path / "base.tar"
    with tarfile.open(base, "w") as tar:
        link = tarfile.TarInfo("etc")
        link.type, link.linkname = tarfile.SYMTYPE, str(victim)
        tar.addfile(link)
    out = tmp_path / "scratch" / "out"
    out.mkdir(parents=True)
    ctx = StepContext(
        params={"os_release": {"ID": "x"}, "epoch": "0", "dirs": [], "applets": []},
        arch="amd64", root=tmp_path, sources=[], inputs={"pkg-base:amd64": {"b.tar": base}},
        out_dir=out, outputs=("rootfs.sqsh",),
    )  # fmt: skip
    with pytest.raises(StepFailedError, match="symlink at /etc"):
        rootfs(ctx)
    assert list(victim.iterdir()) == []


def test_an_executable_bit_alone_rebuilds_what_copies_the_source(tmp_path):
    specs = """
    targets:
      copy:
        step: shell
        sources: [f.sh]
        params: {script: "cp -p $SRCS $OUT/f.sh"}
        outputs: [f.sh]
    """
    root = make_project(tmp_path / "repo", specs, {"f.sh": "echo hi\n"})
    cache = tmp_path / "cache"
    assert build(root, cache, ["copy"]) == {"copy": "built"}
    (root / "f.sh").chmod(0o755)
    assert build(root, cache, ["copy"]) == {"copy": "built"}
    assert os.access(root / "_out" / "f.sh", os.X_OK)
    (root / "f.sh").chmod(0o644)
    assert build(root, cache, ["copy"]) == {"copy": "cached"}
    assert not os.access(root / "_out" / "f.sh", os.X_OK)


@pytest.mark.parametrize("entry", ["/etc", "../escape", "a/../../b"])
def test_rootfs_dirs_stay_inside_the_tree(entry):
    from buildgraph.steps.rootfs import _check

    with pytest.raises(ValueError, match="inside the rootfs"):
        _check({"os_release": {}, "epoch": "0", "dirs": [entry]})


def test_a_failed_tool_is_told_by_its_own_last_words_and_only_its_own(tmp_path: Path) -> None:
    ctx = StepContext(
        params={}, arch=None, root=tmp_path, sources=[], inputs={}, out_dir=tmp_path, outputs=()
    )
    with pytest.raises(StepFailedError, match=r"sh exited with status 3:\nout\nerr$"):
        ctx.call(["sh", "-c", "echo out; echo err >&2; exit 3"])
    ctx.call(["sh", "-c", "echo quiet"])
    with pytest.raises(StepFailedError, match=r"sh was killed by SIGTERM \(Terminated\):\nlast$"):
        ctx.call(["sh", "-c", "echo last; kill -TERM $$"])


def test_a_tool_s_background_processes_are_waited_for(tmp_path: Path) -> None:
    ctx = StepContext(
        params={}, arch=None, root=tmp_path, sources=[], inputs={}, out_dir=tmp_path, outputs=()
    )
    ctx.call(["sh", "-c", "(sleep 0.5; echo late > late.txt) &"])
    assert (tmp_path / "late.txt").read_text() == "late\n"
