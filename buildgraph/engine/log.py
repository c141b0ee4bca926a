"""Structured logs and the progress line.

``BUILDGRAPH_LOG=json`` puts one JSON object per line on stderr, with one ``node``
event per node of the goal (its key, ``built`` or ``cached``, and seconds). Otherwise
a terminal gets short readable lines: built nodes one by one, cached ones as a count
(``BUILDGRAPH_LOG=debug`` lists them too), and a live progress line for long steps.
A build ends with a summary (a ``summary`` event in JSON): how many nodes were built
and cached, how long it took, and where the goal's outputs are.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .session import Session

_configured = False


def mode() -> str:
    return os.environ.get("BUILDGRAPH_LOG", "console").lower()


def configure() -> None:
    import structlog

    global _configured
    if _configured:
        return
    _configured = True
    stream = sys.__stderr__
    if mode() == "json":
        processors: list[Any] = [
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(sort_keys=False),
        ]
        level = 10
    else:
        processors = [_console]
        level = 10 if mode() == "debug" else 20
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_args: _LineLogger(stream),
        cache_logger_on_first_use=True,
    )


class _LineLogger:
    """Writes each line with its newline in one write(2): lines from doit's parallel
    workers share stderr and must never interleave (PrintLogger writes them apart)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def msg(self, message: str) -> None:
        self.stream.flush()
        os.write(self.stream.fileno(), (message + "\n").encode())

    log = debug = info = warning = error = critical = exception = msg


def get() -> Any:
    import structlog

    configure()
    return structlog.get_logger("buildgraph")


def wants_cached() -> bool:
    """Whether cached nodes are logged at all (JSON, debug); the console only counts them."""
    return mode() in ("json", "debug")


def node(
    label: str,
    target: str,
    arch: str | None,
    key: str,
    status: str,
    seconds: float,
    downloaded: int | None = None,
    worker: str | None = None,
) -> None:
    """The one event every node of a goal gets; ``downloaded``: bytes a remote hit fetched,
    ``worker``: the cluster worker that ran its step."""
    fields: dict[str, Any] = {
        "target": target,
        "arch": arch,
        "key": key,
        "status": status,
        "seconds": round(seconds, 3),
        "node": label,
    }
    if downloaded is not None:
        fields["downloaded"] = downloaded
    if worker is not None:
        fields["worker"] = worker
    if mode() == "json":
        get().info("node", **fields)
    elif status != "cached" or mode() == "debug":
        # The console line without structlog: its import and processors would cost a
        # build of trivial steps a tenth of each step's time.
        _LineLogger(sys.__stderr__).msg(_node_line(fields))


def warning(message: str) -> None:
    """One line saying something went wrong that the build works around."""
    if mode() == "json":
        get().warning("warning", message=message)
    else:
        _LineLogger(sys.__stderr__).msg(f"buildgraph: warning: {message}")


def summary(session: Session, statuses: Mapping[str, str], started: float) -> None:
    """The last words of a build: counts by status, seconds since ``started`` (a
    ``time.monotonic()``), and the goal's outputs in _out/ once every node is done."""
    counts = {"built": 0, "cached": 0, "remote": 0, "not_built": 0}
    for label in session.order:
        status = statuses.get(label, "")
        if status == "cached" and session.remote_status.get(label) == "hit":
            status = "remote"
        counts[status if status in counts else "not_built"] += 1
    outputs = [
        os.path.relpath(session.out / name)
        for label in session.goal
        for name in session.by_label[label].outputs
    ]
    fields = {
        "nodes": len(session.order),
        **counts,
        "seconds": round(time.monotonic() - started, 3),
        "outputs": [] if counts["not_built"] else outputs,
    }
    if mode() == "json":
        get().info("summary", **fields)
    else:  # without structlog, whose import would cost a no-op run a third of its time
        _LineLogger(sys.__stderr__).msg(_summary_lines(fields))


def _summary_lines(event: dict[str, Any]) -> str:
    counts = ", ".join(
        f"{event[key]} {key.replace('_', ' ')}"
        for key in ("built", "cached", "remote", "not_built")
        if event[key] or key in ("built", "cached")
    )
    nodes = f"{event['nodes']} node{'' if event['nodes'] == 1 else 's'}"
    head = f"{nodes}: {counts}, {event['seconds']:.1f} s"
    return "\n".join([head, *(f"  {path}" for path in event["outputs"])])


def _node_line(event: Mapping[str, Any]) -> str:
    return (
        f"{event['status']:<6} {event['node']}"
        + (f" in {event['seconds']:.2f}s" if event["status"] == "built" else "")
        + (f" ({event['downloaded']} bytes fetched)" if event.get("downloaded") else "")
        + (f" on {event['worker']}" if event.get("worker") else "")
        + f"  [{event['key'][:12]}]"
    )


def _console(_logger: Any, _name: str, event: dict[str, Any]) -> str:
    name = event.pop("event")
    if name == "node":
        return _node_line(event)
    extra = " ".join(f"{k}={v}" for k, v in event.items())
    return f"{name} {extra}".rstrip()


@contextlib.contextmanager
def progress(label: str) -> Iterator[Any]:
    """A live ``building <label> (12s) <message>`` line on a terminal while a step runs.

    Yields a callable the step may use to say what it is doing.
    """
    state = {"message": ""}
    if not sys.stderr.isatty() or mode() == "json":
        yield lambda message: state.update(message=message)
        return
    done = threading.Event()
    start = time.monotonic()

    def tick() -> None:
        while not done.wait(0.5):
            elapsed = time.monotonic() - start
            if elapsed >= 1.0:
                line = f"  building {label} ({elapsed:.0f}s) {state['message']}"
                sys.stderr.write("\r\x1b[K" + line[:120])
                sys.stderr.flush()
        if time.monotonic() - start >= 1.0:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield lambda message: state.update(message=message)
    finally:
        done.set()
        thread.join()
