"""``rootfs``: the OS's root filesystem, a squashfs of the base package plus our files.

The base package (busybox-static) brings the programs; the step adds the applet links,
the empty mount points the init needs, ``/etc/os-release`` carrying the version, and the
files under params.files (a directory in the repo, also listed as the target's sources).
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Mapping
from typing import Any

from . import StepContext, check_epoch, step


def _check(params: Mapping[str, Any]) -> None:
    if not isinstance(params.get("os_release"), dict):
        raise ValueError("the rootfs step needs params.os_release, a mapping")
    for name in ("applets", "dirs"):
        if not isinstance(params.get(name, []), list):
            raise ValueError(f"params.{name} of the rootfs step must be a list")
    check_epoch(params)


@step("rootfs", version=1, tools=("mksquashfs",), check=_check)
def rootfs(ctx: StepContext) -> None:
    """Assemble the tree and pack it with mksquashfs's reproducible flags."""
    (out,) = ctx.outputs
    tree = ctx.out_dir.parent / "rootfs"
    tree.mkdir()
    with tarfile.open(ctx.input("pkg-base")) as tar:
        tar.extractall(tree, filter="tar")
    for directory in ctx.params.get("dirs", []):
        (tree / directory).mkdir(parents=True, exist_ok=True)
    for applet in ctx.params.get("applets", []):
        link = tree / "bin" / applet
        if not link.exists() and not link.is_symlink():
            link.symlink_to("busybox")
    release = "".join(f'{k}="{v}"\n' for k, v in ctx.params["os_release"].items())
    (tree / "etc").mkdir(exist_ok=True)
    (tree / "etc" / "os-release").write_text(release)
    files = ctx.params.get("files")
    if files:
        base = ctx.root / files
        for src in ctx.sources:
            dest = tree / src.relative_to(base)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(src.read_bytes())
            os.chmod(dest, src.stat().st_mode & 0o7777)
    epoch = str(int(ctx.params["epoch"]))
    ctx.run(
        ["mksquashfs", str(tree), str(ctx.output(out)), "-noappend", "-quiet", "-no-progress",
         "-reproducible", "-all-root", "-no-xattrs", "-mkfs-time", epoch, "-all-time", epoch],
    )  # fmt: skip
