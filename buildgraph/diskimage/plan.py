"""A partition's edit checked against what the partition holds, as steps for its writer.

Everything an edit can get wrong is found here, before a byte is written: a path to
remove that is not there, a directory that does not exist, a source that is not a file,
a file where a directory must be, a symlink, mode or owner asked of FAT (which keeps
none). The steps are the few a filesystem tool does (rm, rmdir, mkdir, write, symlink),
in order, each with the mode and owner to set; tar members are staged as files first.
"""

from __future__ import annotations

import posixpath
import shutil
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..engine.errors import BuildgraphError
from .edits import OPERATIONS, Add, Mkdir, Owner, PartitionEdit, Symlink, Tar
from .filesystems import Entry

DIR_MODE = 0o755
ROOT_OWNER = (0, 0)
_FAT_FORBIDDEN = set('"*:<>?\\|') | {chr(code) for code in range(32)}


@dataclass(frozen=True)
class Step:
    kind: str
    """rm, rmdir, mkdir, write or symlink."""
    path: str
    src: Path | None = None
    """write: the file on this machine to copy."""
    target: str = ""
    """symlink: what it points to."""
    mode: int | None = None
    """Permission bits to set; None where the filesystem keeps none (FAT)."""
    owner: Owner | None = None
    size: int = 0
    """write: the bytes it adds."""


def plan(
    edit: PartitionEdit,
    ref: str,
    fat: bool,
    entries: Iterable[Entry],
    case_sensitive: bool,
    stage: Path,
) -> list[Step]:
    """The steps of ``edit`` on the partition ``ref`` (a FAT one if ``fat``) that holds
    ``entries``; tar members are staged in the directory ``stage``."""
    planner = _Planner(ref, fat, _Tree(entries, case_sensitive), stage)
    for row in OPERATIONS:
        for item in getattr(edit, row.field):
            getattr(planner, row.field)(item)
    return planner.steps


def too_small(ref: str, steps: list[Step], free: int) -> BuildgraphError:
    needed = sum(step.size for step in steps)
    return BuildgraphError(
        f"{ref} is too small for this edit: the files it writes need {needed} bytes"
        f" and its filesystem has {free} bytes free",
        hint="add less, or grow the partition and its filesystem first;"
        " edit-image changes no partition's size",
    )


class _Tree:
    """What the partition holds, as the steps so far leave it: path -> kind."""

    def __init__(self, entries: Iterable[Entry], case_sensitive: bool) -> None:
        self._key = (lambda path: path) if case_sensitive else str.casefold
        self._kinds: dict[str, tuple[str, str]] = {"/": ("/", "dir")}
        for entry in entries:
            self.set(entry.path, entry.kind)

    def kind(self, path: str) -> str | None:
        found = self._kinds.get(self._key(path))
        return found[1] if found else None

    def stored(self, path: str) -> str:
        """``path`` spelled as the filesystem holds it (FAT: in its own case)."""
        return self._kinds[self._key(path)][0]

    def set(self, path: str, kind: str | None) -> None:
        if kind is None:
            del self._kinds[self._key(path)]
        else:
            self._kinds[self._key(path)] = (path, kind)

    def below(self, path: str) -> list[tuple[str, str]]:
        """(path, kind) of everything inside the directory ``path``, deepest first."""
        prefix = self._key(path).rstrip("/") + "/"
        inside = [found for key, found in self._kinds.items() if key.startswith(prefix)]
        return sorted(inside, key=lambda found: -found[0].count("/"))


class _Planner:
    def __init__(self, ref: str, fat: bool, tree: _Tree, stage: Path) -> None:
        self.ref, self.fat, self.tree, self.stage = ref, fat, tree, stage
        self.steps: list[Step] = []

    def _error(self, what: str, why: str, hint: str | None = None) -> BuildgraphError:
        return BuildgraphError(f"{self.ref}: {what}: {why}", hint)

    def remove(self, path: str) -> None:
        kind = self.tree.kind(path)
        if kind is None or path == "/":
            raise self._error(
                f"--remove {path}",
                "no such file or directory" if kind is None else "the root cannot be removed",
                hint="paths are from the root of the partition's filesystem (OEM's"
                " grub.cfg is /grub.cfg); `buildgraph lint-image` reads what it holds",
            )
        if kind == "dir":
            for inside, inside_kind in self.tree.below(path):
                self._unlink(inside, inside_kind)
        self._unlink(path, kind)

    def mkdir(self, item: Mkdir) -> None:
        self._modes(f"--mkdir {item.path}", item.mode, item.owner)
        self._dirs(f"--mkdir {item.path}", item.path, item.mode, item.owner)

    def add(self, item: Add) -> None:
        what = f"--add {item.src}:{item.dest}"
        self._modes(what, item.mode, item.owner)
        if not item.src.is_file():
            why = "no such file" if not item.src.exists() else "not a regular file"
            raise BuildgraphError(f"{what}: {item.src}: {why}", hint="give a file to copy")
        held = item.src.stat()
        self._place(what, item.dest)
        self._create(
            Step(
                "write",
                item.dest,
                src=item.src,
                mode=stat.S_IMODE(held.st_mode) if item.mode is None else item.mode,
                owner=(held.st_uid, held.st_gid) if item.owner is None else item.owner,
                size=held.st_size,
            ),
            "file",
        )

    def symlink(self, item: Symlink) -> None:
        what = f"--symlink {item.dest}:{item.target}"
        if self.fat:
            raise self._error(what, "FAT keeps no symbolic links", hint="copy the file instead")
        self._place(what, item.dest)
        self._create(Step("symlink", item.dest, target=item.target, owner=ROOT_OWNER), "symlink")

    def tar(self, item: Tar) -> None:
        what = f"--tar {item.archive}:{item.dest}"
        if self.tree.kind(item.dest) != "dir":
            raise self._error(
                what, f"{item.dest} is not a directory", f"make it with --mkdir {item.dest}"
            )
        try:
            archive = tarfile.open(item.archive)  # noqa: SIM115 (the with below closes it)
        except OSError as err:
            raise BuildgraphError(f"{what}: cannot read {item.archive}: {err.strerror}") from None
        except tarfile.TarError:
            raise BuildgraphError(
                f"{what}: {item.archive} is not a tar archive (plain, gz, bz2 or xz)"
            ) from None
        with archive:
            for number, member in enumerate(archive):
                self._member(f"{what}: member {member.name!r}", item.dest, archive, member, number)

    def _member(
        self, what: str, dest: str, archive: tarfile.TarFile, member: tarfile.TarInfo, number: int
    ) -> None:
        name = posixpath.normpath("/" + member.name.lstrip("/"))
        if ".." in member.name.split("/"):
            raise BuildgraphError(f"{what}: it would unpack outside {dest}")
        if name == "/":
            return  # "./": the destination itself, which exists
        path = posixpath.join(dest, name[1:])
        mode = None if self.fat else stat.S_IMODE(member.mode)
        owner = None if self.fat else (member.uid, member.gid)
        self._dirs(what, posixpath.dirname(path))
        if member.isdir():
            kind = self.tree.kind(path)
            if kind is None:
                self._create(Step("mkdir", path, mode=mode, owner=owner), "dir")
            elif kind != "dir":
                raise self._error(what, f"a {kind} stands where its directory {path} goes")
        elif member.isreg():
            staged = self.stage / str(number)
            source = archive.extractfile(member)
            assert source is not None  # a regular member always has a reader
            with source, open(staged, "wb") as out:
                shutil.copyfileobj(source, out)
            self._place(what, path)
            self._create(
                Step("write", path, src=staged, mode=mode, owner=owner, size=member.size), "file"
            )
        elif member.issym() and not self.fat:
            self._place(what, path)
            self._create(Step("symlink", path, target=member.linkname, owner=owner), "symlink")
        else:
            raise BuildgraphError(
                f"{what}: only directories, regular files and (not on FAT) symlinks unpack",
                hint="hard links can be stored as files with `tar --hard-dereference`",
            )

    def _modes(self, what: str, mode: int | None, owner: Owner | None) -> None:
        if self.fat and (mode is not None or owner is not None):
            raise self._error(what, "FAT keeps no modes or owners", hint="drop --mode and --owner")

    def _dirs(self, what: str, path: str, mode: int | None = None, owner: Owner | None = None):
        """Make the directory ``path`` and its missing parents; ``mode`` and ``owner`` are
        for ``path`` itself, its parents get 0755 and 0:0."""
        parts = [part for part in path.split("/") if part]
        for depth in range(1, len(parts) + 1):
            sub = "/" + "/".join(parts[:depth])
            kind = self.tree.kind(sub)
            if kind == "dir":
                continue
            if kind is not None:
                raise self._error(what, f"{sub} is a {kind}, not a directory")
            last = depth == len(parts)
            self._create(
                Step(
                    "mkdir",
                    sub,
                    mode=None if self.fat else (mode if last and mode is not None else DIR_MODE),
                    owner=None if self.fat else (owner if last and owner else ROOT_OWNER),
                ),
                "dir",
            )

    def _place(self, what: str, path: str) -> None:
        """Check that ``path`` can be made: its directory exists, and only a file or a
        symlink (which goes first) stands there."""
        parent = posixpath.dirname(path)
        held = self.tree.kind(parent)
        if held is None:
            raise self._error(
                what,
                f"its directory {parent} does not exist in the partition",
                hint=f"make it first with --mkdir {parent}",
            )
        if held != "dir":
            raise self._error(what, f"{parent} is a {held}, not a directory")
        kind = self.tree.kind(path)
        if kind == "dir" or path == "/":
            raise self._error(
                what,
                f"{path} is a directory",
                hint="give the full path of the file to make, or --remove the directory first",
            )
        if kind is not None:
            self._unlink(path, kind)

    def _unlink(self, path: str, kind: str) -> None:
        self.steps.append(Step("rmdir" if kind == "dir" else "rm", self.tree.stored(path)))
        self.tree.set(path, None)

    def _create(self, step: Step, kind: str) -> None:
        name = posixpath.basename(step.path)
        if self.fat and (set(name) & _FAT_FORBIDDEN or name.endswith((" ", "."))):
            raise self._error(
                step.path,
                "FAT cannot hold that name",
                hint='leave out "*:<>?\\| and a trailing dot',
            )
        self.steps.append(step)
        self.tree.set(step.path, kind)
