"""What ``edit-image`` is asked to do to a partition, as data: one record a partition.

The graph gives edits as YAML (``{partition: OEM, add: {src: grub.cfg, dest: /grub.cfg}}``)
and the command line as flags (``--partition OEM --add grub.cfg:/grub.cfg``); both are read
through OPERATIONS, one row an operation: its field of PartitionEdit, its flag, how a word
of the command line becomes an item and which record a mapping becomes. A partition's
operations run in the table's order, whatever the order of the flags: removals first
(so a path can be replaced), then directories, archives, files and links. Paths are
absolute within the partition's filesystem; a relative one is taken from its root.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.errors import BuildgraphError

Owner = tuple[int, int]


@dataclass(frozen=True)
class Add:
    src: Path
    """A regular file on this machine (a symlink is followed)."""
    dest: str
    mode: int | None = None
    """Permission bits; None: the source file's."""
    owner: Owner | None = None
    """(uid, gid); None: the source file's."""


@dataclass(frozen=True)
class Mkdir:
    path: str
    """Made with its missing parents; an existing directory is left as it is."""
    mode: int | None = None
    """None: 0755."""
    owner: Owner | None = None
    """None: 0:0."""


@dataclass(frozen=True)
class Tar:
    archive: Path
    """A tar (compressed or not) of directories, regular files and symlinks."""
    dest: str
    """An existing directory; members keep their modes and owners, and directories that
    already exist keep theirs."""


@dataclass(frozen=True)
class Symlink:
    dest: str
    target: str
    """Stored as given: a link's target is read in the booted system, not here."""


@dataclass(frozen=True)
class PartitionEdit:
    partition: str
    """Its number (``9``) or its GPT label (``ROOT``)."""
    remove: tuple[str, ...] = ()
    """Files, symlinks, or directories with all they hold."""
    mkdir: tuple[Mkdir, ...] = ()
    tar: tuple[Tar, ...] = ()
    add: tuple[Add, ...] = ()
    """An existing file at dest is replaced."""
    symlink: tuple[Symlink, ...] = ()
    """An existing file or symlink at dest is replaced."""

    def operations(self) -> int:
        return sum(len(getattr(self, row.field)) for row in OPERATIONS)


def path(text: str) -> str:
    """``text`` as an absolute, normalized path within a filesystem."""
    if not text or any(char in text for char in "\0\n"):
        raise BuildgraphError(
            f"bad path {text!r} within a partition", hint="give a path such as /etc/hostname"
        )
    if ".." in text.split("/"):
        raise BuildgraphError(
            f"bad path {text!r} within a partition: it has a '..'",
            hint="give the path from the partition's root",
        )
    return posixpath.normpath("/" + text.lstrip("/"))


def mode(text: str | int) -> int:
    """Permission bits from octal text (``0644``, ``644``) or a number."""
    try:
        bits = text if isinstance(text, int) else int(str(text), 8)
    except ValueError:
        bits = -1
    if not 0 <= bits <= 0o7777:
        raise BuildgraphError(f"bad mode {text!r}", hint="give octal permission bits, e.g. 0644")
    return bits


def owner(text: str | Iterable[int]) -> Owner:
    """(uid, gid) from ``UID:GID`` text or a pair of numbers; names are not looked up,
    since this machine's users are not the image's."""
    parts = str(text).split(":") if isinstance(text, str) else list(text)
    try:
        uid, gid = (int(part) for part in parts)
    except (TypeError, ValueError):
        uid = gid = -1
    if not (0 <= uid < 1 << 32 and 0 <= gid < 1 << 32):
        raise BuildgraphError(f"bad owner {text!r}", hint="give numbers as UID:GID, e.g. 0:0")
    return uid, gid


def _pair(flag: str, word: str, metavar: str) -> tuple[str, str]:
    left, colon, right = word.partition(":")
    if not colon or not left or not right:
        raise BuildgraphError(f"{flag} {word!r}: give {metavar}")
    return left, right


def _add(word: str) -> Add:
    src, dest = _pair("--add", word, "SRC:DEST")
    return Add(Path(src), path(dest))


def _tar(word: str) -> Tar:
    archive, dest = _pair("--tar", word, "ARCHIVE:DEST")
    return Tar(Path(archive), path(dest))


def _symlink(word: str) -> Symlink:
    dest, target = _pair("--symlink", word, "DEST:TARGET")
    return Symlink(path(dest), target)


@dataclass(frozen=True)
class Operation:
    field: str
    """Its field of PartitionEdit, and its key in the YAML form."""
    metavar: str
    help: str
    word: Callable[[str], Any]
    """A command-line word (or a string in YAML) to an item."""
    record: type | None
    """What a mapping in YAML becomes; None: strings only."""

    @property
    def flag(self) -> str:
        return f"--{self.field}"


OPERATIONS: tuple[Operation, ...] = (
    Operation("remove", "PATH", "remove a file, a symlink or a directory and all it holds",
              path, None),
    Operation("mkdir", "DIR", "make a directory and its missing parents (0755, 0:0)",
              lambda word: Mkdir(path(word)), Mkdir),
    Operation("tar", "ARCHIVE:DEST", "unpack a tar archive into the directory DEST",
              _tar, Tar),
    Operation("add", "SRC:DEST", "copy the file SRC to DEST, replacing a file there; mode"
              " and owner are SRC's unless --mode/--owner follow", _add, Add),
    Operation("symlink", "DEST:TARGET", "make DEST a symbolic link to TARGET",
              _symlink, Symlink),
)  # fmt: skip

MODIFIERS: dict[str, Callable[[str], Any]] = {"mode": mode, "owner": owner}
"""Flags that set a field of the --add or --mkdir just before them."""

_CONVERT: dict[str, Callable[[Any], Any]] = {
    "src": Path, "archive": Path, "dest": path, "path": path, "target": str,
    **MODIFIERS,
}  # fmt: skip


def modify(item: Any, field: str, word: str) -> Any:
    """``item`` (an Add or a Mkdir) with ``field`` (a MODIFIERS key) set from ``word``."""
    if not isinstance(item, (Add, Mkdir)):
        raise BuildgraphError(f"--{field} must follow an --add or a --mkdir")
    return dataclasses.replace(item, **{field: MODIFIERS[field](word)})


def from_data(records: Iterable[Mapping[str, Any]]) -> list[PartitionEdit]:
    """PartitionEdits from their YAML form: ``partition`` and, per OPERATIONS row, one
    item or a list of them, each a string (the command line's word) or a mapping."""
    return [_record(index, record) for index, record in enumerate(records)]


def _record(index: int, record: Mapping[str, Any]) -> PartitionEdit:
    where = f"edits[{index}]"
    if not isinstance(record, Mapping) or "partition" not in record:
        raise BuildgraphError(f"{where}: give a mapping with a partition (its number or label)")
    rows = {row.field: row for row in OPERATIONS}
    unknown = sorted(set(record) - set(rows) - {"partition"})
    if unknown:
        raise BuildgraphError(
            f"{where}: unknown field {', '.join(unknown)}",
            hint=f"the fields are partition, {', '.join(rows)}",
        )
    fields = {}
    for key, value in record.items():
        if key == "partition":
            continue
        items = value if isinstance(value, list) else [value]
        fields[key] = tuple(_item(f"{where}.{key}", rows[key], item) for item in items)
    return PartitionEdit(str(record["partition"]), **fields)


def _item(where: str, row: Operation, item: Any) -> Any:
    if isinstance(item, str):
        return row.word(item)
    if row.record is None or not isinstance(item, Mapping):
        raise BuildgraphError(f"{where}: give {row.metavar} as a string")
    names = [field.name for field in dataclasses.fields(row.record)]
    required = [field.name for field in dataclasses.fields(row.record)
                if field.default is dataclasses.MISSING]  # fmt: skip
    if set(item) - set(names) or set(required) - set(item):
        raise BuildgraphError(
            f"{where}: {dict(item)!r} does not fit",
            hint=f"give {', '.join(required)} (and optionally"
            f" {', '.join(n for n in names if n not in required) or 'nothing else'})",
        )
    return row.record(**{key: _CONVERT[key](value) for key, value in item.items()})


def from_flags(groups: Iterable[tuple[str, list[tuple[str, str]]]]) -> list[PartitionEdit]:
    """PartitionEdits from the command line: per --partition, its (field, word) pairs in
    the order given, a MODIFIERS field setting the item just before it."""
    found = []
    rows = {row.field: row for row in OPERATIONS}
    for partition, pairs in groups:
        fields: dict[str, list[Any]] = {row.field: [] for row in OPERATIONS}
        last: list[Any] | None = None
        for field, word in pairs:
            if field in MODIFIERS:
                if not last:
                    raise BuildgraphError(f"--{field} must follow an --add or a --mkdir")
                last[-1] = modify(last[-1], field, word)
                continue
            last = fields[field]
            last.append(rows[field].word(word))
        found.append(PartitionEdit(partition, **{k: tuple(v) for k, v in fields.items()}))
    return found
