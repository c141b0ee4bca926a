"""User-facing errors.

Every bad input ends in one of these: a message that names the thing that is
wrong and says what to do. Front ends print ``str(err)`` and exit non-zero;
no traceback reaches the user.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path


class BuildgraphError(Exception):
    """Base of all errors a user can cause and fix."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class VariableError(BuildgraphError):
    """An unknown variable name or a value its validator rejects."""


class SpecError(BuildgraphError):
    """A target spec in targets/ that does not load or validate."""

    def __init__(self, where: str, message: str, hint: str | None = None) -> None:
        super().__init__(f"{where}: {message}", hint)
        self.where = where


class UnknownTargetError(BuildgraphError):
    """A goal that names no target of the graph."""


class ToolMissingError(BuildgraphError):
    """An external tool a step needs is not installed."""


class StepFailedError(BuildgraphError):
    """A step ran and failed; its partial outputs were discarded."""

    exit_code = 1


_WHAT_TO_DO = {
    errno.ENOSPC: "free space on its filesystem",
    errno.EDQUOT: "free space within your disk quota",
    errno.EFBIG: "a file size limit stopped the write: raise it (`ulimit -f`)",
    errno.EACCES: "make it writable",
    errno.EPERM: "make it writable",
    errno.EROFS: "it is on a read-only filesystem: use a writable one",
    errno.ENOTDIR: "a file stands where a directory must be: move the file away",
    errno.EEXIST: "a file stands where a directory must be: move the file away",
}
DISK_ERRNOS = frozenset(_WHAT_TO_DO)
"""The errors of a full, read-only or misplaced disk: a user's to fix, not a bug."""


def disk_error(err: OSError, cache: Path, out: Path, doing: str = "") -> BuildgraphError:
    """The message for an OSError writing the cache or ``_out/``: the path, what the
    system said, and what to do. ``doing`` says what was under way when no path is known."""
    what_to_do = _WHAT_TO_DO.get(err.errno or 0, "check that it is a writable directory")
    said = err.strerror or str(err)
    path = Path(os.path.abspath(err.filename)) if err.filename else None
    if path is not None and path.is_relative_to(cache):
        return BuildgraphError(
            f"the cache {cache} is not usable: {_within(path, cache)}{said}",
            hint=f"{what_to_do}, or set BUILDGRAPH_CACHE to a writable directory",
        )
    if path is not None and path.is_relative_to(out):
        return BuildgraphError(
            f"{out} is not usable: {_within(path, out)}{said}",
            hint=f"{what_to_do} (or remove {out})",
        )
    where = f"{path}: " if path is not None else (f"{doing}: " if doing else "")
    return BuildgraphError(f"cannot write: {where}{said}", hint=what_to_do)


def _within(path: Path, place: Path) -> str:
    return "" if path == place else f"{path}: "


def report(err: BuildgraphError | OSError | KeyboardInterrupt, cache: Path, out: Path) -> int:
    """Say what stopped a front end in one message on stderr, no traceback; returns the
    exit status. ``cache`` and ``out`` (``_out/``) are where a failed write is placed."""
    if isinstance(err, BrokenPipeError):  # ``buildgraph vars | head -1``: nothing to say
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())  # and nothing for the flush at exit either
        return 141  # as if killed by SIGPIPE
    if isinstance(err, KeyboardInterrupt):
        os.write(sys.stderr.fileno(), b"buildgraph: interrupted; what finished is cached\n")
        return 130
    if isinstance(err, OSError):
        err = disk_error(err, cache, out)
    os.write(sys.stderr.fileno(), f"buildgraph: error: {err}\n".encode())
    return err.exit_code
