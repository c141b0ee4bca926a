"""One factory build, in a process of its own: ``python -m buildgraph.factory.worker``.

The factory runs each build here rather than in its event loop's process, so a build is
the same program as ``buildgraph build`` (the engine's own signal handling, its own
workspace), a failing or killed build takes nothing else down, and a client that goes away
cancels nothing. It reads ``{root, out, goal, variables}`` as JSON on stdin, builds the
goal into ``out`` (a workspace of its own), and writes one JSON line on stdout:
``{"outputs": {target: [path, ...]}, "built": <nodes that ran>}``, or ``{"error": message,
"hint": hint}``. The build's log goes to stderr, as a build's does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> int:
    from .. import plugin
    from ..engine.errors import BuildgraphError
    from ..engine.session import Session

    plugin.install()
    job = json.loads(sys.stdin.read())
    try:
        session = Session(Path(job["root"]), job["goal"], job["variables"], out=Path(job["out"]))
        statuses = session.build()
        outputs = {
            target: [str(session.out / name) for label in labels
                     for name in session.by_label[label].outputs]
            for target, labels in session.asked.items()
        }  # fmt: skip
        built = sum(status == "built" for status in statuses.values())
        answer: dict = {"outputs": outputs, "built": built}
    except BuildgraphError as err:
        answer = {"error": err.message, "hint": err.hint}
    except OSError as err:
        answer = {"error": f"{err.filename or 'the build'}: {err.strerror}", "hint": None}
    print(json.dumps(answer), flush=True)
    return 0 if "outputs" in answer else 1


if __name__ == "__main__":
    sys.exit(main())
