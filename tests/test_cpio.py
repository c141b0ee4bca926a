"""The newc writer: GNU cpio reads back exactly what was written, and bytes are stable."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from buildgraph.formats.cpio import Writer


def _archive(tmp_path: Path, mtime: int = 1700000000) -> bytes:
    src = tmp_path / "payload"
    src.write_bytes(b"x" * 1001)
    out = io.BytesIO()
    cpio = Writer(out, mtime)
    cpio.directory("dev")
    cpio.char_device("dev/console", 5, 1)
    cpio.directory("bin")
    cpio.file("bin/tool", src, mode=0o755)
    cpio.symlink("bin/sh", "tool")
    cpio.data("etc-release", b"ID=x\n")
    cpio.close()
    return out.getvalue()


def test_same_entries_give_the_same_bytes(tmp_path: Path) -> None:
    assert _archive(tmp_path) == _archive(tmp_path)
    assert _archive(tmp_path) != _archive(tmp_path, mtime=1)


@pytest.mark.slow
def test_gnu_cpio_lists_modes_owners_and_times(tmp_path: Path) -> None:
    archive = tmp_path / "a.cpio"
    archive.write_bytes(_archive(tmp_path))
    listing = subprocess.run(
        ["cpio", "-tv", "--quiet", "-F", str(archive)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    names = [line.split()[-1] if "->" not in line else line.split()[-3] for line in listing]
    assert names == ["dev", "dev/console", "bin", "bin/tool", "bin/sh", "etc-release"]
    assert listing[1].startswith("crw-------") and "5,   1" in listing[1]
    assert listing[3].startswith("-rwxr-xr-x") and " root " in listing[3] and "1001" in listing[3]
    assert listing[4].startswith("lrwxrwxrwx") and listing[4].endswith("bin/sh -> tool")
    assert all("Nov 14  2023" in line for line in listing)


@pytest.mark.slow
def test_gnu_cpio_extracts_the_same_bytes(tmp_path: Path) -> None:
    archive = tmp_path / "a.cpio"
    archive.write_bytes(_archive(tmp_path))
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(
        ["cpio", "-id", "--quiet", "--no-absolute-filenames", "-F", str(archive),
         "bin/tool", "bin/sh", "etc-release"],
        cwd=dest, check=True,
    )  # fmt: skip
    assert (dest / "bin" / "tool").read_bytes() == b"x" * 1001
    assert (dest / "bin" / "sh").readlink() == Path("tool")
    assert (dest / "etc-release").read_text() == "ID=x\n"
