"""The factory under pressure: a client that goes away, full build slots, a failing build,
oversized headers. Each on a factory of its own, so their builds do not meet."""

from __future__ import annotations

import json
import re
import socket
import threading
import time

import pytest
from factory_server import serve_factory
from project import FIXED
from realgraph import clone

pytestmark = pytest.mark.slow
VERSION = FIXED["TAG"]


def _schematic(factory, arg: str) -> str:
    answer = factory.request(
        "POST", "/schematics", f"customization: {{extraKernelArgs: [{arg}]}}".encode()
    )
    assert answer.status == 201, answer.text
    return json.loads(answer.body)["id"]


def _metric(factory, name: str) -> int:
    text = factory.request("GET", "/metrics").text
    return int(float(re.search(rf"^{re.escape(name)} (\S+)$", text, re.M).group(1)))


def _wait_running(factory, count: int) -> None:
    deadline = time.monotonic() + 120
    while _metric(factory, "factory_builds_running") != count:
        assert time.monotonic() < deadline, "the build did not start"
        time.sleep(0.05)


def test_a_client_that_leaves_cancels_nothing_others_wait_for(tmp_path) -> None:
    root, cache = clone(tmp_path / "repo"), tmp_path / "cache"
    with serve_factory(root, cache) as factory:
        schematic_id = _schematic(factory, "buildgraph.leaver=1")
        path = f"/image/{schematic_id}/{VERSION}/metal-amd64.iso"
        before = _metric(factory, 'factory_builds_total{result="ok"}')
        leaver = socket.create_connection((factory.host, factory.port))
        leaver.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        _wait_running(factory, 1)
        leaver.close()
        stayer = factory.request("GET", path)
        assert stayer.status == 200, stayer.text
        assert stayer.body[0x8001:0x8006] == b"CD001"  # an ISO 9660 volume
        assert _metric(factory, 'factory_builds_total{result="ok"}') == before + 1
        assert _metric(factory, 'factory_builds_total{result="failed"}') == 0


def test_a_request_beyond_the_build_slots_gets_503_with_retry_after(tmp_path) -> None:
    root, cache = clone(tmp_path / "repo"), tmp_path / "cache"
    with serve_factory(root, cache, "--max-builds", "1", "--max-waiting", "0") as factory:
        first, second = (_schematic(factory, f"buildgraph.slot={n}") for n in (1, 2))
        answers = {}

        def fetch() -> None:
            answers["first"] = factory.request("GET", f"/image/{first}/{VERSION}/metal-amd64.iso")

        thread = threading.Thread(target=fetch)
        thread.start()
        _wait_running(factory, 1)
        busy = factory.request("GET", f"/image/{second}/{VERSION}/metal-amd64.iso")
        thread.join()
        assert busy.status == 503, busy.text
        assert busy.headers["retry-after"].isdigit()
        assert "builds are running" in busy.text
        assert answers["first"].status == 200
        # Once the slot is free, the refused asset builds.
        again = factory.request("GET", f"/image/{second}/{VERSION}/metal-amd64.iso")
        assert again.status == 200


def test_a_failing_build_is_a_500_naming_the_node_and_the_step_s_message(tmp_path) -> None:
    root, cache = clone(tmp_path / "repo"), tmp_path / "cache"
    with open(root / "init" / "main.go", "a") as source:
        source.write("\nfunc broken( {\n")
    with serve_factory(root, cache) as factory:
        empty = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
        answer = factory.request("GET", f"/image/{empty}/{VERSION}/initramfs-amd64.xz")
        assert answer.status == 500
        assert answer.text.startswith("init:amd64: "), answer.text
        assert "syntax error" in answer.text
        assert answer.text.count("\n") == 1 and "Traceback" not in answer.text
        assert factory.alive()
        assert _metric(factory, 'factory_builds_total{result="failed"}') == 1


def test_oversized_headers_are_refused_and_the_server_stays_up(tmp_path) -> None:
    root, cache = clone(tmp_path / "repo"), tmp_path / "cache"
    with serve_factory(root, cache) as factory:
        answer = factory.request("GET", "/healthz", headers={"X-Big": "a" * 40_000})
        assert answer.status in (400, 431)
        assert factory.alive()
