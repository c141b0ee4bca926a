"""The Image Factory under load: one build for a burst of requests, then a cached asset
against ``python -m http.server`` serving the same file.

Why this exists: ``buildgraph factory serve`` (buildgraph/factory/) promises that however
many clients ask at once for an asset no one has built, one build runs (single flight,
builds.py), and that a built asset is then a file streamed without asking the engine
again. A machine fleet booting from the factory asks for the same ISO many times at
once: this script checks the first promise under a burst and measures what the second
costs against the plainest server of the same file. All in one run, on loopback.

Set-up, not timed: the checkout's files (tracked and new, not ignored) are copied to
``_work/factory/clone`` (tests/checkout.py); the factory runs there, importing that copy
of buildgraph/, as its own process on a free 127.0.0.1 port, with an empty cache
``_work/factory/cache`` (``BUILDGRAPH_CACHE``), ``TAG=v1.0.0`` and
``SOURCE_DATE_EPOCH=1700000000``; it is stopped by its PID at the end. A warm-up schematic
is posted (which builds the catalogs) and its ISO fetched once, which builds the kernel,
the initramfs base, GRUB and the rest from nothing (timed for the record only).

The asset is the ISO, ``/image/<id>/v1.0.0/metal-amd64.iso`` (about 17 MiB): after the
warm-up, a fresh schematic's ISO is a cold build of 5 nodes (its two command lines; its
extensions and so its initramfs, since every asset carries the schematic itself as an
extension; the ISO) taking one to three seconds, well under the two minutes that would have made the
cheaper ``cmdline-metal-amd64`` the better choice; and the ISO is what a fleet downloads.

Rounds, each once:

* single flight: a schematic with a random kernel argument (``bench.n=<random>``) is
  posted, so its ISO is in no cache; ``--burst`` threads (default 200) each open a
  connection and send ``GET`` for that ISO at the same instant (a barrier). ``/metrics``
  is read before and after: ``factory_builds_total{result="ok"}`` must grow by exactly 1;
  every answer must be 200, of its Content-Length, with the same sha256. Recorded: the
  burst's wall time, the build's seconds (``factory_build_seconds_total``), the time to
  the first and the last response headers. Then the same burst again, now cached, for
  the share of the wall that is streaming rather than building;
* cached asset: ``--requests`` GETs (default 1,000), ``--concurrency`` at a time (default
  50), of that ISO from the factory, then the same from ``python -m http.server --bind
  127.0.0.1 <port> --directory <dir>`` serving a copy of the downloaded ISO (checked to be
  the burst's bytes), then from http.server's own server and handler with a listen queue
  of 1,024 (``QUEUED``): the stock one listens with socketserver's queue of 5, so under 50
  connections at once part of the SYNs are dropped and sent again a second (or three)
  later, which makes its p99 a measure of TCP's retry timer rather than of serving, and
  its median that of fewer requests in service at once; the factory (uvicorn) listens
  with 2,048. Each peer first gets ``--concurrency`` untimed requests (page cache,
  threads). Every answer must be 200 and of the ISO's length, and every factory request
  must be a cache hit that runs no build (``factory_cache_hits_total``).

The client, the same for every peer: a thread pool of http.client connections, one
connection per request (``Connection: close``; http.server speaks HTTP/1.0 and closes
anyway), the body read into a per-thread 1 MiB buffer (hashed only in the burst). A
request's latency is from opening its connection to its last byte; time to headers is to
``getresponse()``. Throughput is requests over the round's wall time, and MiB/s those
requests' bytes. Each server's CPU seconds (utime + stime of its process, from /proc) over
a round, per request, say where the time goes, and connects of a second or more count
the SYNs sent again. The client runs on the same 2 CPUs as the server, for every peer
alike. The factory/http.server ratios are of median and p99 latency (above 1: the
factory slower) and of throughput (below 1: the factory slower), against each peer.

Usage::

    .venv/bin/python bench/factory.py [--requests 1000] [--burst 200] [--concurrency 50]

It writes its section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from checkout import copy_checkout
from common import MIB, WORK, exclusive, host, revision, say, write_section
from processes import serving

HERE = WORK / "factory"
FIXED = {"TAG": "v1.0.0", "SOURCE_DATE_EPOCH": "1700000000"}
VERSION = FIXED["TAG"]
ASSET = "metal-amd64.iso"
LOOPBACK = "127.0.0.1"
BEGIN, END = "<!-- bench/factory.py -->", "<!-- /bench/factory.py -->"
TICK = os.sysconf("SC_CLK_TCK")


# -- the servers -------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen

    def cpu(self) -> float:
        """The server process's CPU seconds so far (user + system)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@contextmanager
def serve(name: str, argv: list[str], cwd: Path, env: dict[str, str], ready: str,
          port: int) -> Iterator[Server]:  # fmt: skip
    """``argv`` running as a process of its own until the block ends, then stopped by its
    PID; ready once ``GET ready`` answers 200."""
    log = HERE / f"{name}.log"
    with serving(argv, cwd, env, log, lambda: fetch(port, ready).status == 200) as process:
        yield Server(name, port, process)


def factory(root: Path, cache: Path) -> AbstractContextManager[Server]:
    port = free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(root),
           "HOME": str(HERE), "BUILDGRAPH_CACHE": str(cache), **FIXED}  # fmt: skip
    argv = [sys.executable, "-m", "buildgraph.cli", "factory", "serve",
            "--listen", f"{LOOPBACK}:{port}"]  # fmt: skip
    return serve("factory", argv, root, env, "/healthz", port)


QUEUED = """import functools, http.server, sys
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2])
Server((sys.argv[3], int(sys.argv[1])), handler).serve_forever()
"""
"""http.server's own server and handler with a listen queue of 1024 instead of 5."""


def http_server(directory: Path, queue: bool = False) -> AbstractContextManager[Server]:
    """``python -m http.server`` serving ``directory``; ``queue``: QUEUED instead."""
    port = free_port()
    if queue:
        name, argv = "http.server-queue", [sys.executable, "-c", QUEUED, str(port),
                                           str(directory), LOOPBACK]  # fmt: skip
    else:
        name, argv = "http.server", [sys.executable, "-m", "http.server", "--bind", LOOPBACK,
                                     str(port), "--directory", str(directory)]  # fmt: skip
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return serve(name, argv, directory, env, f"/{ASSET}", port)


# -- the client ----------------------------------------------------------------------------


@dataclass
class Sample:
    status: int
    length: int
    """Bytes of the body read."""
    declared: int
    """Its Content-Length (-1: none)."""
    connect: float
    """Seconds to open the connection (TCP's handshake)."""
    headers: float
    """Seconds from opening the connection to the response's headers."""
    total: float
    """Seconds from opening the connection to the body's last byte."""
    began: float = 0.0
    """When the request began (time.perf_counter)."""
    digest: str = ""
    body: bytes = b""


_local = threading.local()


def fetch(port: int, path: str, method: str = "GET", body: bytes | None = None,
          digest: bool = False, keep: bool = False) -> Sample:  # fmt: skip
    """One request on a connection of its own; the body is counted (``digest``: hashed,
    ``keep``: kept), read into this thread's 1 MiB buffer."""
    view = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(MIB))
    started = time.perf_counter()
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=600)
    try:
        connection.connect()
        connect = time.perf_counter() - started
        connection.request(method, path, body=body, headers={"Connection": "close"})
        answer = connection.getresponse()
        headers = time.perf_counter() - started
        sha = hashlib.sha256() if digest else None
        kept = bytearray()
        length = 0
        while n := answer.readinto(view):
            length += n
            if sha is not None:
                sha.update(view[:n])
            if keep:
                kept += view[:n]
        total = time.perf_counter() - started
        declared = int(answer.getheader("content-length", "-1"))
        return Sample(answer.status, length, declared, connect, headers, total, started,
                      sha.hexdigest() if sha else "", bytes(kept))  # fmt: skip
    finally:
        connection.close()


def burst(port: int, path: str, n: int) -> tuple[float, list[Sample]]:
    """``n`` threads each send ``GET path`` at once (a barrier): the instant the barrier
    released them (time.perf_counter), and the samples."""
    released: list[float] = []
    barrier = threading.Barrier(n, action=lambda: released.append(time.perf_counter()),
                                timeout=120)  # fmt: skip

    def one(_: int) -> Sample:
        barrier.wait()
        return fetch(port, path, digest=True)

    with ThreadPoolExecutor(n) as pool:
        samples = list(pool.map(one, range(n)))
    return released[0], samples


@dataclass
class Round:
    wall: float
    samples: list[Sample]
    cpu: float
    """The server's CPU seconds over the round."""

    @property
    def median(self) -> float:
        return statistics.median(s.total for s in self.samples)

    @property
    def p99(self) -> float:
        return statistics.quantiles([s.total for s in self.samples], n=100)[98]

    @property
    def headers(self) -> float:
        return statistics.median(s.headers for s in self.samples)

    @property
    def slow_connects(self) -> int:
        """Requests whose connection took a second or more: a SYN sent again, the server's
        listen queue full."""
        return sum(s.connect >= 1 for s in self.samples)

    @property
    def rate(self) -> float:
        return len(self.samples) / self.wall

    @property
    def mib_s(self) -> float:
        return sum(s.length for s in self.samples) / self.wall / MIB


def cached(server: Server, path: str, n: int, concurrency: int, size: int) -> Round:
    """``n`` GETs of ``path``, ``concurrency`` at a time, after ``concurrency`` untimed."""
    with ThreadPoolExecutor(concurrency) as pool:
        check(list(pool.map(lambda _: fetch(server.port, path), range(concurrency))), size)
        cpu = server.cpu()
        started = time.perf_counter()
        samples = list(pool.map(lambda _: fetch(server.port, path), range(n)))
        wall = time.perf_counter() - started
        cpu = server.cpu() - cpu
    check(samples, size)
    return Round(wall, samples, cpu)


def check(samples: list[Sample], size: int) -> None:
    bad = [s for s in samples if s.status != 200 or s.length != size or s.declared != size]
    if bad:
        first = bad[0]
        raise SystemExit(f"{len(bad)} of {len(samples)} requests failed, e.g. status"
                         f" {first.status}, {first.length} of {size} bytes")  # fmt: skip


# -- the factory's side --------------------------------------------------------------------


def metric(server: Server, name: str) -> float:
    text = fetch(server.port, "/metrics", keep=True).body.decode()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    if found is None:
        raise SystemExit(f"/metrics has no {name}:\n{text}")
    return float(found.group(1))


def post_schematic(server: Server, text: str) -> str:
    answer = fetch(server.port, "/schematics", "POST", text.encode(), keep=True)
    if answer.status != 201:
        raise SystemExit(f"POST /schematics: {answer.status} {answer.body.decode()}")
    return json.loads(answer.body)["id"]


def asset_path(schematic_id: str) -> str:
    return f"/image/{schematic_id}/{VERSION}/{ASSET}"


OK = 'factory_builds_total{result="ok"}'
SECONDS = "factory_build_seconds_total"
HITS = "factory_cache_hits_total"


def timed(what: Callable[[], Sample]) -> tuple[float, Sample]:
    started = time.perf_counter()
    sample = what()
    return time.perf_counter() - started, sample


def single_flight(served: Server, path: str, n: int) -> dict:
    """The burst of ``n`` GETs of ``path``, uncached then cached: what the table shows."""
    ok, seconds = metric(served, OK), metric(served, SECONDS)
    released, samples = burst(served.port, path, n)
    builds = metric(served, OK) - ok
    size = samples[0].declared
    check(samples, size)
    digests = {s.digest for s in samples}
    if builds != 1 or len(digests) != 1:
        raise SystemExit(f"the burst ran {builds:g} builds and got {len(digests)} bodies")
    found = {
        "n": n, "size": size, "digest": digests.pop(),
        "build": metric(served, SECONDS) - seconds,
        "wall": max(s.began + s.total for s in samples) - released,
        "first": min(s.began + s.headers for s in samples) - released,
        "last": max(s.began + s.headers for s in samples) - released,
    }  # fmt: skip
    say(f"  {found['wall']:.2f} s, 1 build of {found['build']:.2f} s")
    released, samples = burst(served.port, path, n)
    check(samples, size)
    if {s.digest for s in samples} != {found["digest"]} or metric(served, OK) != ok + 1:
        raise SystemExit("the cached burst got other bytes or ran a build")
    found["cached"] = max(s.began + s.total for s in samples) - released
    say(f"  again, cached: {found['cached']:.2f} s")
    return found


def measure(requests: int, burst_size: int, concurrency: int) -> dict:
    shutil.rmtree(HERE, ignore_errors=True)
    HERE.mkdir(parents=True)
    root = copy_checkout(HERE / "clone")
    peer_dir = HERE / "peer"
    peer_dir.mkdir()
    found: dict = {}
    with factory(root, HERE / "cache") as served:
        say("warm-up: catalogs, then an ISO from an empty cache (kernel, initramfs, GRUB)")
        started = time.perf_counter()
        warm = post_schematic(served, "customization:\n  extraKernelArgs: [bench.warm=1]\n")
        found["catalogs"] = time.perf_counter() - started
        found["warm"], sample = timed(lambda: fetch(served.port, asset_path(warm)))
        check([sample], sample.declared)

        nonce = secrets.randbelow(10**12)
        fresh = post_schematic(served, f"customization:\n  extraKernelArgs: [bench.n={nonce}]\n")
        path = asset_path(fresh)
        say(f"single flight: {burst_size} GETs at once of {path}")
        found["burst"] = single_flight(served, path, burst_size)
        size = found["burst"]["size"]
        copy = fetch(served.port, path, keep=True)
        if hashlib.sha256(copy.body).hexdigest() != found["burst"]["digest"]:
            raise SystemExit("the ISO downloaded for http.server is not the burst's")
        (peer_dir / ASSET).write_bytes(copy.body)

        say(f"cached: {requests} GETs, {concurrency} at a time, from the factory")
        ok, hits = metric(served, OK), metric(served, HITS)
        found["factory"] = cached(served, path, requests, concurrency, size)
        hits = metric(served, HITS) - hits
        if hits != requests + concurrency or metric(served, OK) != ok:
            raise SystemExit(f"{hits:g} cache hits for {requests + concurrency} requests,"
                             f" {metric(served, OK) - ok:g} builds")  # fmt: skip
        say(f"  median {found['factory'].median * 1000:.1f} ms")
    for queue in (False, True):
        name = "http.server, queue 1024" if queue else "http.server"
        say(f"cached: the same from {name}")
        with http_server(peer_dir, queue) as peer:
            found[name] = cached(peer, f"/{ASSET}", requests, concurrency, size)
        say(f"  median {found[name].median * 1000:.1f} ms")
    return found


PEERS = ("http.server", "http.server, queue 1024")


def report(found: dict, argv: list[str], requests: int, concurrency: int) -> str:
    b = found["burst"]
    ours = found["factory"]
    rows = []
    for name in ("factory", *PEERS):
        r = found[name]
        rows.append(f"| {name} | {r.median * 1000:.0f} | {r.p99 * 1000:.0f}"
                    f" | {r.headers * 1000:.1f} | {r.rate:.1f} | {r.mib_s:.0f}"
                    f" | {r.cpu / len(r.samples) * 1000:.1f} | {r.slow_connects} |")  # fmt: skip
    for name in PEERS:
        peer = found[name]
        rows.append(f"| factory / {name} | **{ours.median / peer.median:.2f}**"
                    f" | **{ours.p99 / peer.p99:.2f}** | {ours.headers / peer.headers:.2f}"
                    f" | **{ours.rate / peer.rate:.2f}** | {ours.mib_s / peer.mib_s:.2f}"
                    f" | {ours.cpu / peer.cpu:.2f} | |")  # fmt: skip
    return "\n".join([
        "## Image Factory: single flight, and a cached ISO against http.server"
        " (bench/factory.py)",
        "",
        f"`{' '.join(['.venv/bin/python', 'bench/factory.py', *argv])}` at {revision()},"
        f" on {host()}; loopback; the asset: `{ASSET}`, {b['size'] / MIB:.1f} MiB. Warm-up,"
        f" for the record: the catalogs {found['catalogs']:.1f} s, the first ISO from an"
        f" empty cache {found['warm']:.1f} s. 1-minute load average {found['load'][0]:.2f}"
        f" at the start, {found['load'][1]:.2f} at the end.",
        "",
        "| single flight | wall (s) | builds | build (s) | first headers (s)"
        " | last headers (s) |",
        "|---|---:|---:|---:|---:|---:|",
        f"| {b['n']} GETs at once, uncached | {b['wall']:.2f} | 1 | {b['build']:.2f}"
        f" | {b['first']:.2f} | {b['last']:.2f} |",
        f"| the same again, cached | {b['cached']:.2f} | 0 | | | |",
        "",
        f"Seconds from the burst's release. Every answer 200, {b['size']} bytes, one sha256.",
        "",
        f"Cached: {requests} GETs, {concurrency} at a time, one connection each; every factory"
        " request a cache hit; every answer 200 and whole.",
        "",
        "| server | median (ms) | p99 (ms) | headers, median (ms) | requests/s | MiB/s"
        " | server CPU per request (ms) | connects of 1 s or more |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--requests", type=int, default=1000, help="cached GETs (default 1000)")
    parser.add_argument("--burst", type=int, default=200, help="GETs at once (default 200)")
    parser.add_argument("--concurrency", type=int, default=50,
                        help="cached GETs at a time (default 50)")  # fmt: skip
    args = parser.parse_args()
    with exclusive():
        load = os.getloadavg()[0]
        found = measure(args.requests, args.burst, args.concurrency)
        found["load"] = (load, os.getloadavg()[0])
    section = report(found, sys.argv[1:], args.requests, args.concurrency)
    write_section(BEGIN, END, section)
    print(section)


if __name__ == "__main__":
    main()
