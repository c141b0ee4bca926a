"""The factory's HTTP API against a real server: schematics, catalogs, assets, limits.

One factory serves a clone of the checkout for the module. Each bad input gets its status
and a one-line body, and the server answers a health check after each.
"""

from __future__ import annotations

import concurrent.futures
import json
import re

import pytest
import yaml
from factory_server import serve_factory
from project import FIXED, imager
from realgraph import clone

pytestmark = pytest.mark.slow
EMPTY = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
SEED = b"customization: {systemExtensions: {officialExtensions: [siderolabs/gvisor]}}"
HELLO = "buildgraph/ext-hello"  # the test env has no USER: USERNAME defaults to buildgraph
VERSION = FIXED["TAG"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("factory")
    root, cache = clone(base / "repo"), base / "cache"
    with serve_factory(root, cache, "--schematic-token", "s3cret") as factory:
        yield {"factory": factory, "root": root, "cache": cache}


def _post(factory, body: bytes, token: str | None = "s3cret"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return factory.request("POST", "/schematics", body, headers)


def _schematic(factory, text: str) -> str:
    answer = _post(factory, text.encode())
    assert answer.status == 201, answer.text
    return json.loads(answer.body)["id"]


def test_the_empty_schematic_is_known_without_posting_it(served) -> None:
    answer = served["factory"].request("GET", f"/schematics/{EMPTY}")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("application/yaml")
    assert answer.body == b"customization: {}\n"


def test_an_official_extension_is_named_by_the_catalog_of_the_version(served) -> None:
    factory = served["factory"]
    listed = json.loads(factory.request("GET", f"/version/{VERSION}/extensions/official").body)
    names = {entry["name"] for entry in listed}
    assert names == {HELLO, "buildgraph/ext-firmware"}
    hello = next(entry for entry in listed if entry["name"] == HELLO)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", hello["digest"])
    assert hello["description"].startswith("An example system extension")
    overlays = json.loads(factory.request("GET", f"/version/{VERSION}/overlays/official").body)
    assert [(o["name"], o["image"]) for o in overlays] == [
        ("example", "buildgraph/overlay-example")
    ]
    assert json.loads(factory.request("GET", "/versions").body) == [VERSION]


def test_a_schematic_is_stored_under_its_canonical_id(served) -> None:
    factory = served["factory"]
    text = f"customization:\n  systemExtensions:\n    officialExtensions: [{HELLO}]\n"
    answer = _post(factory, text.encode())
    assert answer.status == 201
    assert answer.headers["content-type"] == "application/json"
    created = json.loads(answer.body)
    canonical = factory.request("GET", f"/schematics/{created['id']}")
    assert canonical.text == created["schematic"]
    assert yaml.safe_load(canonical.body) == yaml.safe_load(text)
    # Re-posting the canonical text gives the same ID.
    assert _schematic(factory, canonical.text) == created["id"]


def test_an_unknown_extension_is_refused_when_the_schematic_is_posted(served) -> None:
    answer = _post(served["factory"], SEED)
    assert answer.status == 400
    assert "unknown extension 'siderolabs/gvisor'" in answer.text
    assert HELLO in answer.text  # what is known
    assert answer.text.count("\n") == 1


def test_creating_a_schematic_needs_the_token_reading_does_not(served) -> None:
    factory = served["factory"]
    for token in (None, "wrong"):
        answer = _post(factory, b"customization: {}\n", token)
        assert answer.status == 401
        assert answer.headers["www-authenticate"] == "Bearer"
    assert factory.request("GET", f"/schematics/{EMPTY}").status == 200


def test_a_cmdline_from_the_factory_is_the_imager_s_node(served) -> None:
    factory = served["factory"]
    schematic_id = _schematic(
        factory, "customization:\n  extraKernelArgs: [quiet, buildgraph.x=1]\n"
    )
    answer = factory.request("GET", f"/image/{schematic_id}/{VERSION}/cmdline-metal-amd64")
    assert answer.status == 200, answer.text
    line = answer.text.strip()
    assert line.endswith("quiet buildgraph.x=1"), line
    assert answer.headers["content-disposition"] == 'attachment; filename="cmdline-metal-amd64"'
    profile = {"arch": "amd64", "output": {"kind": "cmdline"},
               "customization": {"extraKernelArgs": ["quiet", "buildgraph.x=1"]}}  # fmt: skip
    done = imager(served["root"], served["cache"], "-", stdin=yaml.safe_dump(profile))
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"kernel command line: {line}" in done.stdout
    events = [json.loads(x) for x in done.stderr.splitlines() if x.startswith("{")]
    ran = [e for e in events if e.get("event") == "built"]
    assert ran == [], "the imager rebuilt what the factory had built"


def test_an_asset_is_served_with_length_ranges_and_head(served) -> None:
    factory = served["factory"]
    path = f"/image/{EMPTY}/{VERSION}/kernel-amd64"
    whole = factory.request("GET", path)
    assert whole.status == 200, whole.text
    assert int(whole.headers["content-length"]) == len(whole.body) > 1 << 20
    head = factory.request("HEAD", path)
    assert head.status == 200 and head.body == b""
    assert head.headers["content-length"] == whole.headers["content-length"]
    part = factory.request("GET", path, headers={"Range": "bytes=512-1535"})
    assert part.status == 206
    assert part.body == whole.body[512:1536]
    assert part.headers["content-range"] == f"bytes 512-1535/{len(whole.body)}"


def test_concurrent_requests_for_one_asset_run_one_build(served) -> None:
    factory = served["factory"]
    schematic_id = _schematic(factory, "customization:\n  extraKernelArgs: [buildgraph.flight=1]\n")
    before = _builds(factory)
    path = f"/image/{schematic_id}/{VERSION}/cmdline-aws-amd64"
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: factory.request("GET", path), range(20)))
    assert {a.status for a in answers} == {200}
    assert len({a.body for a in answers}) == 1
    assert _builds(factory) == before + 1


def _builds(factory) -> int:
    text = factory.request("GET", "/metrics").text
    return int(re.search(r'^factory_builds_total\{result="ok"\} (\d+)$', text, re.M).group(1))


def test_a_pxe_script_boots_the_kernel_with_the_schematic_s_command_line(served) -> None:
    factory = served["factory"]
    schematic_id = _schematic(factory, "customization:\n  extraKernelArgs: [buildgraph.pxe=1]\n")
    answer = factory.request("GET", f"/pxe/{schematic_id}/{VERSION}/metal-amd64")
    assert answer.status == 200, answer.text
    lines = answer.text.splitlines()
    prefix = f"{factory.url}/image/{schematic_id}/{VERSION}"
    assert lines[:3] == ["#!ipxe", "", "imgfree"]
    assert lines[3].startswith(f"kernel {prefix}/kernel-amd64 ")
    assert lines[3].endswith(" buildgraph.pxe=1")
    assert lines[4:] == [f"initrd {prefix}/initramfs-amd64.xz", "boot"]


def test_metrics_count_requests_builds_and_hits(served) -> None:
    text = served["factory"].request("GET", "/metrics").text
    for name in ("factory_requests_total", "factory_builds_total", "factory_cache_hits_total",
                 "factory_build_seconds_total"):  # fmt: skip
        assert f"# TYPE {name} counter" in text
    assert served["factory"].request("GET", "/readyz").status == 200


HUGE = b"customization:\n  extraKernelArgs:\n" + b"    - " + b"x" * (1 << 20) + b"\n"
BAD_ID = "0" * 63 + "g"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "says"),
    [
        ("POST", "/schematics", HUGE, 413, "over 1048576 bytes"),
        ("POST", "/schematics", b"customization: [", 400, "yaml"),
        ("POST", "/schematics", b"", 400, "EOF"),
        ("POST", "/schematics", b"customization:\n  extraKernelArg: [a]\n", 400, "extraKernelArg"),
        ("POST", "/schematics", b"owner: me\n", 400, "owner"),
        (
            "POST",
            "/schematics",
            b"customization:\n  systemExtensions:\n    officialExtensions: [nope/x]\n",
            400,
            "unknown extension 'nope/x'",
        ),
        ("GET", f"/schematics/{BAD_ID}", None, 400, "64 hex"),
        ("GET", "/schematics/..", None, 400, "64 hex"),
        ("GET", f"/schematics/{'a' * 64}", None, 404, "schematic not found"),
        ("GET", f"/image/{BAD_ID}/{VERSION}/kernel-amd64", None, 400, "64 hex"),
        ("GET", f"/image/%2e%2e/{VERSION}/kernel-amd64", None, 400, "64 hex"),
        ("GET", f"/image/{EMPTY}/%2e%2e/kernel-amd64", None, 400, "malformed version"),
        ("GET", f"/image/{EMPTY}/{VERSION}/%2e%2e", None, 400, "invalid profile path"),
        ("GET", f"/image/{EMPTY}/{VERSION}/..%2fetc%2fpasswd", None, 400, "bad path"),
        ("GET", f"/image/{EMPTY}/{VERSION}/%2fetc%2fpasswd", None, 400, "bad path"),
        ("GET", f"/image/{EMPTY}/../{VERSION}/kernel-amd64", None, 400, "bad path"),
        ("GET", f"/image/{EMPTY}//etc/passwd", None, 400, "bad path"),
        ("GET", f"/image/{EMPTY}/v9.9.9/kernel-amd64", None, 404, "unknown version 'v9.9.9'"),
        ("GET", f"/image/{EMPTY}/v1%202/kernel-amd64", None, 400, "malformed version"),
        ("GET", f"/image/{EMPTY}/{VERSION}/kernel-riscv64", None, 400, "invalid profile path"),
        ("GET", f"/image/{EMPTY}/{VERSION}/metal-amd64.vdi", None, 400, "invalid profile path"),
        ("GET", f"/image/{EMPTY}/{VERSION}/metal-amd64.ova.xz", None, 400, "do not come as"),
        ("GET", f"/image/{EMPTY}/{VERSION}/nowhere-amd64.iso", None, 404, "unknown platform"),
        ("GET", f"/image/{EMPTY}/{VERSION}/aws-amd64.iso", None, 404, "built for metal"),
        (
            "GET",
            f"/image/{EMPTY}/{VERSION}/metal-amd64-secureboot.iso",
            None,
            404,
            "no secure boot",
        ),
        ("GET", f"/image/{'b' * 64}/{VERSION}/kernel-amd64", None, 404, "schematic not found"),
        ("POST", f"/image/{EMPTY}/{VERSION}/kernel-amd64", b"", 405, "method"),
        ("GET", "/schematics", None, 405, "method"),
        ("HEAD", "/schematics", None, 405, ""),
        ("PUT", f"/schematics/{EMPTY}", b"", 405, "method"),
        ("GET", "/nothing/here", None, 404, "no such route"),
    ],
)
def test_a_bad_request_gets_its_status_and_one_line(served, method, path, body, status, says):
    factory = served["factory"]
    answer = factory.request(method, path, body, {"Authorization": "Bearer s3cret"})
    assert answer.status == status, answer.text
    if method != "HEAD":
        assert says.lower() in answer.text.lower(), answer.text
        assert answer.text.endswith("\n") and answer.text.count("\n") == 1, answer.text
        assert "Traceback" not in answer.text
    assert factory.alive()


def test_schematics_survive_a_restart(served) -> None:
    factory = served["factory"]
    schematic_id = _schematic(factory, "customization:\n  extraKernelArgs: [buildgraph.kept=1]\n")
    with serve_factory(served["root"], served["cache"]) as second:
        answer = second.request("GET", f"/schematics/{schematic_id}")
        assert answer.status == 200
        assert b"buildgraph.kept=1" in answer.body
