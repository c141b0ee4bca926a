"""``kernel``: the kernel image of a kernel package, as ``vmlinuz-<arch>``.

A kernel package image holds ``boot/vmlinuz-<version>`` (or ``boot/vmlinuz``) and the
modules under ``lib/modules/<version>/``, as Debian's linux-image packages do. With
params.image (IMAGER_IMAGE) the kernel comes from that imager image instead.
"""

from __future__ import annotations

import shutil
import tarfile

from ..engine.errors import StepFailedError
from ..engine.step import Role, StepContext, step
from .imagefile import copy_from_image, probe_image


@step("kernel", version=1, probe=probe_image, inputs=[Role("pkg-kernel")])
def kernel(ctx: StepContext) -> None:
    """Copy the one boot/vmlinuz* of the package tar needs: [pkg-kernel] to the output."""
    if ctx.params.get("image"):
        copy_from_image(ctx, "vmlinuz")
        return
    (out,) = ctx.outputs
    with tarfile.open(ctx.input("pkg-kernel")) as tar:
        images = [m for m in tar if m.isfile() and _is_vmlinuz(m.name)]
        if len(images) != 1:
            found = ", ".join(m.name for m in images) or "none"
            raise StepFailedError(
                f"a kernel package holds exactly one boot/vmlinuz*, this one: {found}",
                hint="set PKG_KERNEL to an image with boot/vmlinuz and lib/modules/",
            )
        with tar.extractfile(images[0]) as src, open(ctx.output(out), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


def _is_vmlinuz(name: str) -> bool:
    name = name.removeprefix("./")
    return name.startswith("boot/vmlinuz") and "/" not in name[len("boot/") :]
