"""Running the tools that read and edit images (qemu-img, mtools, debugfs, e2fsck).

Each tool is looked up first, so a missing one is a message naming its Debian package;
one that fails says what it was asked to do and what it printed.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import BinaryIO

from ..engine.errors import BuildgraphError
from ..engine.tools import locate


def tool(name: str, needed_to: str) -> str:
    """The path of ``name``, or a ToolMissingError naming its package."""
    return locate(name, f"needed to {needed_to}")


def run(
    argv: Sequence[str],
    doing: str,
    env: Mapping[str, str] | None = None,
    hint: str | None = None,
    input: bytes = b"",
    accept: Callable[[subprocess.CompletedProcess[bytes]], bool] = lambda _done: False,
    stdout: BinaryIO | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` (its tool looked up with :func:`tool`) with ``input`` on its stdin
    and its output captured (or sent to ``stdout``); a non-zero exit that ``accept`` does
    not take for success names ``doing``."""
    path = tool(argv[0], doing)
    done = subprocess.run(
        [path, *argv[1:]],
        input=input,
        stdout=stdout or subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "LC_ALL": "C", **(env or {})},
        check=False,
    )
    if done.returncode != 0 and not accept(done):
        said = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise BuildgraphError(
            f"cannot {doing}: {argv[0]} exited {done.returncode}: {' / '.join(said)}", hint
        )
    return done
