"""A server as a process of its own for a test or a benchmark: started, waited for until
it answers, and stopped by its PID (SIGTERM, then SIGKILL) however the block ends."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def serving(
    argv: list[str], cwd: Path, env: dict[str, str], log: Path, ready: Callable[[], bool]
) -> Iterator[subprocess.Popen]:
    """``argv`` running, its output in ``log``, once ``ready()`` is true (an OSError from it
    counts as not yet); AssertionError with the log's tail if it exits or never is."""
    with open(log, "wb") as sink:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-4000:]
                raise AssertionError(f"{argv[0]} exited {process.returncode}:\n{tail}")
            with contextlib.suppress(OSError):
                if ready():
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"{argv[0]} did not answer:\n{log.read_text()[-4000:]}")
            time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
