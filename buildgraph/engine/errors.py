"""User-facing errors.

Every bad input ends in one of these: a message that names the thing that is
wrong and says what to do. Front ends print ``str(err)`` and exit non-zero;
no traceback reaches the user.
"""

from __future__ import annotations


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
