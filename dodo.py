"""doit entry point: `doit <target> [NAME=value ...]` builds a target of targets/.

pyproject.toml makes buildgraph.engine.doit_bridge doit's loader; this file tells it which
tree to build and plugs the OS side (variables, steps, tools) into the engine. See README.md.
"""

from pathlib import Path

from buildgraph import plugin
from buildgraph.engine.doit_bridge import DOIT_CONFIG, task_buildgraph  # noqa: F401

BUILDGRAPH_ROOT = Path(__file__).resolve().parent
plugin.install()
