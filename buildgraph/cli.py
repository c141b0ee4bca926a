"""The ``buildgraph`` console command: the tools around a build.

``explain`` and ``graph`` answer questions about a goal, ``build`` runs one without
doit, ``cache`` inspects and prunes the cache, ``vars`` prints the variables table,
``pins refresh`` re-pins the Debian packages that package images are made of,
``push`` sends an image from the embedded store to a registry, ``imager`` builds a
customized boot asset from a profile (buildgraph/imager/), ``secureboot keys`` makes a
set of Secure Boot keys, ``lint-image`` checks a disk image for first-boot state and
``edit-image`` changes files in its partitions (buildgraph/diskimage/).
Arguments of the form NAME=value are build variables, as with doit.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import debian, plugin, remote
from .engine import cluster, log, variables
from .engine.errors import BuildgraphError, report
from .engine.session import Session
from .engine.store import Store, default_cache_dir, parse_size


def main(argv: Sequence[str] | None = None) -> int:
    plugin.install()
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe is said here, not by Python at exit
        return code
    except (BuildgraphError, OSError, KeyboardInterrupt) as err:
        return report(err, default_cache_dir(), out_dir(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="buildgraph", description=__doc__.splitlines()[0])
    parser.add_argument("-C", dest="root", default=".", help="repository root (default: .)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="place outputs in DIR, a workspace of its own (default: ROOT/_out)")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def goal_command(name: str, func, help_text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument("args", nargs="*", metavar="TARGET|NAME=value")
        cmd.set_defaults(func=func)
        return cmd

    goal_command("explain", _explain, "say for each node of a goal: cached, or why it would run")
    graph = goal_command("graph", _graph, "print the DAG of a goal as DOT (or a tree with --text)")
    graph.add_argument("--text", action="store_true", help="plain text tree instead of DOT")
    build = goal_command("build", _build, "build a goal in this process, without doit")
    remote.add_flag(build)
    build.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="run the nodes that must run on this Dask scheduler's workers"
                       " (BUILDGRAPH_SCHEDULER)")  # fmt: skip
    goal_command(
        "vars",
        _vars,
        "print the variables (of TARGETs: those they read), their values and where they come from",
    )

    cache = sub.add_parser("cache", help="inspect or prune the cache")
    cache_sub = cache.add_subparsers(required=True, metavar="ACTION")
    stats = cache_sub.add_parser("stats", help="sizes and counts")
    stats.set_defaults(func=_cache_stats)
    gc = cache_sub.add_parser("gc", help="drop least recently used entries down to a size")
    gc.add_argument("--max-size", required=True, help="e.g. 5G, 500M")
    gc.set_defaults(func=_cache_gc)
    push_cache = cache_sub.add_parser(
        "push", help="upload what the local cache holds for a goal to the remote cache"
    )
    push_cache.add_argument("args", nargs="*", metavar="TARGET|NAME=value")
    remote.add_flag(push_cache)
    push_cache.set_defaults(func=_cache_push)
    prune = cache_sub.add_parser(
        "prune-remote", help="delete remote cache entries older than an age, e.g. 30d"
    )
    prune.add_argument("--older-than", required=True, help="an age: 30d, 12h, 90m")
    remote.add_flag(prune)
    prune.set_defaults(func=_cache_prune_remote)
    keygen = cache_sub.add_parser(
        "keygen", help="make an ed25519 key for signing remote cache entries; print its public key"
    )
    keygen.add_argument("path", type=Path, metavar="FILE", help="the private key file to create")
    keygen.set_defaults(func=_cache_keygen)

    pins = sub.add_parser("pins", help="the Debian packages pinned in targets/")
    pins_sub = pins.add_subparsers(required=True, metavar="ACTION")
    refresh = pins_sub.add_parser(
        "refresh", help=f"re-pin {debian.LOCK_FILE} to the versions the Debian archive has now"
    )
    refresh.set_defaults(func=_pins_refresh)

    push_help = "push an image from the embedded store to a registry"
    push = sub.add_parser("push", help=push_help, description=push_help)
    push.add_argument(
        "source", metavar="SOURCE", help="its name in the embedded store, e.g. local/pkgs/kernel"
    )
    push.add_argument(
        "dest", metavar="DEST", help="a registry reference, e.g. 127.0.0.1:5005/me/kernel:v1"
    )
    push.set_defaults(func=_push)

    secureboot = sub.add_parser("secureboot", help="Secure Boot keys")
    secureboot_sub = secureboot.add_subparsers(required=True, metavar="ACTION")
    keys_help = (
        "make a new set of Secure Boot keys in DIR: the UKI signing pair, PK/KEK/db"
        " certificates and their signed .auth variables (for SECUREBOOT_KEYS=DIR)"
    )
    keys = secureboot_sub.add_parser("keys", help=keys_help, description=keys_help)
    keys.add_argument("directory", type=Path, metavar="DIR", help="a new or empty directory")
    keys.add_argument("--name", default="buildgraph", help="common name prefix of the certificates")
    keys.set_defaults(func=_secureboot_keys)

    from .diskimage.command import add_parser as add_lint_image
    from .diskimage.edit_command import add_parser as add_edit_image
    from .factory.command import add_parser as add_factory
    from .imager.command import add_parser as add_imager

    add_imager(sub)
    add_factory(sub)
    add_lint_image(sub)
    add_edit_image(sub)
    return parser


def _split(args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    goal, assigned = [], {}
    for arg in args:
        if "=" in arg and not arg.startswith("-"):
            name, value = arg.split("=", 1)
            assigned[name] = value
        else:
            goal.append(arg)
    return goal, assigned


def out_dir(args: argparse.Namespace) -> Path:
    """Where outputs are placed: --out, else the repository's _out/."""
    return args.out.resolve() if args.out else Path(args.root).resolve() / "_out"


def _session(args: argparse.Namespace) -> Session:
    goal, assigned = _split(args.args)
    return Session(Path(args.root), goal, assigned, out=args.out)


def _explain(args: argparse.Namespace) -> int:
    from .engine.explain import explain

    for line in explain(_session(args)):
        print(line)
    return 0


def _graph(args: argparse.Namespace) -> int:
    session = _session(args)
    if args.text:
        for label in session.goal:
            _tree(session, label, "", True, True)
        return 0
    print("digraph buildgraph {")
    print("  rankdir=BT;")
    for node in session.nodes:
        shape = "box" if node.label in session.goal else "ellipse"
        print(f'  "{node.label}" [shape={shape}, tooltip="{node.doc}"];')
        for dep in node.deps:
            print(f'  "{node.label}" -> "{dep}";')
    print("}")
    return 0


def _tree(session: Session, label: str, prefix: str, last: bool, top: bool) -> None:
    print(label if top else f"{prefix}{'└── ' if last else '├── '}{label}")
    deps = session.by_label[label].deps
    child_prefix = "" if top else prefix + ("    " if last else "│   ")
    for index, dep in enumerate(deps):
        _tree(session, dep, child_prefix, index == len(deps) - 1, False)


def _build(args: argparse.Namespace) -> int:
    remote.apply_flag(args)
    started = time.monotonic()
    goal, assigned = _split(args.args)
    if args.scheduler:
        assigned["BUILDGRAPH_SCHEDULER"] = args.scheduler
    on, assigned = cluster.split(assigned, os.environ)
    session = Session(Path(args.root), goal, assigned, out=args.out)
    log.summary(session, session.build(on), started)
    return 0


def _vars(args: argparse.Namespace) -> int:
    from .engine.specs import load_specs

    goal, assigned = _split(args.args)
    root = Path(args.root).resolve()
    specs = load_specs(root) if (root / "targets").is_dir() else None
    values = variables.resolve(
        assigned,
        os.environ,
        root,
        specs.variables if specs else {},
        specs.packages if specs else frozenset(),
    )
    names = variables.known_names(specs.packages if specs else frozenset())
    if goal:  # only what the goal's nodes read, and PLATFORM where it fans them out
        nodes = Session(root, goal, assigned).nodes
        read = {name for node in nodes for name in node.vars}
        if any(node.arch for node in nodes):
            read.add(variables.fanning())
        names = [name for name in names if name in read]
    width = max(map(len, names), default=0)
    for name in names:
        row = variables.lookup(name, values.packages)
        assert row is not None
        print(f"{name:<{width}} {values[name]:<28} ({values.origin(name)}) {row.help}")
    return 0


def _secureboot_keys(args: argparse.Namespace) -> int:
    from . import secureboot

    for path in secureboot.generate(args.directory, args.name):
        file = next(f for f in secureboot.FILES if f.name == path.name)
        print(f"{path}  {file.what}")
    print(
        f"build with SECUREBOOT_KEYS={args.directory}; keep PK.key and KEK.key offline:"
        " no build reads them"
    )
    return 0


def _cache_stats(_args: argparse.Namespace) -> int:
    store = Store(default_cache_dir())
    print(store.stats().render(store.root))
    return 0


def _cache_gc(args: argparse.Namespace) -> int:
    try:
        limit = parse_size(args.max_size)
    except ValueError as err:
        raise BuildgraphError(str(err), hint="e.g. --max-size 5G") from None
    store = Store(default_cache_dir())
    removed, freed = store.gc(limit)
    print(f"removed {removed} actions, freed {freed} bytes")
    print(store.stats().render(store.root))
    return 0


def _cache_push(args: argparse.Namespace) -> int:
    remote.apply_flag(args)
    session = _session(args)
    sent, present = session.push_remote()
    for label in sent:
        print(f"pushed  {label}")
    assert session.remote is not None
    print(f"{len(sent)} entries pushed, {len(present)} already in {session.remote.where}")
    return 0


def _cache_prune_remote(args: argparse.Namespace) -> int:
    remote.apply_flag(args)
    try:
        age = parse_age(args.older_than)
    except ValueError as err:
        raise BuildgraphError(str(err), hint="e.g. --older-than 30d") from None
    found = remote.from_environment(os.environ)
    if not isinstance(found, remote.Remote):
        raise BuildgraphError(
            "no remote cache is configured",
            hint="set BUILDGRAPH_REMOTE_CACHE=<registry>/<repository>, or pass --remote-cache",
        )
    cache = found.registry()
    cutoff = time.time() - age
    old = [(tag, digest) for tag, digest, created in cache.entries() if created < cutoff]
    for tag, digest in old:
        cache.delete(digest)
        print(f"deleted {tag} ({digest})")
    print(f"{len(old)} entries older than {args.older_than} deleted from {found.where}")
    return 0


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s``: seconds."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    cleaned = text.strip().lower()
    try:
        if cleaned and cleaned[-1] in units:
            return float(cleaned[:-1]) * units[cleaned[-1]]
        return float(cleaned)
    except ValueError:
        raise ValueError(f"bad age {text!r}: use a number with d, h, m or s") from None


def _cache_keygen(args: argparse.Namespace) -> int:
    from .remote.entry import keygen, public_text

    public = keygen(args.path)
    print(f"private key: {args.path} (keep it secret: it lets a writer sign cache entries)")
    print(f"public key:  {public_text(public)}")
    print("readers trust it with BUILDGRAPH_REMOTE_CACHE_TRUST=<public key>")
    return 0


def _pins_refresh(args: argparse.Namespace) -> int:
    lock = Path(args.root) / debian.LOCK_FILE
    changes = debian.refresh(lock, default_cache_dir() / "steps" / "apt")
    print("\n".join(changes) if changes else f"{lock}: every pin is current")
    return 0


def _push(args: argparse.Namespace) -> int:
    from .oci.layout import Layout
    from .oci.push import push
    from .oci.reference import parse

    try:
        dest = parse(args.dest)
    except ValueError as err:
        raise BuildgraphError(
            f"push destination: {err}", hint="give DEST as registry/repository[:tag]"
        ) from None
    # Where package images and built images are stored (the steps' cache, as a build has it).
    layout = Layout(default_cache_dir() / "steps" / "oci")
    print(push(layout, args.source, dest).summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
