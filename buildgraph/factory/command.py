"""``buildgraph factory serve``: the Image Factory on this checkout's graph and cache.

It serves the checkout's build as the version ``TAG``, on the same cache as ``doit`` and
the imager: an asset it builds is the imager's node for the same inputs, a cache hit when
either built it before.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..engine.errors import BuildgraphError

HELP = "serve schematics and build boot assets on demand, like Talos' Image Factory"
KEEP_ALIVE_SECONDS = 5


def add_parser(sub: Any) -> None:
    factory = sub.add_parser("factory", help=HELP, description=HELP)
    actions = factory.add_subparsers(required=True, metavar="ACTION")
    serve = actions.add_parser("serve", help="run the service", description=HELP)
    serve.add_argument(
        "--listen",
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="address to listen on (default: 127.0.0.1:8080)",
    )
    serve.add_argument(
        "--max-builds",
        type=int,
        default=2,
        metavar="N",
        help="builds at once (default: 2); more wait",
    )
    serve.add_argument(
        "--max-waiting",
        type=int,
        default=32,
        metavar="N",
        help="builds that may wait for a slot before requests get 503 (default: 32)",
    )
    serve.add_argument(
        "--schematic-token",
        metavar="TOKEN",
        help="require this bearer token to create schematics (reads stay public)",
    )
    serve.add_argument(
        "--secureboot-keys",
        type=Path,
        metavar="DIR",
        help="the Secure Boot keys secure boot assets are signed with",
    )
    serve.add_argument("--external-url", metavar="URL",
                       help="the URL clients reach the factory at, for PXE scripts"
                       " (default: the request's)")  # fmt: skip
    serve.add_argument("--schematic-registry", metavar="REGISTRY/USER",
                       help="also keep schematics in REGISTRY/USER/schematics, shared by"
                       " every factory that names it")  # fmt: skip
    releases = serve.add_mutually_exclusive_group()
    releases.add_argument(
        "--versions-from",
        metavar="REGISTRY/USER",
        help="serve every tag of REGISTRY/USER/imager as a released version",
    )
    releases.add_argument("--versions", type=Path, metavar="FILE",
                          help="serve the released versions FILE lists"
                          " (versions: [{version, registry: REGISTRY/USER}])")  # fmt: skip
    serve.set_defaults(func=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    import uvicorn

    from ..engine.session import Session
    from ..engine.store import default_cache_dir
    from ..imager.command import load_platforms
    from ..secureboot import check
    from . import schematic
    from .app import Factory, create_app
    from .builds import Builder
    from .store import RegistrySchematics, SchematicStore
    from .versions import Version, Versions, from_file, from_registry

    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        raise BuildgraphError(f"--listen {args.listen!r}: give HOST:PORT, e.g. 127.0.0.1:8080")
    if args.max_builds < 1 or args.max_waiting < 0:
        raise BuildgraphError("--max-builds must be at least 1 and --max-waiting not negative")
    root = Path(args.root).resolve()
    keys = args.secureboot_keys.resolve() if args.secureboot_keys else None
    if keys is not None:
        check(keys)
    values = Session(root, [], {}).values
    version = Version(values["TAG"], f"{values['IMAGE_REGISTRY']}/{values['USERNAME']}")
    released = (from_registry(args.versions_from) if args.versions_from
                else from_file(args.versions) if args.versions else [])  # fmt: skip
    state = default_cache_dir() / "factory"
    remote = RegistrySchematics(args.schematic_registry) if args.schematic_registry else None
    store = SchematicStore(state / "schematics", remote)
    store.put(schematic.EMPTY)
    factory = Factory(
        root=root,
        store=store,
        builder=Builder(root, state, args.max_builds, args.max_waiting),
        versions=Versions(version, released),
        platforms=load_platforms(root),
        extension_dir=state / "extensions",
        keys=keys,
        token=args.schematic_token,
        external_url=args.external_url,
    )
    names = ", ".join(factory.versions.names())
    print(f"factory: serving versions {names} on http://{host}:{port}", flush=True)
    uvicorn.run(create_app(factory), host=host, port=int(port), log_level="warning",
                timeout_keep_alive=KEEP_ALIVE_SECONDS)  # fmt: skip
    return 0
