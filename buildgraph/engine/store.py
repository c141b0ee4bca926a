"""The cache: a content-addressed store (CAS) plus an action cache (AC).

Layout under the cache directory (``BUILDGRAPH_CACHE``, else the XDG cache)::

    cas/ab/<digest>     output bytes, read-only, named by their xxh3-128
    ac.sqlite           one row per action key: JSON of its outputs and input components;
                        and the remote cache's entries this machine verified (remote.py)
    tmp/<pid>-<n>/      scratch directories of running steps
    workspaces/<id>/    per-checkout state (see state.py)

Objects are written as a temp file plus rename, and an AC row is committed only after
all the objects it names are in place, so a killed build leaves nothing that looks
valid. The AC is one SQLite database (WAL, one transaction per action) rather than a
file per action: creating an inode costs a quarter of a millisecond on the machines we
build on, as much as the rest of a trivial step's bookkeeping.

Objects are hard-linked into ``_out/`` and into steps' input directories, so a write
through such a link would change the cache. Every object therefore carries a fixed
mtime, which any write replaces: an object whose mtime is not :data:`SEALED` has been
tampered with, and is dropped instead of served. An executable output keeps its mode;
its digest ends in ``-x``, so mode is part of its identity.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BuildgraphError
from .hashing import EXECUTABLE, digest_file

Outputs = dict[str, tuple[str, int]]
"""Output name -> (digest, size)."""

SEALED = 1_000_000_000
"""The mtime (ns) of every object in the CAS; a write through a hard link changes it."""


def default_cache_dir() -> Path:
    explicit = os.environ.get("BUILDGRAPH_CACHE")
    if explicit:
        return Path(explicit).expanduser().absolute()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "buildgraph"


_NAMES = itertools.count()
"""Numbers of a process's temporary names, unique across its Store instances."""
_made: set[str] = set()


def ensure_dir(path: Path) -> None:
    """mkdir -p, remembered per process: cache shards and state directories are made once.

    Not for ``_out/``, which a user may delete while a process runs.
    """
    key = str(path)
    if key not in _made:
        path.mkdir(parents=True, exist_ok=True)
        _made.add(key)


def atomic_write(path: Path, data: bytes) -> None:
    ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _name(err, path, Path(tmp))
        raise


def _name(err: BaseException, path: Path, tmp: Path) -> None:
    """Name ``path`` in an OSError that names no file (a failed write(2)) or its temp file."""
    if isinstance(err, OSError) and err.filename in (None, str(tmp)):
        err.filename = str(path)


@dataclass
class Stats:
    objects: int
    object_bytes: int
    object_disk_bytes: int
    actions: int
    action_bytes: int
    steps_disk_bytes: dict[str, int]
    """On-disk size of each of the steps' own caches (steps/<name>/), which gc leaves."""

    def render(self, root: Path) -> str:
        steps = ", ".join(f"{name} {_size(n)}" for name, n in sorted(self.steps_disk_bytes.items()))
        return (
            f"cache: {root}\n"
            f"objects: {self.objects} ({_size(self.object_bytes)} apparent, "
            f"{_size(self.object_disk_bytes)} on disk)\n"
            f"actions: {self.actions} ({_size(self.action_bytes)})\n"
            f"steps' own caches, not pruned by gc: {steps or 'none'}"
        )


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


def parse_size(text: str) -> int:
    """``5G``, ``500M``, ``10k`` or a byte count."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    cleaned = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        if cleaned and cleaned[-1] in units:
            return int(float(cleaned[:-1]) * units[cleaned[-1]])
        return int(cleaned)
    except ValueError:
        raise ValueError(f"bad size {text!r}: use a number with an optional k, M, G or T") from None


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cas = root / "cas"
        self.tmp = root / "tmp"
        self._db: tuple[int, sqlite3.Connection] | None = None
        self._inherited: list[sqlite3.Connection] = []
        self._spare: tuple[int, Path] | None = None

    # -- objects ---------------------------------------------------------------
    def object_path(self, digest: str) -> Path:
        return self.cas / digest[:2] / digest

    def has_object(self, digest: str) -> bool:
        """True if the object is present and sealed; a tampered one is dropped."""
        path = self.cas / digest[:2] / digest
        try:
            st = os.stat(path)
        except OSError:
            return False
        if st.st_mtime_ns == SEALED:
            return True
        with contextlib.suppress(OSError):
            os.unlink(path)
        return False

    def put_file(self, path: Path) -> tuple[str, int]:
        """Move the regular file ``path`` into the CAS; returns its (digest, size)."""
        st = os.lstat(path)
        digest = digest_file(path) + (EXECUTABLE if st.st_mode & 0o111 else "")
        target = self.object_path(digest)
        if self.has_object(digest):
            path.unlink()
        else:
            ensure_dir(target.parent)
            if st.st_nlink > 1:  # the step linked something in: take a copy of our own
                private = path.with_name(path.name + ".own")
                shutil.copyfile(path, private)
                os.replace(private, path)
            os.chmod(path, 0o555 if digest.endswith(EXECUTABLE) else 0o444)
            os.utime(path, ns=(SEALED, SEALED))
            os.replace(path, target)
        return digest, st.st_size

    def materialize(self, digest: str, dest: Path) -> os.stat_result:
        """Put object ``digest`` at ``dest`` (hard link, else copy), atomically.

        Raises FileNotFoundError when the object is missing or was tampered with.
        """
        if not self.has_object(digest):
            raise FileNotFoundError(f"cache object {digest} is missing")
        dest.parent.mkdir(parents=True, exist_ok=True)  # _out/ is the user's to delete
        source = self.object_path(digest)
        tmp = dest.parent / f".bg-{os.getpid()}-{next(_NAMES)}.tmp"
        try:
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
                os.chmod(tmp, 0o555 if digest.endswith(EXECUTABLE) else 0o444)
                os.utime(tmp, ns=(SEALED, SEALED))
            os.replace(tmp, dest)
        except BaseException as err:
            _name(err, dest, tmp)
            raise
        finally:
            # Still there after a failure, or when dest was this very object already:
            # rename(2) between two links of one file does nothing.
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return dest.stat()

    # -- actions ---------------------------------------------------------------
    def _sql(self, statement: str, args: tuple = ()) -> sqlite3.Cursor:
        """Run one statement on the action cache; a failure is a message, not a traceback."""
        try:
            return self._actions().execute(statement, args)
        except sqlite3.Error as err:
            raise BuildgraphError(
                f"the action cache {self.root / 'ac.sqlite'} failed: {err}",
                hint="check that the cache's disk has space and is writable (BUILDGRAPH_CACHE);"
                " 'database is locked' means another build held it for a minute",
            ) from None

    def close(self) -> None:
        """Close this process's connection, as before doit forks its workers: SQLite's
        locks do not survive a fork, so a child must not use (or close) its parent's."""
        if self._db is not None and self._db[0] == os.getpid():
            self._db[1].close()
        self._db = None

    def _actions(self) -> sqlite3.Connection:
        """This process's connection: one made before doit forks workers is not theirs."""
        if self._db is not None and self._db[0] != os.getpid():
            self._inherited.append(self._db[1])  # closing it here would release the parent's locks
            self._db = None
        if self._db is None:
            ensure_dir(self.root)
            path = self.root / "ac.sqlite"
            try:
                db = sqlite3.connect(path, timeout=60, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                # Checkpoint (and so fsync) every 10,000 pages rather than 1,000: measured
                # here, an action row then costs 50 us instead of 80 us.
                db.execute("PRAGMA wal_autocheckpoint=10000")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS actions (key TEXT PRIMARY KEY,"
                    " entry BLOB NOT NULL, used INTEGER NOT NULL) WITHOUT ROWID"
                )
                db.execute(
                    "CREATE TABLE IF NOT EXISTS remote (key TEXT PRIMARY KEY,"
                    " entry BLOB NOT NULL) WITHOUT ROWID"
                )
                _import_action_files(db, self.root / "ac")
            except sqlite3.Error as err:
                raise BuildgraphError(
                    f"the action cache {path} cannot be used: {err}",
                    hint="point BUILDGRAPH_CACHE at a writable directory, or remove the file",
                ) from None
            self._db = (os.getpid(), db)
        return self._db[1]

    def get_action(self, key: str) -> dict[str, Any] | None:
        """The AC entry for ``key`` if it and every object it names are present."""
        row = self._sql("SELECT entry FROM actions WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            entry = json.loads(row[0])
            outputs = entry["outputs"]
        except (ValueError, TypeError, KeyError):
            return None
        if not isinstance(outputs, dict) or not all(
            self.has_object(digest) for digest, _size in outputs.values()
        ):
            return None
        self.touch_action(key)
        return entry

    def put_action(self, key: str, outputs: Outputs, components: list) -> None:
        entry = {"outputs": outputs, "components": components, "created": int(time.time())}
        self._sql(
            "INSERT OR REPLACE INTO actions VALUES (?, ?, ?)",
            (key, json.dumps(entry, sort_keys=True).encode(), time.time_ns()),
        )

    def touch_action(self, key: str, used_ns: int | None = None) -> None:
        """Mark an entry used now (or at ``used_ns``): gc drops the least recently used."""
        self._sql(
            "UPDATE actions SET used = ? WHERE key = ?",
            (time.time_ns() if used_ns is None else used_ns, key),
        )

    def actions(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every entry, by key order."""
        for key, entry in self._sql("SELECT key, entry FROM actions ORDER BY key"):
            yield key, json.loads(entry)

    def drop_action(self, key: str) -> bool:
        """Remove the AC entry for ``key`` (its objects stay); False if there was none."""
        done = self._sql("DELETE FROM actions WHERE key = ?", (key,))
        return done.rowcount > 0

    def get_remote(self, key: str) -> bytes | None:
        """The verified remote-cache entry kept for ``key`` (see remote.py), if any."""
        row = self._sql("SELECT entry FROM remote WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def put_remote(self, key: str, entry: bytes) -> None:
        self._sql("INSERT OR REPLACE INTO remote VALUES (?, ?)", (key, entry))

    def drop_remote(self, key: str) -> None:
        self._sql("DELETE FROM remote WHERE key = ?", (key,))

    # -- scratch ---------------------------------------------------------------
    @contextlib.contextmanager
    def scratch(self, reuse: bool = True) -> Iterator[Path]:
        """A scratch directory holding nothing but empty ``in/`` and ``out/``.

        With ``reuse``, a process keeps one, emptied after each step, until
        :meth:`drop_scratch`: making and removing three directories per step cost more
        than the rest of a trivial step's bookkeeping. Processes that are ended without
        a word (doit's workers) pass False. Names carry the pid, so that a killed
        build's can be reaped.
        """
        spare, self._spare = self._spare, None
        if spare is None or spare[0] != os.getpid():
            ensure_dir(self.tmp)
            while True:
                path = self.tmp / f"{os.getpid()}-{next(_NAMES)}"
                with contextlib.suppress(FileExistsError):
                    path.mkdir()
                    break
            (path / "in").mkdir()
            (path / "out").mkdir()
        else:
            path = spare[1]
        try:
            yield path
        except BaseException:
            _discard(path)
            raise
        if reuse and _emptied(path):
            self._spare = (os.getpid(), path)
        else:
            _discard(path)

    def drop_scratch(self) -> None:
        """Remove this process's spare scratch directory (at the end of a build)."""
        spare, self._spare = self._spare, None
        if spare is not None and spare[0] == os.getpid():
            _discard(spare[1])

    def reap_scratch(self) -> None:
        """Remove scratch directories whose process is gone (a killed build)."""
        if not self.tmp.is_dir():
            return
        for entry in self.tmp.iterdir():
            pid = entry.name.split("-", 1)[0]
            if pid.isdigit() and not process_alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)

    # -- maintenance -----------------------------------------------------------
    def stats(self) -> Stats:
        objects = object_bytes = disk = actions = action_bytes = 0
        for path in _files(self.cas):
            st = path.stat()
            objects += 1
            object_bytes += st.st_size
            disk += st.st_blocks * 512
        actions, action_bytes = self._sql(
            "SELECT count(*), coalesce(sum(length(entry)), 0) FROM actions"
        ).fetchone()
        steps: dict[str, int] = {}
        if (self.root / "steps").is_dir():
            for cache in (self.root / "steps").iterdir():
                steps[cache.name] = sum(
                    p.lstat().st_blocks * 512 for p in cache.rglob("*") if not p.is_symlink()
                )
        return Stats(objects, object_bytes, disk, actions, action_bytes, steps)

    def gc(self, max_size: int) -> tuple[int, int]:
        """Drop least recently used actions until objects fit in ``max_size`` bytes.

        Returns (actions removed, bytes freed). Objects no remaining action names go too.
        """
        entries = []
        for key, entry in self._sql("SELECT key, entry FROM actions ORDER BY used"):
            try:
                digests = {digest for digest, _size in json.loads(entry)["outputs"].values()}
            except (KeyError, AttributeError, TypeError, ValueError):
                digests = set()
            entries.append((key, digests))
        sizes = {path.name: path.stat().st_blocks * 512 for path in _files(self.cas)}
        refs: dict[str, int] = {}
        for _key, digests in entries:
            for digest in digests:
                refs[digest] = refs.get(digest, 0) + 1
        total = sum(sizes.values())
        removed = freed = 0
        for key, digests in entries:
            if total <= max_size:
                break
            self.drop_action(key)
            removed += 1
            for digest in digests:
                refs[digest] -= 1
                if refs[digest] == 0 and digest in sizes:
                    self.object_path(digest).unlink(missing_ok=True)
                    total -= sizes[digest]
                    freed += sizes.pop(digest)
        for digest in [d for d in sizes if refs.get(d, 0) == 0]:
            self.object_path(digest).unlink(missing_ok=True)
            freed += sizes.pop(digest)
        return removed, freed


def _files(base: Path):
    if base.is_dir():
        for shard in base.iterdir():
            if shard.is_dir():
                yield from (p for p in shard.iterdir() if not p.name.startswith("."))


def _import_action_files(db: sqlite3.Connection, directory: Path) -> None:
    """Take in the file-per-action entries of caches written before the AC was a
    database (``ac/ab/<key>``), so their outputs stay cached; then remove them."""
    if not directory.is_dir():
        return
    with db:
        for path in _files(directory):
            with contextlib.suppress(OSError):
                db.execute(
                    "INSERT OR IGNORE INTO actions VALUES (?, ?, ?)",
                    (path.name, path.read_bytes(), path.stat().st_mtime_ns),
                )
    shutil.rmtree(directory, ignore_errors=True)


def _discard(scratch: Path) -> None:
    """Remove a scratch directory, even when a second Ctrl-C lands while it goes."""
    try:
        shutil.rmtree(scratch, ignore_errors=True)
    except KeyboardInterrupt:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def _emptied(scratch: Path) -> bool:
    """Empty ``in/`` and ``out/`` of ``scratch`` and remove anything else a step left;
    False when that failed and the directory is better removed whole."""
    try:
        for entry in os.scandir(scratch):
            keep = entry.name in ("in", "out") and entry.is_dir(follow_symlinks=False)
            for child in os.scandir(entry.path) if keep else [entry]:
                if child.is_dir(follow_symlinks=False):
                    shutil.rmtree(child.path)
                else:
                    os.unlink(child.path)
        return sorted(os.listdir(scratch)) == ["in", "out"]
    except OSError:
        return False


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
