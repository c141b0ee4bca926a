"""The remote cache on a real registry (Distribution, on loopback): two clones with their
own local caches share built outputs; untrusted or damaged entries are never hits."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from project import REPO, _run, doit, node_events
from realgraph import clone, sha256
from registry_server import serve_registry

pytestmark = pytest.mark.slow

GOAL = ("iso", "image-metal")
"""Boot assets and a disk image: the package images, kernel, initramfs, GRUB, disks."""


def keygen(path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "buildgraph.cli", "cache", "keygen", str(path)],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    return next(line.split()[-1] for line in done.stdout.splitlines() if "public key" in line)


class Machine:
    """A clone with its own local cache, as a CI runner or a laptop has."""

    def __init__(self, base: Path, name: str, env: dict[str, str]) -> None:
        self.root = clone(base / name / "src")
        self.cache = base / name / "cache"
        self.env = env

    def build(self, *args: str, env: dict[str, str] | None = None) -> tuple[dict, dict]:
        done = doit(self.root, self.cache, *args, env={**self.env, **(env or {})})
        assert done.returncode == 0, done.stdout + done.stderr[-6000:]
        events = {e["node"]: e for e in node_events(done.stderr)}
        return {n: e["status"] for n, e in events.items()}, events

    def explain(self, *args: str) -> str:
        done = _run(self.root, self.cache, ["-m", "buildgraph.cli", "explain", *args], False,
                    self.env)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    def outputs(self) -> dict[str, str]:
        out = self.root / "_out"
        return {
            str(p.relative_to(out)): sha256(p)
            for p in sorted(out.rglob("*"))
            if p.is_file() and not p.name.startswith(".")
        }


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A registry, a writer that built GOAL into it, and the writer's public key."""
    base = tmp_path_factory.mktemp("remote")
    with serve_registry(base / "registry", access_log=True) as registry:
        public = keygen(base / "writer.pem")
        env = {
            "BUILDGRAPH_REMOTE_CACHE": f"{registry.host}/ci/cache",
            "BUILDGRAPH_REMOTE_CACHE_KEY": str(base / "writer.pem"),
        }
        writer = Machine(base, "writer", env)
        statuses, events = writer.build(*GOAL)
        assert "built" in statuses.values()
        writer.keys = {node: event["key"] for node, event in events.items()}
        yield registry, writer, public, base


def reader(shared, name: str, **extra: str) -> Machine:
    registry, _writer, public, base = shared
    env = {"BUILDGRAPH_REMOTE_CACHE": f"{registry.host}/ci/cache",
           "BUILDGRAPH_REMOTE_CACHE_TRUST": public, **extra}  # fmt: skip
    return Machine(base, name, env)


def blob_gets(registry) -> list[str]:
    return [p for method, p, _ in registry.requests() if method == "GET" and "/blobs/" in p]


def test_a_fresh_clone_runs_no_step_and_gets_the_same_bytes(shared):
    registry, writer, _public, _base = shared
    before = len(blob_gets(registry))
    machine = reader(shared, "reader")
    statuses, events = machine.build(*GOAL)
    assert set(statuses.values()) == {"remote"}, statuses
    goal_outputs = {"metal-amd64.iso", "metal-amd64.raw.zst"} & set(machine.outputs())
    assert goal_outputs
    for name in goal_outputs:
        assert machine.outputs()[name] == writer.outputs()[name]
    fetched = {n for n, e in events.items() if e.get("downloaded")}
    assert fetched == {n for n in statuses if n.split(":")[0] in GOAL}, fetched
    # Intermediate outputs stayed in the registry: only the goal's chunks and entries moved.
    assert not (machine.root / "_out" / "vmlinuz-amd64").exists()
    gets = blob_gets(registry)[before:]
    assert len(gets) <= len(statuses) + sum(1 for _ in goal_outputs) * 4, gets
    # A second build asks the registry nothing: this machine verified those entries.
    asked = len(registry.requests())
    again, _ = machine.build(*GOAL)
    assert set(again.values()) == {"cached"}
    assert len(registry.requests()) == asked


def test_explain_says_remote_hit(shared):
    text = reader(shared, "explaining").explain("iso")
    assert "iso:amd64" in text and "remote hit" in text, text
    assert "would run" not in text


def test_an_untrusted_writer_is_no_hit(shared, tmp_path):
    other = keygen(tmp_path / "other.pem")
    machine = reader(shared, "untrusting", BUILDGRAPH_REMOTE_CACHE_TRUST=other)
    text = machine.explain("iso")
    assert "remote entry rejected: signed by key" in text, text
    assert "remote hit" not in text


def test_an_unreachable_remote_cache_is_a_warning_and_a_local_build(shared, tmp_path):
    from registry_server import free_port

    machine = reader(shared, "offline")
    machine.env["BUILDGRAPH_REMOTE_CACHE"] = f"127.0.0.1:{free_port()}/ci/cache"
    done = doit(machine.root, machine.cache, "kernel", env=machine.env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("remote cache:") == 1, done.stderr
    strict = reader(shared, "offline-strict", BUILDGRAPH_REMOTE_CACHE_REQUIRED="true")
    strict.env["BUILDGRAPH_REMOTE_CACHE"] = machine.env["BUILDGRAPH_REMOTE_CACHE"]
    done = doit(strict.root, strict.cache, "kernel", env=strict.env)
    assert done.returncode != 0
    assert "remote cache" in done.stderr and "Traceback" not in done.stderr
    assert not (strict.root / "_out" / "vmlinuz-amd64").exists()


# -- the registry's side, as an attacker or a garbage collector changes it -----------------

REPO_PATH = "ci/cache"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _http(registry, method: str, path: str, body: bytes | None = None, ctype: str = "") -> bytes:
    import urllib.request

    headers = {"Accept": MANIFEST}
    if ctype:
        headers["Content-Type"] = ctype
    request = urllib.request.Request(
        f"http://{registry.host}/v2/{REPO_PATH}{path}", data=body, method=method, headers=headers
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        return response.read()


def manifest(registry, key: str) -> dict:
    return json.loads(_http(registry, "GET", f"/manifests/ac-{key}"))


def put_manifest(registry, key: str, doc: dict) -> None:
    body = json.dumps(doc).encode()
    _http(registry, "PUT", f"/manifests/ac-{key}", body, MANIFEST)


def blob_file(registry, digest: str) -> Path:
    hexdigest = digest.removeprefix("sha256:")
    return registry.root / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"


def iso_rebuilt(machine: Machine, writer: Machine) -> dict:
    statuses, _ = machine.build("iso")
    assert statuses["iso:amd64"] == "built", statuses
    assert machine.outputs()["metal-amd64.iso"] == writer.outputs()["metal-amd64.iso"]
    return statuses


def test_a_blob_altered_on_the_registry_is_refused_and_rebuilt(shared):
    registry, writer, _public, _base = shared
    layer = manifest(registry, writer.keys["iso:amd64"])["layers"][0]["digest"]
    path = blob_file(registry, layer)
    original = path.read_bytes()
    path.write_bytes(original[:100] + bytes([original[100] ^ 1]) + original[101:])
    try:
        iso_rebuilt(reader(shared, "altered-blob"), writer)
    finally:
        path.write_bytes(original)


def test_a_tag_naming_another_keys_entry_is_rejected(shared):
    registry, writer, _public, _base = shared
    iso_key, kernel_key = writer.keys["iso:amd64"], writer.keys["kernel:amd64"]
    original = manifest(registry, iso_key)
    put_manifest(registry, iso_key, manifest(registry, kernel_key))
    try:
        machine = reader(shared, "swapped-tag")
        text = machine.explain("iso")
        # The signature binds the key: one made for kernel's key does not hold for iso's.
        assert "iso:amd64             would run" in text, text
        assert "remote entry rejected: bad signature by key" in text, text
        iso_rebuilt(machine, writer)
    finally:
        put_manifest(registry, iso_key, original)


def test_an_entry_with_a_swapped_digest_has_a_bad_signature(shared):
    """An entry rewritten by someone without the key: its output digest swapped, the
    rewritten entry uploaded, the old signature kept."""
    registry, writer, _public, _base = shared
    iso_key, kernel_key = writer.keys["iso:amd64"], writer.keys["kernel:amd64"]
    original = manifest(registry, iso_key)
    entry = json.loads(blob_file(registry, original["config"]["digest"]).read_bytes())
    kernel_config = manifest(registry, kernel_key)["config"]["digest"]
    theirs = json.loads(blob_file(registry, kernel_config).read_bytes())
    entry["outputs"]["metal-amd64.iso"]["digest"] = theirs["outputs"]["vmlinuz-amd64"]["digest"]
    forged = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    digest = "sha256:" + hashlib.sha256(forged).hexdigest()
    location = urllib_post_upload(registry)
    _http(registry, "PUT", f"{location}&digest={digest}", forged, "application/octet-stream")
    put_manifest(registry, iso_key, {**original, "config": {**original["config"], "digest": digest,
                                                            "size": len(forged)}})  # fmt: skip
    try:
        machine = reader(shared, "swapped-digest")
        assert "remote entry rejected: bad signature by key" in machine.explain("iso")
        iso_rebuilt(machine, writer)
    finally:
        put_manifest(registry, iso_key, original)


def urllib_post_upload(registry) -> str:
    """Start a blob upload; the path (below the repository) to PUT it to."""
    import urllib.request

    request = urllib.request.Request(
        f"http://{registry.host}/v2/{REPO_PATH}/blobs/uploads/", data=b"", method="POST"
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        location = response.headers["Location"]
    path = location.split(f"/v2/{REPO_PATH}", 1)[1]
    return path if "?" in path else path + "?"


def test_a_blob_lost_to_registry_gc_makes_the_producer_run_again(shared):
    registry, writer, _public, _base = shared
    layers = manifest(registry, writer.keys["iso:amd64"])["layers"]
    moved = []
    for layer in layers:
        path = blob_file(registry, layer["digest"])
        path.rename(path.with_name("gone"))
        moved.append(path)
    try:
        iso_rebuilt(reader(shared, "lost-blob"), writer)
    finally:
        for path in moved:
            path.with_name("gone").rename(path)


KILL_SPECS = """
targets:
  big:
    step: shell
    params:
      script: head -c 201326592 /dev/urandom > $OUT/big.bin
    outputs: [big.bin]
"""


def test_sigkill_while_uploading_leaves_no_tag_naming_missing_content(shared, tmp_path):
    registry, _writer, _public, base = shared
    root, cache = tmp_path / "repo", tmp_path / "cache"
    (root / "targets").mkdir(parents=True)
    (root / "targets" / "graph.yaml").write_text(KILL_SPECS)
    for name in ("dodo.py", "pyproject.toml"):
        (root / name).write_bytes((REPO / name).read_bytes())
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO),
        "HOME": str(tmp_path), "BUILDGRAPH_CACHE": str(cache), "BUILDGRAPH_LOG": "json",
        "BUILDGRAPH_REMOTE_CACHE": f"{registry.host}/ci/killed",
        "BUILDGRAPH_REMOTE_CACHE_KEY": str(base / "writer.pem"),
    }  # fmt: skip
    uploads = len([r for r in registry.requests() if "/killed/blobs/uploads" in r[1]])
    proc = subprocess.Popen([sys.executable, "-m", "doit", "big"], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len([r for r in registry.requests() if "/killed/blobs/uploads" in r[1]]) <= uploads:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    tags = json.loads(_http_repo(registry, "ci/killed", "/tags/list") or b"{}").get("tags") or []
    for tag in tags:  # any tag there names a manifest whose every blob is there
        doc = json.loads(_http_repo(registry, "ci/killed", f"/manifests/{tag}"))
        for blob in [doc["config"], *doc["layers"]]:
            assert blob_file(registry, blob["digest"]).exists(), (tag, blob)
    # The next build succeeds (the local cache kept the result); `cache push` completes
    # the upload the kill cut short.
    for argv in (["doit", "big"], ["buildgraph.cli", "cache", "push", "big"]):
        again = subprocess.run(
            [sys.executable, "-m", *argv],
            cwd=root, env=env, capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
        assert again.returncode == 0, again.stderr[-3000:]
    assert "1 entries pushed" in again.stdout, again.stdout
    tags = json.loads(_http_repo(registry, "ci/killed", "/tags/list") or b"{}").get("tags")
    assert len(tags) == 1 and tags[0].startswith("ac-")
    # Pruning deletes entries by digest; one younger than the age stays.
    prune = [sys.executable, "-m", "buildgraph.cli", "cache", "prune-remote", "--older-than"]
    for age, deleted in (("1d", "0 entries"), ("0s", "1 entries")):
        done = subprocess.run([*prune, age], cwd=root, env=env, capture_output=True, text=True)
        assert done.returncode == 0 and deleted in done.stdout, done.stdout + done.stderr
    assert _http_repo(registry, "ci/killed", f"/manifests/{tags[0]}") is None


def _http_repo(registry, repo: str, path: str) -> bytes | None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"http://{registry.host}/v2/{repo}{path}",
        headers={"Accept": MANIFEST},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.read()
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise
