"""``buildgraph edit-image IMAGE --partition P OPERATION... --output OUT``: diskimage.edit.

Each --partition starts a group; the operation flags after it (a row each of
edits.OPERATIONS) and --mode/--owner (for the --add or --mkdir just before them) apply
to that partition. Words are read in run(), so a bad one is a BuildgraphError (exit 2)
like every other bad input.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import edits
from .command import add_image
from .output import COMPRESSION_NAMES, FORMATS

HELP = "change files in partitions of a disk image offline and write it as a new image"
EPILOG = """\
Operations run per partition in this order, whatever the order of the flags: remove,
mkdir, tar, add, symlink. Paths are from the root of the partition's filesystem (OEM's
grub.cfg is /grub.cfg). A /usr or verity partition, and any that holds no FAT or ext2/3/4,
is refused. Every time written is SOURCE_DATE_EPOCH, else 1980-01-01."""


class _Partition(argparse.Action):
    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None):
        namespace.groups.append((values, []))


class _Operation(argparse.Action):
    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None):
        if not namespace.groups:
            parser.error(f"{option_string} must follow a --partition")
        namespace.groups[-1][1].append((self.dest, values))


def add_parser(sub: Any) -> None:
    cmd = sub.add_parser(
        "edit-image",
        help=HELP,
        description=HELP,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_image(cmd)
    cmd.add_argument(
        "--partition",
        action=_Partition,
        metavar="N|LABEL",
        help="the partition the operations after it edit: its number or GPT label",
    )
    for row in edits.OPERATIONS:
        cmd.add_argument(row.flag, dest=row.field, action=_Operation, metavar=row.metavar,
                         help=row.help)  # fmt: skip
    cmd.add_argument("--mode", dest="mode", action=_Operation, metavar="OCTAL",
                     help="permission bits of the --add or --mkdir before it")  # fmt: skip
    cmd.add_argument("--owner", dest="owner", action=_Operation, metavar="UID:GID",
                     help="numeric owner of the --add or --mkdir before it")  # fmt: skip
    cmd.add_argument(
        "--output",
        "-o",
        type=Path,
        required=True,
        metavar="OUT",
        help="the image to write (replaced whole, only once it is complete)",
    )
    cmd.add_argument("--format", choices=list(FORMATS), help="default: the input's")
    cmd.add_argument("--compression", choices=COMPRESSION_NAMES,
                     help="default: the input's (none for an uncompressed one)")  # fmt: skip
    cmd.set_defaults(func=run, groups=[])


def run(args: argparse.Namespace) -> int:
    from .edit import edit

    done = edit(
        args.image, edits.from_flags(args.groups), args.output, args.format, args.compression
    )
    form = done.format + ("" if done.compression == "none" else f", {done.compression}")
    print(f"{done.output}: {', '.join(done.partitions)} edited ({form})")
    return 0
