"""What the benchmarks in bench/ share: where they work, the lock that keeps two of them
from running at once (they would share CPUs and delete each other's work), how they
describe the machine, and how they write their sections of BENCHMARKS.md."""

from __future__ import annotations

import fcntl
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
REPORT = REPO / "BENCHMARKS.md"
WORK = BENCH / "_work"
CLEAN_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
"""The environment the benchmarks run tools in, as steps run theirs."""


@contextmanager
def exclusive() -> Iterator[None]:
    """Hold the lock on WORK for the whole benchmark; exit at once if another holds it."""
    WORK.mkdir(parents=True, exist_ok=True)
    with (WORK / "lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"another benchmark is running in {WORK}") from None
        yield


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sh(script: str) -> str:
    """Run ``script`` with ``sh -eu`` in CLEAN_ENV; its stdout."""
    return subprocess.run(
        ["sh", "-euc", script], capture_output=True, text=True, check=True, env=CLEAN_ENV
    ).stdout


def doit_path() -> str:
    beside = Path(sys.executable).with_name("doit")
    found = str(beside) if beside.exists() else shutil.which("doit")
    if found is None:
        raise SystemExit("doit is not installed next to this python nor on PATH")
    return found


def host() -> str:
    """CPUs, kernel and Python, e.g. ``2 CPUs (AMD EPYC), Linux 6.1, Python 3.11.7``."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def revision(*paths: str) -> str:
    """The commit measured, marked when ``paths`` (default buildgraph/) have local changes."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return "an unknown commit"
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", *(paths or ("buildgraph",))], capture_output=True
    )
    return head.stdout.strip() + (" with uncommitted changes" if dirty.stdout else "")


def write_section(begin: str, end: str, section: str) -> None:
    """Replace what lies between the markers ``begin`` and ``end`` in BENCHMARKS.md, or
    append the markers and the section when the file has no such markers yet."""
    block = f"{begin}\n{section}\n{end}"
    text = REPORT.read_text() if REPORT.exists() else "# Benchmarks\n\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    REPORT.write_text(text)


def raw_iso_script(params: Mapping[str, Any], out: Mapping[str, str], cmdline: str) -> str:
    """bench/boot.py's raw iso script (``boot.Raw._iso``) for an iso node's ``params``:
    ``out`` names its inputs (``pkg-grub``, ``kernel``, ``initramfs``) and its output
    (``iso``), relative to the directory it runs in, or absolute. ``boot.Raw()`` plans the
    whole iso graph of bench/boot.py's clone; this needs none of that."""
    from boot import Raw

    raw = object.__new__(Raw)
    raw.params, raw.out = {"iso": dict(params)}, dict(out)
    return raw._iso(cmdline)


def raw_disk_scripts(nodes: Iterable[Any], inputs: Path, profile: str) -> dict[str, str]:
    """bench/disk.py's raw scripts (``disk.Raw``) for ``disk-<profile>`` and
    ``image-<profile>``, from ``nodes`` (a plan's nodes, params resolved), reading the
    upstream outputs from ``inputs`` (an ``_out/``) instead of bench/disk.py's clone: they
    are named by absolute path, which disk.Raw's joins onto its own ``_out/`` leave as
    they are."""
    from disk import Raw

    own = (f"disk-{profile}", f"image-{profile}")
    raw = object.__new__(Raw)
    raw.params = {node.target: node.params for node in nodes}
    raw.out = {
        node.target: node.outputs[0] if node.target in own else str(inputs / node.outputs[0])
        for node in nodes
    }
    return {own[0]: raw._disk(profile), own[1]: raw._image(profile)}
