"""The installer program (installer/__main__.py) and the pyz step that packs it.

Unit: the zip application is the same bytes whatever the order, times and modes of its
sources, runs on the standard library alone, and the target proposed for targets/ builds
it; bad arguments or inputs give one line, a non-zero exit and nothing at PATH. Slow:
given the boot assets that `doit image-metal` built, the installer writes the very bytes
of _out/disks/metal-amd64.raw, and a kill midway leaves nothing behind.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import yaml
from project import FIXED, REPO, make_project
from project import build as build_in_process
from realgraph import build, clone, sha256

import buildgraph.steps.disk  # registers the disk step, whoever ran first
import buildgraph.steps.pyz  # noqa: F401  (registers the step until it is a builtin)
from buildgraph import tools, variables
from buildgraph.engine.errors import StepFailedError
from buildgraph.engine.step import REGISTRY, StepContext

# The program's files, as targets/images.yaml lists them for the installer-program target.
SOURCES = yaml.safe_load((REPO / "targets/images.yaml").read_text())["targets"][
    "installer-program"
]["sources"]
TARGET = f"""
targets:
  installer-program:
    doc: the installer program, a zip application run by python3 (_out/installer.pyz)
    step: pyz
    sources: {json.dumps(SOURCES)}
    params: {{main: installer/__main__.py}}
    outputs: [installer.pyz]
"""
DISK = {"epoch": int(FIXED["SOURCE_DATE_EPOCH"]), "firmware": ["i386-pc", "x86_64-efi"],
        "size": "1246MiB"}  # fmt: skip
ASSETS = {  # file under usr/install/amd64/ -> what doit image-metal leaves in _out/
    "vmlinuz": "vmlinuz-amd64",
    "initramfs.xz": "initramfs-amd64.xz",
    "cmdline": "cmdline-metal-amd64",
    "grub.tar": "pkgs/grub-amd64.tar",
}


def _installer_module():
    """installer/__main__.py by its path: a package named installer may be installed too."""
    spec = importlib.util.spec_from_file_location("installer_main", REPO / SOURCES[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pyz(root: Path, sources: list[str], out: Path, main: str = SOURCES[0]) -> Path:
    ctx = StepContext(
        params={"main": main}, arch=None, root=root, sources=[root / s for s in sources],
        inputs={}, out_dir=out, outputs=("installer.pyz",),
    )  # fmt: skip
    REGISTRY["pyz"].run(ctx)
    return out / "installer.pyz"


def _copy_sources(dest: Path) -> Path:
    for name in SOURCES:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _pyz(REPO, SOURCES, tmp_path_factory.mktemp("pyz"))


def _install(pyz: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(pyz), *args], capture_output=True, text=True,
                          check=False, timeout=300, **kwargs)  # fmt: skip


# -- the pyz step ---------------------------------------------------------------


def test_pyz_bytes_depend_on_contents_only(tmp_path: Path) -> None:
    a, b = _copy_sources(tmp_path / "a"), _copy_sources(tmp_path / "b")
    for i, name in enumerate(SOURCES):
        os.utime(b / name, (1234567890 + i, 1234567890 + i))
        (b / name).chmod(0o600 if i % 2 else 0o755)
    first = _pyz(a, SOURCES, tmp_path / "out-a")
    again = _pyz(a, SOURCES, tmp_path / "out-a2")
    other = _pyz(b, SOURCES[::-1], tmp_path / "out-b")
    assert first.read_bytes() == again.read_bytes() == other.read_bytes()
    assert first.stat().st_mode & 0o777 == 0o755
    assert first.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(first) as zf:
        infos = zf.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(["__main__.py", *SOURCES[1:]])
    assert {(i.date_time, i.external_attr >> 16, i.compress_type) for i in infos} == {
        ((1980, 1, 1, 0, 0, 0), 0o100644, zipfile.ZIP_DEFLATED)
    }
    (a / SOURCES[2]).write_text((a / SOURCES[2]).read_text() + "# an edit\n")
    assert _pyz(a, SOURCES, tmp_path / "out-a3").read_bytes() != first.read_bytes()


def test_pyz_runs_on_the_standard_library_alone(pyz: Path, tmp_path: Path) -> None:
    # -S: no site-packages (no pyyaml, networkx, xxhash, structlog, no installed buildgraph)
    done = subprocess.run([sys.executable, "-I", "-S", str(pyz), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--root ROOT" in done.stdout and "--disk PATH" in done.stdout


def test_the_proposed_target_builds_the_same_pyz(pyz: Path, tmp_path: Path) -> None:
    root = _copy_sources(make_project(tmp_path / "repo", TARGET))
    assert build_in_process(root, tmp_path / "cache", ["installer-program"]) == {
        "installer-program": "built"
    }
    out = root / "_out" / "installer.pyz"
    assert out.read_bytes() == pyz.read_bytes()
    assert os.access(out, os.X_OK)


@pytest.mark.parametrize(
    ("sources", "main", "message"),
    [
        (SOURCES[1:], SOURCES[0], "params.main 'installer/__main__.py' is not among"),
        ([s for s in SOURCES if s != "buildgraph/steps/__init__.py"], SOURCES[0],
         "whose buildgraph/steps/__init__.py is not among the sources"),
        ([*SOURCES, "buildgraph/__pycache__/errors.cpython-311.pyc"], SOURCES[0],
         "is compiled bytecode"),
    ],
)  # fmt: skip
def test_pyz_refuses_what_would_not_import(tmp_path, sources, main, message) -> None:
    root = _copy_sources(tmp_path / "src")
    (root / "buildgraph" / "__pycache__").mkdir()
    (root / "buildgraph" / "__pycache__" / "errors.cpython-311.pyc").write_bytes(b"\0")
    with pytest.raises(StepFailedError, match=message):
        _pyz(root, sources, tmp_path / "out", main)


# -- the installer's arguments and inputs ----------------------------------------


def _fake_root(root: Path) -> Path:
    """An installer image's files: grub.tar an empty tar, the others never read here."""
    assets = root / "usr" / "install" / "amd64"
    assets.mkdir(parents=True)
    for name in ASSETS:
        (assets / name).write_bytes(b"not what it says\n")
    with tarfile.open(assets / "grub.tar", "w"):
        pass
    (assets / "disk.json").write_text(json.dumps(DISK))
    return root


def _bin_without(dest: Path, missing: str) -> Path:
    dest.mkdir()
    for tool in REGISTRY["disk"].tools:
        if tool != missing and shutil.which(tool):
            (dest / tool).symlink_to(shutil.which(tool))
    return dest


def _unlink(name: str):
    return lambda root: (root / "usr/install/amd64" / name).unlink()


def _disk_json(**disk: object):
    return lambda root: (root / "usr/install/amd64/disk.json").write_text(json.dumps(disk))


BAD = {  # case -> (change to the root, more arguments, exit status, the line on stderr)
    "missing vmlinuz": (_unlink("vmlinuz"), [], 2,
                        r"^installer: \S+/usr/install/amd64/vmlinuz is missing: "
                        r"\S+ is no installer image with amd64 boot assets"),
    "missing disk.json": (_unlink("disk.json"), [], 2, r"/amd64/disk.json is missing: "),
    "unknown arch": (None, ["--arch", "riscv64"], 2,
                     r"^installer: unknown arch 'riscv64'; known: amd64, arm64$"),
    "other arch": (None, ["--arch", "arm64"], 2,
                   r"arm64/vmlinuz is missing: .* \(it holds the assets of amd64\)$"),
    "disk.json size": (_disk_json(**{**DISK, "size": "64MiB"}), [], 2,
                       r"disk.json: disk size '64MiB' .* too small .* need 1104 MiB$"),
    "disk.json key": (_disk_json(**DISK, sise="2GiB"), [], 2,
                      r"disk.json: unknown key 'sise'; it holds epoch, firmware, size$"),
    "disk.json firmware": (_disk_json(**{**DISK, "firmware": ["bios"]}), [], 2,
                           r"disk.json: params.firmware: unknown GRUB platform 'bios'"),
    "--size": (None, ["--size", "2 parsecs"], 2,
               r"^installer: --size: disk size '2 parsecs': give bytes or a number"),
    "corrupt grub.tar": (lambda root: (root / "usr/install/amd64/grub.tar").write_text("?"), [],
                         2, r"^installer: \S+/amd64/grub.tar: not a tar archive of the GRUB"),
    "grub.tar without grub": (None, [], 1,
                              r"^installer: the disk step failed: the grub package has no "
                              r"usr/lib/grub/x86_64-efi$"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_input_gives_one_line_and_leaves_the_old_disk(pyz, tmp_path, case) -> None:
    change, extra, code, message = BAD[case]
    root = _fake_root(tmp_path / "root")
    if change is not None:
        change(root)
    out = tmp_path / "out"
    out.mkdir()
    (out / "disk.raw").write_bytes(b"the old disk")
    args = ["--root", str(root), "--arch", "amd64", "--disk", str(out / "disk.raw"), *extra]
    done = _install(pyz, *args, cwd=tmp_path)
    assert done.returncode == code, done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert re.search(message, done.stderr.rstrip("\n")), done.stderr
    assert done.stdout == ""
    assert [p.name for p in out.iterdir()] == ["disk.raw"]
    assert (out / "disk.raw").read_bytes() == b"the old disk"


def test_a_missing_tool_is_named_with_its_package(pyz, tmp_path: Path) -> None:
    root = _fake_root(tmp_path / "root")
    env = {"PATH": str(_bin_without(tmp_path / "bin", "sgdisk"))}
    done = _install(pyz, "--root", str(root), "--arch", "amd64", "--disk",
                    str(tmp_path / "disk.raw"), env=env)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == (
        "installer: missing tool sgdisk: install the Debian package gdisk (apt-get install gdisk)\n"
    )
    assert not (tmp_path / "disk.raw").exists()


def test_a_disk_path_that_is_no_file_is_refused(pyz, tmp_path: Path) -> None:
    root = _fake_root(tmp_path / "root")
    (tmp_path / "dir").mkdir()
    done = _install(pyz, "--root", str(root), "--arch", "amd64", "--disk", str(tmp_path / "dir"))
    assert done.returncode == 2
    assert done.stderr.endswith("dir: exists and is not a regular file; give a disk image file\n")


def test_the_installer_agrees_with_the_build_on_tools_and_arches() -> None:
    installer = _installer_module()
    disk_tools = REGISTRY["disk"].tools
    assert {t: installer.PACKAGES[t] for t in disk_tools} == {
        t: tools.PACKAGES[t] for t in disk_tools
    }
    assert installer.ARCHES == variables.ARCHES


# -- the real thing ----------------------------------------------------------------


@pytest.fixture(scope="module")
def metal(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(ROOT laid out from the assets `doit image-metal` built, the disk it built)."""
    base = tmp_path_factory.mktemp("installer")
    repo = clone(base / "repo")
    build(repo, base / "cache", "image-metal", "PLATFORM=linux/amd64")
    out = repo / "_out"
    assets = base / "root" / "usr" / "install" / "amd64"
    assets.mkdir(parents=True)
    for name, built in ASSETS.items():
        shutil.copyfile(out / built, assets / name)
    (assets / "disk.json").write_text(json.dumps(DISK))
    return base / "root", out / "disks" / "metal-amd64.raw"


@pytest.mark.slow
def test_the_installer_writes_the_bytes_of_image_metal(pyz, metal, tmp_path: Path) -> None:
    root, expected = metal
    disk = tmp_path / "metal.raw"
    args = ["--root", str(root), "--arch", "amd64", "--disk", str(disk)]
    done = _install(pyz, *args, umask=0o077)  # the disk's bytes must not follow the umask
    assert done.returncode == 0, done.stderr
    assert sha256(disk) == sha256(expected)
    assert disk.stat().st_mode & 0o777 == 0o600  # the file's own mode does
    assert disk.stat().st_blocks * 512 < 64 << 20  # and it stays sparse
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metal.raw"]


@pytest.mark.slow
def test_a_missing_vmlinuz_in_a_real_root_writes_nothing(pyz, metal, tmp_path: Path) -> None:
    root = shutil.copytree(metal[0], tmp_path / "root")
    (root / "usr/install/amd64/vmlinuz").unlink()
    disk = tmp_path / "out" / "metal.raw"
    disk.parent.mkdir()
    done = _install(pyz, "--root", str(root), "--arch", "amd64", "--disk", str(disk))
    assert done.returncode == 2
    assert done.stderr == (
        f"installer: {root}/usr/install/amd64/vmlinuz is missing: {root} is no installer image"
        " with amd64 boot assets (it holds the assets of amd64)\n"
    )
    assert list(disk.parent.iterdir()) == []


@pytest.mark.slow
def test_a_kill_midway_leaves_nothing_at_path(pyz, metal, tmp_path: Path) -> None:
    disk = tmp_path / "out" / "metal.raw"
    disk.parent.mkdir()
    args = ["--root", str(metal[0]), "--arch", "amd64", "--disk", str(disk)]
    proc = subprocess.Popen([sys.executable, str(pyz), *args], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not list(disk.parent.glob(".metal.raw.*/efi.img")) and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM, proc.stderr.read()
    assert list(disk.parent.iterdir()) == []
