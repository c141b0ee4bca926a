"""Unpacking tars with the same refusals on every Python 3.11 that Debian ships.

tarfile's extraction filters arrived in 3.11.4, and Debian 12's python3 is 3.11.2. Where
the filters exist they do the work; elsewhere the same checks run before a plain
extraction: no member outside the destination, no setuid bits or group/other write, and
for ``data``, no link pointing out of the tree and no device nodes.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from pathlib import Path

from ..engine.errors import StepFailedError


def extract(archive: Path, dest: Path, kind: str = "tar") -> None:
    """Extract ``archive`` into ``dest`` as tarfile's ``kind`` filter (tar, data) would."""
    try:
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter=kind)
                return
            members = [_checked(member, kind) for member in tar.getmembers()]
            tar.extractall(dest, members=members)
    except tarfile.TarError as err:
        raise StepFailedError(
            f"{archive.name}: {err}", hint="the archive must unpack inside its directory"
        ) from None


def _checked(member: tarfile.TarInfo, kind: str) -> tarfile.TarInfo:
    name = member.name.lstrip("/")
    if _outside(name):
        raise tarfile.ExtractError(f"{member.name!r} would be extracted outside the destination")
    member.name = name
    if member.islnk() or (kind == "data" and member.issym()):
        target = member.linkname
        if member.issym():
            target = posixpath.join(posixpath.dirname(name), target)
        if target.startswith("/") or _outside(target):
            raise tarfile.ExtractError(f"{member.name!r} links outside the destination")
    if kind == "data" and (member.ischr() or member.isblk()):
        raise tarfile.ExtractError(f"{member.name!r} is a device node")
    if member.isreg() or member.isdir():
        member.mode &= ~(stat.S_ISUID | stat.S_ISGID | stat.S_IWGRP | stat.S_IWOTH)
    return member


def _outside(path: str) -> bool:
    return os.path.isabs(path) or posixpath.normpath(path).split("/")[0] == ".."
