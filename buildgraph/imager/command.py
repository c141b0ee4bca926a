"""``buildgraph imager PROFILE [flags]``: Talos' imager as a front end of this graph.

It resolves a profile (see :mod:`.profile`), prints it, builds the asset's target with
the variables the profile sets, on the same graph and cache as ``doit`` (so a run whose
inputs equal a doit build's is a cache hit), and prints where the asset is.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from .. import remote, variables
from ..engine.errors import BuildgraphError
from ..engine.yamlsrc import load
from . import flags
from .profile import (
    KINDS,
    ProfileError,
    apply_flags,
    base_profile,
    build_request,
    check,
    ordered,
)

HELP = "build a boot asset from a profile and customizations, like Talos' imager"


def add_parser(sub: Any) -> None:
    cmd = sub.add_parser("imager", help=HELP, description=HELP)
    cmd.add_argument("profile", metavar="PROFILE",
                     help="iso, installer, a platform profile (metal, aws, ...), or - for a"
                     " profile YAML on stdin")  # fmt: skip
    cmd.add_argument("--arch", choices=variables.ARCHES, help="default: the host's arch")
    cmd.add_argument("--platform", help="the platform whose command line is used")
    cmd.add_argument("--output", type=Path, help="directory to copy the asset to (default: _out)")
    cmd.add_argument("--output-kind", choices=KINDS, help="build this kind of asset instead")
    cmd.add_argument(
        "--secureboot-keys",
        type=Path,
        metavar="DIR",
        help="the Secure Boot keys a secureboot profile signs with (SECUREBOOT_KEYS;"
        " `buildgraph secureboot keys DIR` makes a set)",
    )
    flags.add_to(cmd)
    remote.add_flag(cmd)
    cmd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.session import Session

    remote.apply_flag(args)
    root = Path(args.root).resolve()
    platforms = load_platforms(root)
    profile = _resolve(args, platforms)
    print("profile ready:")
    print(yaml.safe_dump(ordered(profile), sort_keys=False, default_flow_style=False), end="")
    base = args.profile if args.profile in platforms else None
    request = build_request(profile, platforms, base)
    if args.secureboot_keys is not None:
        request.variables["SECUREBOOT_KEYS"] = str(args.secureboot_keys)
    goal = [request.target] + ([request.cmdline_target] if request.cmdline_target else [])
    session = Session(root, dict.fromkeys(goal), request.variables, out=args.out)
    session.build()
    if request.cmdline_target:
        line = _outputs(session, request.cmdline_target)[0].read_text().strip()
        print(f"kernel command line: {line}")
    (asset,) = _outputs(session, request.target)
    if args.output is not None:
        asset = _copy_out(asset, args.output)
    print(f"output asset path: {asset}")
    return 0


def _copy_out(asset: Path, directory: Path) -> Path:
    """Copy the asset into ``directory`` atomically: a whole file or none."""
    dest = directory / asset.name
    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(asset, tmp)
        os.replace(tmp, dest)
    except OSError as err:
        if tmp.parent.is_dir():
            tmp.unlink(missing_ok=True)
        raise BuildgraphError(
            f"--output {directory}: cannot copy {asset.name} there: {err.strerror}",
            hint=f"give a directory you can write to; the asset is at {asset}",
        ) from None
    return dest


def _outputs(session: Any, target: str) -> list[Path]:
    (label,) = session.asked[target]
    return [session.out / name for name in session.by_label[label].outputs]


def load_platforms(root: Path) -> dict[str, dict]:
    directory = root / "targets" / "profiles"
    if not directory.is_dir():
        raise BuildgraphError(f"{directory} does not exist", hint="run the imager in the repo")
    return {path.stem: load(path) for path in sorted(directory.glob("*.yaml"))}


def _resolve(args: argparse.Namespace, platforms: dict[str, dict]) -> dict[str, Any]:
    """The base profile with the flags applied, checked."""
    host = variables.host_arch()
    if args.profile == "-":
        try:
            profile = yaml.safe_load(sys.stdin.read())
        except yaml.YAMLError as err:
            raise ProfileError(f"the profile on stdin is not YAML: {err}") from None
        check(profile)
        profile.setdefault("arch", host)
    else:
        profile = base_profile(args.profile, platforms, host)
    if args.arch:
        profile["arch"] = args.arch
    if args.platform:
        profile["platform"] = args.platform
    if args.output_kind:
        profile.setdefault("output", {})["kind"] = args.output_kind
        if args.output_kind != "image":
            for field in ("outFormat", "imageOptions"):
                profile["output"].pop(field, None)
    try:
        given = flags.to_variables(args)
    except ValueError as err:
        raise ProfileError(str(err)) from None
    apply_flags(profile, given)
    check(profile)
    return profile
