"""doit entry point: `doit <target> [NAME=value ...]` builds a target of targets/.

pyproject.toml makes buildgraph.doit_bridge doit's loader; this file tells it which
tree to build. See README.md.
"""

from pathlib import Path

from buildgraph.doit_bridge import task_buildgraph  # noqa: F401

BUILDGRAPH_ROOT = Path(__file__).resolve().parent
