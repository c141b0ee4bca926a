"""What stops a build is said in one message, never a traceback.

Ctrl-C (exit 130, nothing half-written kept), a cache or ``_out/`` that cannot be
written, a closed stdout, and the usual slips: ``GOAMD64 v3`` for ``GOAMD64=v3``,
lower-case names, ``PLATFORM=arm64``, an unknown arch, a misspelt target.

What is simulated, and how: EFBIG is real (RLIMIT_FSIZE in the build's process); a
directory root cannot write is one under /sys/fs (the kernel refuses root there with
EACCES); a file where a directory must be gives ENOTDIR/EEXIST. ENOSPC needs a full
filesystem, and no mount is allowed here: the errno comes from a real write to
/dev/full, and only its message is checked.
"""

import errno
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from project import FIXED, REPO, doit, make_project, statuses

from buildgraph.engine.errors import UnknownTargetError, VariableError, disk_error
from buildgraph.engine.session import Session
from buildgraph.engine.variables import resolve

READ_ONLY = Path("/sys/fs")
"""A directory in which the kernel refuses root a new file (sysfs)."""

SPECS = """
default: [top]
targets:
  fast:
    step: concat
    sources: [src/fast.txt]
    outputs: [fast.out]
  slow:
    step: shell
    per_arch: true
    params:
      script: |
        printf partial > $OUT/slow-$ARCH.out
        [ -e {marker} ] || {{ touch {marker}; sleep 20; }}  # only the first run waits
        echo done >> $OUT/slow-$ARCH.out
    outputs: ["slow-${{ARCH}}.out"]
  top:
    step: concat
    needs: [fast, slow]
    outputs: [top.out]
"""


@pytest.fixture
def project(tmp_path):
    marker = tmp_path / "started"
    specs = SPECS.format(marker=marker)
    root = make_project(tmp_path / "repo", specs, {"src/fast.txt": "x" * 200_000})
    return root, tmp_path / "cache", marker


def _one_message(done: subprocess.CompletedProcess, *parts: str) -> None:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    said = [line for line in done.stderr.splitlines() if line.startswith("buildgraph:")]
    assert len(said) == 1, done.stderr
    for part in parts:
        assert part in done.stderr, done.stderr


def _left_behind(root: Path, cache: Path) -> list[str]:
    """Files of an unfinished node: in _out/ but slow's, temp files, scratch, AC temp files."""
    out = sorted(p.name for p in (root / "_out").iterdir()) if (root / "_out").exists() else []
    scratch = [p.name for p in (cache / "tmp").iterdir()] if (cache / "tmp").exists() else []
    partial = [p.name for p in cache.rglob(".*") if p.is_file()]
    return [*[name for name in out if name != "fast.out"], *scratch, *partial]


def _start(root: Path, cache: Path, argv: list[str], **how: Any) -> subprocess.Popen:
    """``python ARGV`` in ``root`` with ``cache``, its output piped."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        "HOME": str(cache.parent),
        "BUILDGRAPH_CACHE": str(cache),
        **FIXED,
    }
    return subprocess.Popen(
        [sys.executable, *argv],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **how,
    )


def _run(root: Path, cache: Path, argv: list[str], **how: Any) -> subprocess.CompletedProcess:
    process = _start(root, cache, argv, **how)
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [["-m", "doit", "top"], ["-m", "doit", "-n", "2", "top"], ["-m", "buildgraph.cli", "build"]],
    ids=["doit", "doit -n 2", "buildgraph build"],
)
def test_ctrl_c_is_one_line_exit_130_and_leaves_nothing_half_written(project, argv):
    root, cache, marker = project
    build = _start(
        root,
        cache,
        argv,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists(), "the slow step never started"
    os.killpg(build.pid, signal.SIGINT)  # what Ctrl-C does
    out, err = build.communicate(timeout=30)
    assert build.returncode == 130, err
    assert err.splitlines()[-1] == "buildgraph: interrupted; what finished is cached"
    assert "Traceback" not in out + err
    assert _left_behind(root, cache) == []
    again = doit(root, cache, "top", env={"PATH": os.environ["PATH"]})
    assert again.returncode == 0, again.stderr
    assert statuses(again.stderr)["slow:amd64"] == "built"


@pytest.mark.slow
def test_a_file_size_limit_names_the_path_and_keeps_nothing(project):
    root, cache, _marker = project

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    done = _run(root, cache, ["-m", "doit", "fast"], preexec_fn=limit)
    _one_message(done, f"the cache {cache} is not usable: {cache}/tmp/", "File too large")
    assert "ulimit -f" in done.stderr
    assert _left_behind(root, cache) == [] and not (root / "_out").exists()
    assert not (cache / "ac").exists() or not list((cache / "ac").rglob("*"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["a file", "not writable"])
def test_an_unusable_cache_is_one_message(project, tmp_path, kind):
    root, _cache, _marker = project
    cache = tmp_path / "file" if kind == "a file" else READ_ONLY / "buildgraph-cache"
    if kind == "a file":
        cache.write_text("not a directory\n")
    for argv in (["top"], ["forget", "top"], ["info", "top"]):
        done = doit(root, cache, *argv)
        _one_message(done, f"the cache {cache} is not usable", "BUILDGRAPH_CACHE")
    built = _run(root, cache, ["-m", "buildgraph.cli", "build", "fast"])
    _one_message(built, f"the cache {cache} is not usable")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["a file", "not writable"])
def test_an_unwritable_out_is_one_message_and_the_next_run_places_it(project, kind):
    root, cache, _marker = project
    out = root / "_out"
    if kind == "a file":
        out.write_text("not a directory\n")
    else:
        out.symlink_to(READ_ONLY)
    done = doit(root, cache, "fast")
    _one_message(done, f"{out} is not usable", f"(or remove {out})")
    if kind == "not writable":  # the file it was placing, not its temp file
        assert f"is not usable: {out}/fast.out: Permission denied" in done.stderr
    out.unlink()
    again = doit(root, cache, "fast")
    assert again.returncode == 0, again.stderr
    assert (out / "fast.out").stat().st_size == 200_000


def test_a_full_disk_says_to_free_space(tmp_path):
    with pytest.raises(OSError) as caught, open("/dev/full", "wb", buffering=0) as full:
        full.write(b"x")
    assert caught.value.errno == errno.ENOSPC
    caught.value.filename = str(tmp_path / "cache" / "cas" / "ab" / "abcd")
    err = disk_error(caught.value, tmp_path / "cache", tmp_path / "repo" / "_out")
    assert str(err) == (
        f"the cache {tmp_path / 'cache'} is not usable: {caught.value.filename}: No space left"
        " on device\n  hint: free space on its filesystem, or set BUILDGRAPH_CACHE to a"
        " writable directory"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [["-m", "buildgraph.cli", "vars"], ["-m", "doit", "list"], ["-m", "doit", "help", "run"]],
    ids=["vars", "list", "help"],
)
def test_a_closed_stdout_is_not_a_traceback(project, argv):
    root, cache, _marker = project
    reader = _start(root, cache, argv)
    reader.stdout.close()  # as `| head -1` does once it has its line
    err = reader.stderr.read()
    reader.wait(timeout=30)
    assert err == ""
    assert reader.returncode == 141


HINTS = """
targets:
  leaf:
    step: shell
    per_arch: true
    params: {script: "echo ${GOAMD64} > $OUT/leaf-$ARCH.txt"}
    outputs: ["leaf-${ARCH}.txt"]
  top:
    step: concat
    needs: [leaf]
    outputs: [top.txt]
"""


def _session_error(tmp_path, goal: list[str], **cmdline: str) -> str:
    root = make_project(tmp_path / "repo", HINTS)
    with pytest.raises((UnknownTargetError, VariableError)) as caught:
        Session(root, goal, {**FIXED, **cmdline}, environ={}, cache_dir=tmp_path / "cache")
    return str(caught.value)


def test_a_variable_given_with_a_space_says_name_equals_value(tmp_path):
    said = _session_error(tmp_path, ["top", "GOAMD64", "v3"])
    assert said.startswith("'GOAMD64' is a variable, not a target; did you mean GOAMD64=v3?")


def test_a_lower_case_variable_suggests_its_name(tmp_path):
    with pytest.raises(VariableError) as caught:
        resolve({"goamd64": "v3"}, {}, tmp_path)
    assert str(caught.value).startswith("unknown variable 'goamd64'; did you mean GOAMD64?")


def test_a_bare_arch_for_platform_suggests_its_linux_platform(tmp_path):
    with pytest.raises(VariableError) as caught:
        resolve({"PLATFORM": "arm64"}, {}, tmp_path)
    assert "hint: did you mean PLATFORM=linux/arm64?" in str(caught.value)


def test_an_unknown_arch_lists_the_arches_and_suggests_no_platform(tmp_path):
    said = _session_error(tmp_path, ["leaf:x86"])
    assert said == "unknown arch 'x86' in 'leaf:x86': known arches are amd64, arm64"


def test_an_unknown_target_says_did_you_mean_first_and_the_list_after(tmp_path):
    said = _session_error(tmp_path, ["tpo"])
    assert said == "unknown target 'tpo'; did you mean top?\n  hint: known targets are leaf, top"
