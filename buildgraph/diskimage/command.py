"""``buildgraph lint-image IMAGE [--json]``: the lint of diskimage.lint, as a command.

One line per finding (or a JSON object with --json), then a summary; the exit status is 1
when a finding is an error, 0 otherwise. Bad input is a BuildgraphError (exit 2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .rules import RULES

HELP = "read a disk image offline and report what would make its instances identical or open"


def add_parser(sub: Any) -> None:
    rules = "\n".join(f"  {rule.id:<16} {rule.severity:<8} {rule.description}" for rule in RULES)
    cmd = sub.add_parser(
        "lint-image",
        help=HELP,
        description=HELP,
        epilog=f"rules:\n{rules}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_image(cmd)
    cmd.add_argument(
        "--json",
        action="store_true",
        help='print {"image": ..., "findings": [...], ...} instead of lines',
    )
    cmd.set_defaults(func=run)


def add_image(cmd: argparse.ArgumentParser) -> None:
    """The IMAGE argument of the image commands."""
    cmd.add_argument(
        "image",
        type=Path,
        metavar="IMAGE",
        help="a GPT disk image: raw, qcow2, vmdk or vhd; compressed or not (xz, bz2, gz, zst)",
    )


def run(args: argparse.Namespace) -> int:
    from .lint import lint

    report = lint(args.image)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print("\n".join(report.lines()))
    return 1 if report.errors else 0
