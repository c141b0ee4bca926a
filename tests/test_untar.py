"""Unpacking refuses the same members with or without tarfile's filters (Python < 3.11.4)."""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

import pytest

from buildgraph.engine.errors import StepFailedError
from buildgraph.formats import untar


@pytest.fixture(params=["filters", "fallback"])
def mode(request, monkeypatch) -> str:
    if request.param == "fallback":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    return request.param


def _tar(path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, link: str = ""):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, link
    return info


def test_a_tree_unpacks_with_modes_kept_and_setuid_and_group_write_dropped(mode, tmp_path):
    archive = _tar(tmp_path / "a.tar",
                   (_info("bin", tarfile.DIRTYPE, 0o755), b""),
                   (_info("bin/tool", mode=0o6775), b"x"),
                   (_info("bin/sh", tarfile.SYMTYPE, link="/bin/busybox"), b""))  # fmt: skip
    untar.extract(archive, tmp_path / "out")
    assert stat.S_IMODE((tmp_path / "out/bin/tool").stat().st_mode) == 0o755
    assert (tmp_path / "out/bin/sh").readlink() == Path("/bin/busybox")


@pytest.mark.parametrize(
    ("member", "kind"),
    [
        (_info("../escape"), "tar"),
        (_info("a/../../escape"), "tar"),
        (_info("link", tarfile.LNKTYPE, link="../outside"), "data"),
        (_info("sym", tarfile.SYMTYPE, link="../../etc/passwd"), "data"),
        (_info("sym", tarfile.SYMTYPE, link="/etc/passwd"), "data"),
        (_info("dev", tarfile.CHRTYPE), "data"),
    ],
    ids=["dotdot", "nested-dotdot", "hardlink-out", "symlink-out", "symlink-absolute", "device"],
)
def test_members_that_escape_or_are_devices_are_refused(mode, tmp_path, member, kind):
    archive = _tar(tmp_path / "bad.tar", (member, b""))
    with pytest.raises(StepFailedError, match=r"bad\.tar: "):
        untar.extract(archive, tmp_path / "out", kind)
    assert not (tmp_path / "escape").exists()
