"""The Go init and the go-build step: the Go tests pass, and the step makes static,
reproducible binaries for the right machine that honour GOAMD64 on amd64 only."""

from __future__ import annotations

import os
import platform
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from project import REPO, build, make_project

from buildgraph.engine.step import StepContext, load_all

INIT = REPO / "init"
EM = {"amd64": 62, "arm64": 183}  # EM_X86_64, EM_AARCH64
PT_DYNAMIC, PT_INTERP = 2, 3
ET_EXEC = 2
SPECS = """
targets:
  init:
    step: go-build
    per_arch: true
    sources: ["init/go.mod", "init/*.go"]
    params: {package: init, goamd64: "${GOAMD64}"}
    outputs: ["init-${ARCH}"]
"""
BOTH = "linux/amd64,linux/arm64"



def _go_env(tmp: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "GOCACHE": str(tmp / "gocache"),
        "GOPATH": str(tmp / "gopath"),
        "GOENV": "off",
        "GOWORK": "off",
        "GOPROXY": "off",
        "GOFLAGS": "-modcacherw",
        "CGO_ENABLED": "0",
        **extra,
    }


def _init_sources() -> dict[str, str]:
    files = [INIT / "go.mod", *sorted(INIT.glob("*.go"))]
    return {f"init/{f.name}": f.read_text() for f in files}


def _elf(data: bytes) -> tuple[int, int, list[int]]:
    """(e_type, e_machine, program header types) of a little-endian ELF64 file."""
    assert data[:4] == b"\x7fELF", "not an ELF file"
    assert data[4] == 2 and data[5] == 1, "not little-endian ELF64"
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    (e_phoff,) = struct.unpack_from("<Q", data, 32)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 54)
    types = [struct.unpack_from("<I", data, e_phoff + i * e_phentsize)[0] for i in range(e_phnum)]
    return e_type, e_machine, types


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[tuple[str, str, str], bytes]:
    """(copy, GOAMD64, arch) -> init bytes, built through a Session from two copies of the
    source at different paths, each with its own cache."""
    assert shutil.which("go"), "go is not installed: run ./setup.sh"
    results = {}
    for copy in ("a", "b"):
        base = tmp_path_factory.mktemp(f"copy-{copy}")
        root = make_project(base / f"checkout-{copy}" / "repo", SPECS, _init_sources())
        for goamd64 in ("v1", "v3"):
            build(root, base / "cache", ["init"], PLATFORM=BOTH, GOAMD64=goamd64)
            for arch in EM:
                out = root / "_out" / f"init-{arch}"
                assert out.stat().st_mode & 0o111 == 0o111, "not executable"
                results[copy, goamd64, arch] = out.read_bytes()
    return results


@pytest.mark.slow
def test_go_vet_and_go_test_pass_and_gofmt_is_clean(tmp_path):
    unformatted = subprocess.run(
        ["gofmt", "-l", "."], cwd=INIT, capture_output=True, text=True, check=True
    ).stdout
    assert unformatted == "", f"gofmt would reformat: {unformatted}"
    for goarch in EM:
        env = _go_env(tmp_path, GOARCH=goarch)
        subprocess.run(["go", "vet", "./..."], cwd=INIT, env=env, check=True, timeout=300)
    subprocess.run(
        ["go", "test", "-count=1", "./..."],
        cwd=INIT,
        env=_go_env(tmp_path),
        check=True,
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(EM))
def test_init_is_a_static_elf_for_its_machine(built, arch):
    e_type, e_machine, phdrs = _elf(built["a", "v1", arch])
    assert e_machine == EM[arch]
    assert e_type == ET_EXEC
    assert PT_INTERP not in phdrs and PT_DYNAMIC not in phdrs


@pytest.mark.slow
def test_init_is_byte_identical_across_checkouts_and_caches(built):
    for goamd64 in ("v1", "v3"):
        for arch in EM:
            assert built["a", goamd64, arch] == built["b", goamd64, arch], (goamd64, arch)


@pytest.mark.slow
def test_goamd64_changes_amd64_only(built):
    assert built["a", "v1", "amd64"] != built["a", "v3", "amd64"]
    assert built["a", "v1", "arm64"] == built["a", "v3", "arm64"]


@pytest.mark.slow
def test_step_without_a_cache_dir_gives_the_same_bytes(built, tmp_path):
    out = tmp_path / "out"
    ctx = StepContext(
        params={"package": "init", "goamd64": "v1"},
        arch="amd64",
        root=REPO,
        sources=[REPO / "init" / "go.mod", *sorted((REPO / "init").glob("*.go"))],
        inputs={},
        out_dir=out,
        outputs=("init",),
        tool_paths={"go": shutil.which("go")},
    )
    load_all()["go-build"].run(ctx)
    assert (out / "init").stat().st_mode & 0o777 == 0o755
    assert (out / "init").read_bytes() == built["a", "v1", "amd64"]


@pytest.mark.slow
def test_init_refuses_to_run_unless_pid_1(built, tmp_path):
    arch = {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()]
    binary = tmp_path / "init"
    binary.write_bytes(built["a", "v1", arch])
    binary.chmod(0o755)
    mounts = Path("/proc/self/mountinfo").read_text()
    done = subprocess.run([binary], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert done.stderr == "init: not PID 1\n"
    assert done.stdout == ""
    assert Path("/proc/self/mountinfo").read_text() == mounts


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"goamd64": "v1"}, "needs params.package"),
        ({"package": "/work/init"}, "must be relative to the repo root"),
        ({"package": "init/../../etc"}, "no '..'"),
        ({"package": "init", "goamd64": "v5"}, "'v5' is not one of v1, v2, v3, v4"),
        ({"package": "init", "goarch": "arm64"}, "unknown go-build params ['goarch']"),
        ({"package": "init", "ldflags_x": {"version": "1"}}, "is not importpath.name"),
        ({"package": "init", "ldflags_x": {"main.v": "it's"}}, "must have no quotes"),
    ],
)
def test_check_rejects_bad_params(params, message):
    with pytest.raises(ValueError) as err:
        load_all()["go-build"].check(params)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "params",
    [
        {"package": "init", "goamd64": "${GOAMD64}"},
        {"package": "cmd/init", "goamd64": "v4"},
        {"package": "init", "ldflags_x": {"buildgraph.dev/init/x.Version": "1.0 beta"}},
    ],
)
def test_check_accepts_good_params(params):
    load_all()["go-build"].check(params)
