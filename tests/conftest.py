"""Shared test configuration."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# Property tests: a quick default, more examples in CI (CI=true, or HYPOTHESIS_PROFILE=ci).
settings.register_profile("default", max_examples=40, deadline=None)
settings.register_profile("ci", max_examples=100, deadline=None)
_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if _ci else "default"))

from buildgraph import plugin  # noqa: E402  (the OS side, as every front end installs it)

plugin.install()


@pytest.fixture
def monkeypatch_racy(monkeypatch):
    """Trust every file's stat at once: for tests that set distinct mtimes themselves."""
    from buildgraph.engine import hashing

    monkeypatch.setattr(hashing, "RACY_SECONDS", -3600.0)
