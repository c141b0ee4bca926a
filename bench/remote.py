"""The remote cache: a cold local build against a fresh clone fed by a warm remote cache.

Why this exists: a CI runner or a laptop with an empty local cache, pointed at a remote
cache another machine filled (BUILDGRAPH_REMOTE_CACHE), should run no step and move only
the bytes of the goal's outputs. This script measures, in one run, against the real CNCF
Distribution (``docker-registry``) on loopback with its access log on:

* ``cold``: ``doit GOAL`` in a fresh clone with an empty cache (the steps' own caches,
  Debian packages and the Go build cache, seeded by a warm-up so no download is timed),
  uploading to the remote cache as it goes (the writer);
* ``warm remote``: ``doit GOAL`` in another fresh clone with another empty local cache,
  reading that remote cache (the reader): wall seconds, steps run, requests and blob bytes
  moved (from the registry's log and storage);
* ``skopeo``: ``skopeo copy docker://<host>/<repo>:ac-<key> dir:...`` of the goal nodes'
  entries, the same blobs the reader fetched, by the independent client: the transfer floor;
* the no-op: ``doit GOAL`` again in the reader's clone, with and without the remote cache
  configured, median of ``--repeat`` rounds, once both plans have been built once (without
  the remote cache, the intermediate outputs a warm build left there are built here).

GOALs: ``iso``, and four disks, ``disk-metal disk-aws disk-gcp disk-hcloud`` (three of them
8 GiB apparent, tens of MiB of data), whose bytes moved are compared with their zstd
images (``image-aws`` is ``.raw.zst``).

Usage::

    .venv/bin/python bench/remote.py [--repeat N]

It writes its section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from checkout import copy_checkout
from common import REPO, WORK, exclusive, host, revision, say, write_section
from registry_server import serve_registry

HERE = WORK / "remote"
GOALS = {"iso": ["iso"], "4 disks": ["disk-metal", "disk-aws", "disk-gcp", "disk-hcloud"]}
FIXED = {"TAG": "v1.0.0", "SOURCE_DATE_EPOCH": "1700000000"}
BEGIN, END = "<!-- bench/remote.py -->", "<!-- /bench/remote.py -->"


def doit(root: Path, cache: Path, goal: list[str], env: dict[str, str]) -> tuple[float, dict]:
    base = {"PATH": os.environ["PATH"], "HOME": str(cache.parent), "BUILDGRAPH_LOG": "json"}
    env = {**base, "BUILDGRAPH_CACHE": str(cache), "PYTHONPATH": str(root), **FIXED, **env}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "doit", *goal],
        cwd=root, capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    wall = time.monotonic() - started
    if done.returncode:
        raise SystemExit(done.stderr[-4000:])
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    return wall, {e["node"]: e for e in events if e.get("event") == "node"}


def fresh(name: str, seed: Path) -> tuple[Path, Path]:
    """A clone and an empty cache holding only a copy of the seed's steps' own caches."""
    base = HERE / name
    shutil.rmtree(base, ignore_errors=True)
    root = copy_checkout(base / "src")
    (base / "cache").mkdir()
    shutil.copytree(seed / "steps", base / "cache" / "steps", symlinks=True)
    return root, base / "cache"


def blob_bytes(registry, since: int) -> tuple[int, int]:
    """(requests, bytes of the blobs GET) in the registry's log after the first ``since``."""
    requests = registry.requests()[since:]
    total = 0
    for method, path, status in requests:
        if method == "GET" and "/blobs/sha256:" in path and status == 200:
            digest = path.rsplit("/", 1)[1].removeprefix("sha256:")
            data = registry.root / "docker/registry/v2/blobs/sha256" / digest[:2] / digest / "data"
            total += data.stat().st_size
    return len(requests), total


def skopeo(registry, repo: str, keys: list[str]) -> float:
    target = HERE / "skopeo"
    started = time.monotonic()
    for key in keys:
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run(
            ["skopeo", "copy", "--src-tls-verify=false",
             f"docker://{registry.host}/{repo}:ac-{key}", f"dir:{target}"],
            check=True, capture_output=True,
        )  # fmt: skip
    return time.monotonic() - started


def measure(repeat: int) -> list[str]:
    seed = HERE / "seed"
    if not (seed / "cache" / "steps").is_dir():
        say("warm-up: filling the steps' own caches (not timed)")
        root = copy_checkout(seed / "src")
        doit(root, seed / "cache", [g for goal in GOALS.values() for g in goal] + ["image-aws"], {})
    seed = seed / "cache"
    rows = []
    with serve_registry(HERE / "registry", access_log=True) as registry:
        key = HERE / "writer.pem"
        key.unlink(missing_ok=True)
        out = subprocess.run(
            [sys.executable, "-m", "buildgraph.cli", "cache", "keygen", str(key)],
            capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(REPO)},
        ).stdout  # fmt: skip
        public = next(line.split()[-1] for line in out.splitlines() if "public key" in line)
        for name, goal in GOALS.items():
            repo = f"ci/{name.replace(' ', '-')}"
            where = {"BUILDGRAPH_REMOTE_CACHE": f"{registry.host}/{repo}"}
            say(f"{name}: cold build, uploading")
            root, cache = fresh("writer", seed)
            cold, _ = doit(root, cache, goal, {**where, "BUILDGRAPH_REMOTE_CACHE_KEY": str(key)})
            say(f"{name}: warm remote")
            root, cache = fresh("reader", seed)
            since = len(registry.requests())
            reader = {**where, "BUILDGRAPH_REMOTE_CACHE_TRUST": public}
            warm, events = doit(root, cache, goal, reader)
            requests, moved = blob_bytes(registry, since)
            ran = sum(1 for e in events.values() if e["status"] == "built")
            goal_keys = [e["key"] for n, e in events.items() if n.split(":")[0] in goal]
            floor = skopeo(registry, repo, goal_keys)
            placed = [p.stat() for p in (root / "_out").rglob("*") if p.is_file()]
            data = sum(st.st_blocks * 512 for st in placed)
            apparent = sum(st.st_size for st in placed)
            # Settle both plans first: a build without the remote cache must build here the
            # intermediate outputs the warm build left in the registry.
            doit(root, cache, goal, {})
            doit(root, cache, goal, reader)
            with_remote, without = [], []
            for _ in range(repeat):
                with_remote.append(doit(root, cache, goal, reader)[0])
                without.append(doit(root, cache, goal, {})[0])
            rows.append(
                f"| {name} | {cold:.1f} | {warm:.1f} | {warm / cold:.2f} | {ran} | {requests} "
                f"| {moved / 2**20:.1f} | {data / 2**20:.1f} ({apparent / 2**30:.1f} GiB apparent)"
                f" | {floor:.1f} | {statistics.median(without) * 1000:.0f} "
                f"| {statistics.median(with_remote) * 1000:.0f} |"
            )
            say(rows[-1])
    compressed = sorted(HERE.glob("seed/src/_out/aws-amd64.raw.zst"))
    note = ""
    if compressed:
        size = compressed[0].stat().st_size / 2**20
        note = f"aws-amd64.raw.zst (the image-aws output): {size:.1f} MiB"
    return rows + ([note] if note else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="no-op rounds (default 5)")
    args = parser.parse_args()
    with exclusive():
        HERE.mkdir(parents=True, exist_ok=True)
        rows = measure(args.repeat)
    table = [r for r in rows if r.startswith("|")]
    section = "\n".join(
        [
            "## Remote cache: cold build against a warm remote cache (bench/remote.py)",
            "",
            f"`.venv/bin/python bench/remote.py --repeat {args.repeat}` at {revision()},"
            f" on {host()}; registry: Debian's docker-registry on loopback.",
            "",
            "| goal | cold (s) | warm remote (s) | ratio | steps run | requests | blob MiB moved"
            " | _out/ data MiB | skopeo floor (s) | no-op (ms) | no-op, remote set (ms) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            *table,
            "",
            *[r for r in rows if not r.startswith("|")],
        ]
    )
    write_section(BEGIN, END, section)
    print(section)


if __name__ == "__main__":
    main()
