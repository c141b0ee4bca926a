"""Pushing a multi-arch image to a registry: ``doit imager PUSH=true`` against skopeo.

Why this exists: with ``PUSH=true`` the ``oci-publish`` nodes send each image's index to a
registry (buildgraph/oci/push.py: ``HEAD`` each blob, upload only the missing ones, then
the manifests, then the index). This script measures, in one run, what a first push of
the imager image (both arches) costs, what a second, unchanged push costs, and the same
for skopeo, the independent client, copying the same index from the embedded store; and
counts what each sent, from the registry's side.

Set-up, not timed:

* the checkout's files (tracked and new, not ignored) are copied to ``_work/push/clone``
  (``boot.clone_checkout``); doit runs there and imports that copy of buildgraph/;
* a warm-up ``doit imager`` into ``_work/boot/seed``, the seed bench/boot.py keeps, fills
  the steps' own caches (package images of both arches, the Go build cache), so no
  download is measured;
* then a fresh cache, ``_work/push/cache``, with a copy of the seed's ``steps/``, and
  ``doit imager PLATFORM=linux/amd64,linux/arm64 USERNAME=me`` into it: the store
  (``<cache>/steps/oci``) names the index ``local/me/imager:<TAG>``; the variables that
  would come from git or the host are fixed (``boot.VARS``).

Each of ``--repeat`` rounds, each client against a fresh registry of its own (the real
CNCF Distribution, ``docker-registry``, on a free loopback port, its access log on; see
tests/registry_server.py), the clients in a rotated order from round to round:

* ``doit``: ``doit imager PUSH=true REGISTRY=<host> USERNAME=me``, which must build only
  the ``imager`` publish node (the images are cached); then the same again (second), and
  a third time;
* ``buildgraph push``: the console command, ``local/me/imager:<TAG>`` to ``<host>/me/imager
  :<TAG>``, first and second: the same push without doit's start-up, planning and the
  publish node's indexing;
* ``skopeo``: ``skopeo copy --all --dest-tls-verify=false oci:<cache>/steps/oci:local/me/
  imager:<TAG> docker://<host>/me/imager:<TAG>``, first and second. skopeo compresses the
  uncompressed layers for a registry, so what it sends is other bytes (gzip) under other
  digests;
* ``skopeo --preserve-digests``: the same with ``--preserve-digests``, which keeps the
  layers as they are: the same bytes and digests as buildgraph's push.

Every push is timed by wall clock. From the registry's access log, per push: blob uploads
(``POST .../blobs/uploads/``), requests, and the bytes uploaded: the registry logs no
request sizes, so it is the sum of the sizes, in the registry's storage, of the blobs
whose uploads completed (``PUT .../blobs/uploads/...?digest=``, 201). The script checks
that each registry ends with the tag naming the store's index (or, for plain skopeo, an
index of the same two platforms), and that ``buildgraph push``'s own count of blobs and
bytes agrees with the log. skopeo runs with ``HOME`` in ``_work/push/home``; as root, its
blob-info cache is ``/var/lib/containers/cache`` whatever ``HOME`` is, and outlives the run,
but a fresh registry on a new port has no entry there.

Usage::

    python bench/push.py [--repeat 3] [--write]

``--write`` puts the results in BENCHMARKS.md, between the ``push`` markers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from boot import SEED, VARS, clone_checkout, doit, doit_env, fresh_cache
from common import CLEAN_ENV, WORK, doit_path, exclusive, host, revision, say, sh, write_section
from disk import MIB, size
from registry_server import REGISTRY, RunningRegistry, serve_registry

PUSH = WORK / "push"
CLONE = PUSH / "clone"
CACHE = PUSH / "cache"
MARKERS = ("<!-- push:begin -->", "<!-- push:end -->")
PLATFORM = "linux/amd64,linux/arm64"
USERNAME = "me"
IMAGE = "imager"
REPOSITORY = f"{USERNAME}/{IMAGE}"
SOURCE = f"local/{REPOSITORY}:{VARS['TAG']}"
"""The index in the embedded store, as the untimed ``doit imager`` (no REGISTRY) names it."""
STORE = CACHE / "steps" / "oci"
BUILD = (IMAGE, f"USERNAME={USERNAME}")
CLIENTS = ("doit", "buildgraph push", "skopeo", "skopeo --preserve-digests")
SKOPEO = ("skopeo", "copy", "--all", "--dest-tls-verify=false")
_UPLOAD_DONE = re.compile(r"/blobs/uploads/[^?]*\?(?P<query>.*)$")
_SUMMARY = re.compile(r"(?P<blobs>\d+) blobs uploaded \((?P<mib>[0-9.]+) MiB\)")

# -- one push, as the registry saw it ---------------------------------------------------


@dataclass(frozen=True)
class Push:
    wall: float
    uploads: int
    """``POST .../blobs/uploads/`` requests: blob uploads started."""
    sent: int
    """Bytes of the blobs whose uploads completed, their sizes in the registry's storage."""
    requests: int
    heads: int
    """``HEAD`` requests (blobs and manifests): what the client asked before sending."""
    node: float | None = None
    """doit only: the publish node's own seconds, or None when it was cached."""


def timed(registry: RunningRegistry, run: Callable[[], float | tuple[float, float | None]]) -> Push:
    """Run one push (``run`` returns its wall, or its wall and the publish node's seconds)
    and count, from the registry's access log, the requests it made."""
    before = len(settled(registry))
    answer = run()
    wall, node = answer if isinstance(answer, tuple) else (answer, None)
    requests = settled(registry)[before:]
    digests = []
    for method, path, status in requests:
        done = _UPLOAD_DONE.search(path)
        if method == "PUT" and status == 201 and done:
            (digest,) = urllib.parse.parse_qs(done["query"])["digest"]
            digests.append(digest)
    return Push(
        wall=wall,
        uploads=sum(1 for m, p, s in requests if m == "POST" and p.endswith("/blobs/uploads/")),
        sent=sum(stored(registry, digest).stat().st_size for digest in digests),
        requests=len(requests),
        heads=sum(1 for m, _, _ in requests if m == "HEAD"),
        node=node,
    )


def settled(registry: RunningRegistry) -> list[tuple[str, str, int]]:
    """The registry's requests so far, but for this script's own: one marked ``GET /v2/``,
    sent after the push and waited for in the access log, so no line of the push is still
    unwritten."""
    mark = f"/v2/?bench={time.monotonic_ns()}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{registry.host}{mark}", timeout=10):
        pass
    deadline = time.monotonic() + 10
    while True:
        requests = registry.requests()
        if any(path == mark for _, path, _ in requests):
            return [r for r in requests if not r[1].startswith("/v2/?bench=")]
        if time.monotonic() > deadline:
            raise SystemExit(f"the registry's access log never showed GET {mark}")
        time.sleep(0.02)


def stored(registry: RunningRegistry, digest: str) -> Path:
    """Where docker-registry's filesystem driver keeps a blob's bytes."""
    algorithm, hex_ = digest.split(":", 1)
    return registry.root / "docker/registry/v2/blobs" / algorithm / hex_[:2] / hex_ / "data"


def fetch(registry: RunningRegistry, reference: str) -> tuple[str, dict]:
    """The digest and document of the manifest or index the registry holds under
    ``reference`` (``:<tag>`` or ``@<digest>``), its exact bytes fetched with skopeo."""
    ref = f"docker://{registry.host}/{REPOSITORY}{reference}"
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", ref],
                         env=CLEAN_ENV, capture_output=True, check=True).stdout  # fmt: skip
    return "sha256:" + hashlib.sha256(raw).hexdigest(), json.loads(raw)


# -- the clients ---------------------------------------------------------------------


def run_doit(registry: RunningRegistry, expect: set[str] | None) -> tuple[float, float | None]:
    """``doit imager PUSH=true REGISTRY=<host>``; ``expect``: the nodes it must build, or None
    to take what it does."""
    run = doit(CACHE, PLATFORM, *BUILD[1:], "PUSH=true", f"REGISTRY={registry.host}",
               targets=BUILD[:1], clone=CLONE)  # fmt: skip
    built = run.built()
    if expect is not None and built != expect:
        raise SystemExit(f"doit imager PUSH=true built {sorted(built)}, not {sorted(expect)}")
    if built - {IMAGE}:
        raise SystemExit(f"a push rebuilt {sorted(built - {IMAGE})}: the images should be cached")
    status, seconds = run.nodes[IMAGE]
    return run.wall, seconds if status == "built" else None


def run_cli(registry: RunningRegistry, counts: list[tuple[int, float]]) -> float:
    """``buildgraph push`` (the console command) from the clone, its count kept in ``counts``."""
    argv = [sys.executable, "-m", "buildgraph.cli", "push", SOURCE,
            f"{registry.host}/{REPOSITORY}:{VARS['TAG']}"]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=CLONE, env=doit_env(CACHE, CLONE), capture_output=True,
                          text=True)  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"buildgraph push failed:\n{done.stdout}{done.stderr[-3000:]}")
    summary = _SUMMARY.search(done.stdout)
    if summary is None:
        raise SystemExit(f"buildgraph push said {done.stdout!r}")
    counts.append((int(summary["blobs"]), float(summary["mib"])))
    return wall


def run_skopeo(registry: RunningRegistry, *flags: str) -> float:
    argv = [*SKOPEO, *flags, f"oci:{STORE}:{SOURCE}",
            f"docker://{registry.host}/{REPOSITORY}:{VARS['TAG']}"]  # fmt: skip
    env = {**CLEAN_ENV, "HOME": str(PUSH / "home")}
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} failed:\n{done.stderr[-3000:]}")
    return wall


# -- the measurement -------------------------------------------------------------------


@dataclass
class Result:
    pushes: dict[str, dict[str, list[Push]]] = field(
        default_factory=lambda: {c: {"first": [], "second": [], "third": []} for c in CLIENTS}
    )
    """client -> first | second | third -> one push per round (third: doit only)."""
    second_ran: list[bool] = field(default_factory=list)
    """Per round, whether doit's second push ran the publish node."""
    index: str = ""
    """The digest of the index in the store."""
    blobs: dict[str, int] = field(default_factory=dict)
    """Its distinct configs and layers: digest -> size."""
    skopeo_index: str = ""
    """The digest plain skopeo's registry ends with under the tag."""
    skopeo_layers: set[str] = field(default_factory=set)
    """The media types of plain skopeo's layers."""

    def median(self, client: str, which: str, attribute: str) -> float:
        return statistics.median(getattr(p, attribute) for p in self.pushes[client][which])

    def spread(self, client: str, which: str, attribute: str) -> tuple[float, float]:
        values = [getattr(p, attribute) for p in self.pushes[client][which]]
        return min(values), max(values)


def image(result: Result) -> None:
    """The index the store names SOURCE, and its blobs (untimed, once)."""
    from buildgraph.oci.layout import Layout

    store = Layout(STORE)
    top = store.lookup(SOURCE)
    if top is None:
        raise SystemExit(f"{SOURCE} is not in {STORE}; it has {store.refs()}")
    result.index = top.digest
    index = store.read_json(top.digest)
    arches = [m["platform"]["architecture"] for m in index["manifests"]]
    if arches != ["amd64", "arm64"]:
        raise SystemExit(f"{SOURCE} holds {arches}, not amd64 and arm64")
    for entry in index["manifests"]:
        manifest = store.read_json(entry["digest"])
        for blob in (manifest["config"], *manifest["layers"]):
            result.blobs[blob["digest"]] = blob["size"]


def one_client(client: str, result: Result, round_: int, cli_counts: list) -> None:
    """A fresh registry; the client's first push into it, then its second (and doit's third)."""
    workdir = PUSH / "registry"
    shutil.rmtree(workdir, ignore_errors=True)
    pushes = result.pushes[client]
    with serve_registry(workdir, access_log=True) as registry:
        if client == "doit":
            pushes["first"].append(timed(registry, lambda: run_doit(registry, {IMAGE})))
            pushes["second"].append(timed(registry, lambda: run_doit(registry, None)))
            result.second_ran.append(pushes["second"][-1].node is not None)
            pushes["third"].append(timed(registry, lambda: run_doit(registry, None)))
        elif client == "buildgraph push":
            for which in ("first", "second"):
                pushes[which].append(timed(registry, lambda: run_cli(registry, cli_counts)))
        else:
            flags = client.split()[1:]
            for which in ("first", "second"):
                pushes[which].append(timed(registry, lambda: run_skopeo(registry, *flags)))
        digest, held = fetch(registry, f":{VARS['TAG']}")
        if client == "skopeo":
            result.skopeo_index = digest
            arches = [m["platform"]["architecture"] for m in held["manifests"]]
            if arches != ["amd64", "arm64"]:
                raise SystemExit(f"skopeo's registry holds {arches}, not amd64 and arm64")
            for entry in held["manifests"]:
                _, manifest = fetch(registry, f"@{entry['digest']}")
                result.skopeo_layers |= {layer["mediaType"] for layer in manifest["layers"]}
        elif digest != result.index:
            raise SystemExit(f"{client}'s registry holds {digest}, not the store's {result.index}")
    shutil.rmtree(workdir, ignore_errors=True)
    first, second = pushes["first"][-1], pushes["second"][-1]
    say(f"  round {round_ + 1} {client:26} first {first.wall:6.3f}s, {first.uploads} uploads, "
        f"{size(first.sent)}; second {second.wall:6.3f}s, {second.uploads} uploads")  # fmt: skip


def measure(repeat: int) -> Result:
    result = Result()
    image(result)
    cli_counts: list[tuple[int, float]] = []
    for round_ in range(repeat):
        shift = round_ % len(CLIENTS)
        for client in CLIENTS[shift:] + CLIENTS[:shift]:
            one_client(client, result, round_, cli_counts)
    cli = result.pushes["buildgraph push"]
    in_order = [p for pair in zip(cli["first"], cli["second"], strict=True) for p in pair]
    for (blobs, mib), push_ in zip(cli_counts, in_order, strict=True):
        if blobs != push_.uploads or abs(mib - push_.sent / MIB) > 0.01:
            raise SystemExit(f"buildgraph push counted {blobs} blobs, {mib} MiB; the registry "
                             f"{push_.uploads} uploads, {push_.sent / MIB:.2f} MiB")  # fmt: skip
    return result


# -- reporting -----------------------------------------------------------------------


def tool_versions() -> str:
    doit_version = sh(f"{shlex.quote(doit_path())} --version").split()[0]
    skopeo = sh("skopeo --version").split()[-1]
    registry = sh(f"{REGISTRY} --version").split()[-1]
    return f"doit {doit_version}, skopeo {skopeo}, docker-registry {registry}"


def report(r: Result, argv: Sequence[str], where: str, repeat: int) -> str:
    def count(client: str, which: str, attribute: str) -> str:
        low, high = r.spread(client, which, attribute)
        return f"{low:.0f}" if low == high else f"{low:.0f}-{high:.0f}"

    def sent(client: str, which: str) -> str:
        low, high = r.spread(client, which, "sent")
        text = size(int(r.median(client, which, "sent")))
        return text if low == high else f"{text} ({size(int(low))}-{size(int(high))})"

    commands = {
        "doit": f"`doit imager PUSH=true REGISTRY=<host> USERNAME={USERNAME}`",
        "buildgraph push": f"`buildgraph push {SOURCE} <host>/{REPOSITORY}:{VARS['TAG']}`",
        "skopeo": f"`{' '.join(SKOPEO)} oci:<store>:{SOURCE} "
        f"docker://<host>/{REPOSITORY}:{VARS['TAG']}`",
        "skopeo --preserve-digests": "the same with `--preserve-digests`",
    }
    rows = [
        "| client | first push (s) | blob uploads | bytes uploaded | requests (HEAD) "
        "| second push (s) | blob uploads | bytes uploaded | requests (HEAD) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for client in CLIENTS:
        rows.append(
            f"| {commands[client]} | {r.median(client, 'first', 'wall'):.3f} "
            f"| {count(client, 'first', 'uploads')} | {sent(client, 'first')} "
            f"| {count(client, 'first', 'requests')} ({count(client, 'first', 'heads')}) "
            f"| {r.median(client, 'second', 'wall'):.3f} "
            f"| {count(client, 'second', 'uploads')} | {sent(client, 'second')} "
            f"| {count(client, 'second', 'requests')} ({count(client, 'second', 'heads')}) |"
        )
    total = sum(r.blobs.values())
    doit_first = r.pushes["doit"]["first"]
    node = statistics.median(p.node for p in doit_first if p.node is not None)
    cli = r.median("buildgraph push", "first", "wall")
    preserved = r.median("skopeo --preserve-digests", "first", "wall")
    plain = r.median("skopeo", "first", "wall")
    ran = sum(r.second_ran)
    second = r.pushes["doit"]["second"]
    second_node = [p.node for p in second if p.node is not None]
    third = r.pushes["doit"]["third"]
    walls = [p.wall for p in doit_first]
    verdicts = [
        f"- the image: an index of 2 manifests (amd64, arm64) naming {len(r.blobs)} distinct "
        f"configs and layers, {size(total)} in all, layers uncompressed; index {r.index[:19]}.",
        f"- first push, `doit imager PUSH=true`: {r.median('doit', 'first', 'wall'):.3f} s "
        f"(rounds {min(walls):.3f}-{max(walls):.3f} s), of which the publish node "
        f"{node:.3f} s (it indexes both arches' archives into the store, then pushes); "
        f"the same push by `buildgraph push`, without doit, {cli:.3f} s (Python's start-up "
        f"and imports included) against skopeo with `--preserve-digests`, which sends the "
        f"same {len(r.blobs)} blobs and {size(total)}, {preserved:.3f} s: "
        f"{cli / preserved:.2f}x.",
        f"- plain skopeo sends other bytes: it gzips the uncompressed layers for the registry "
        f"(layer types there: {', '.join(sorted(r.skopeo_layers))}), so its index is "
        f"{r.skopeo_index[:19]}, not the store's; {size(int(r.median('skopeo', 'first', 'sent')))}"
        f" sent against {size(total)}, in {plain:.3f} s.",
        "- second push, unchanged, against 0 blob uploads expected from every client: "
        + ("met." if all(p.uploads == 0 for c in CLIENTS for p in r.pushes[c]["second"])
           else "**not met** (see the table).")
        + f" The second `doit imager PUSH=true` ran the publish node in {ran} of {repeat} "
        f"rounds" + (f" ({statistics.median(second_node):.3f} s of node): it `HEAD`s every "
                     "blob and `PUT`s the manifests and the tag again, uploading nothing"
                     if second_node else "")
        + f"; a third run is a no-op: {statistics.median(p.wall for p in third):.3f} s, "
        f"{statistics.median(p.requests for p in third):.0f} requests, "
        f"{sum(p.node is not None for p in third)} of {repeat} rounds ran the publish node.",
    ]  # fmt: skip
    if ran:
        verdicts.append(
            "- why the second doit push runs: the publish node's key holds its probe, what "
            "the store and the registry name the image now; before the first push the "
            "registry has none, after it the pushed digest, so the next plan finds no "
            "action-cache entry for the new key and runs the node once more."
        )
    command = " ".join(["python", "bench/push.py", *argv])
    return "\n".join([
        f"Command: `{command}`",
        "",
        f"Machine: {where}.",
        "",
        f"{repeat} round{'s' if repeat > 1 else ''}, medians (counts and bytes are the same in "
        f"every round unless a range is given), `PLATFORM={PLATFORM}`, `USERNAME={USERNAME}`, "
        f"`TAG={VARS['TAG']}`. Set-up, untimed: `doit imager` in a copy of the checkout with "
        f"its own cache, which names the index `{SOURCE}` in the embedded store "
        "(`<store>` = `<cache>/steps/oci`; with `REGISTRY=<host>` the publish node names it "
        f"`<host>/{REPOSITORY}:{VARS['TAG']}` too, the same digest). Each round, each "
        "client pushes to a fresh docker-registry of its own on 127.0.0.1 (plain HTTP), "
        "first into the empty registry, then again unchanged; the clients' order rotates "
        "from round to round. Wall clock of the whole command; blob uploads = `POST "
        ".../blobs/uploads/`, requests and `HEAD`s counted from the registry's access log; "
        "bytes uploaded = sizes, in the registry's storage, of the blobs whose uploads "
        "completed (the log has no request sizes). `doit` runs only the publish node: the "
        "images are cached. skopeo runs as root here, so its blob-info cache "
        "(`/var/lib/containers/cache`) outlives a run; each registry is new, on a new port, "
        "so it knows no blob there.",
        "",
        *rows,
        "",
        *verdicts,
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds, each with fresh registries")
    parser.add_argument("--write", action="store_true", help="put the results in BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    with exclusive():
        PUSH.mkdir(exist_ok=True)
        engine = revision("buildgraph", "targets", "init")
        where = f"{host()}, {tool_versions()}, buildgraph at {engine}"
        clone_checkout(CLONE)
        say(f"warm-up build into {SEED} (downloads the package images the first time)")
        doit(SEED, PLATFORM, *BUILD[1:], targets=BUILD[:1], clone=CLONE)
        fresh_cache(CACHE, "warm", CLONE)
        say(f"untimed doit imager into {CACHE}")
        doit(CACHE, PLATFORM, *BUILD[1:], targets=BUILD[:1], clone=CLONE)
        load = os.getloadavg()[0]
        result = measure(args.repeat)
    where += f"; 1-minute load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    argv = argv if argv is not None else sys.argv[1:]
    section = report(result, argv, where, args.repeat)
    print(section)
    if args.write:
        write_section(*MARKERS, section)


if __name__ == "__main__":
    main()
