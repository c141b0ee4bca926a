"""The OS side's entry into the engine: its variable rows, steps, tools and remote cache.

The engine (buildgraph.engine) knows no OS; each front end (dodo.py, the ``buildgraph``
command, the installer program's tests) calls :func:`install` once before it plans.
"""

from __future__ import annotations

from pathlib import Path

from . import remote as remote_cache
from .engine import dispatch, remote, session, step, tools, variables
from .steps import MODULES
from .tools import PACKAGES
from .variables import ARCHES, TABLE
from .variables import PACKAGES as PKG_FAMILY

HERE = Path(__file__).parent


def install() -> None:
    variables.register(TABLE, ARCHES, [PKG_FAMILY])
    step.provide(MODULES)
    tools.PACKAGES.update(PACKAGES)
    session.CODE.update({HERE, HERE / "steps", HERE / "imager", HERE / "formats"})
    remote.provide(remote_cache.from_environment)
    dispatch.CODE.add(HERE)
    if __name__ + ":install" not in dispatch.INSTALL:
        dispatch.INSTALL.append(__name__ + ":install")
