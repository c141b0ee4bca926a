"""Pinned Debian packages for any arch, without root.

Each arch gets a private apt state (package lists and apt's own cache) under a directory
the caller owns, so an amd64 host can download arm64 packages from the archive it already
trusts: ``apt-get update`` with that state, then ``apt-get download NAME=VERSION``. apt
checks the archive's signatures; we check the sha256 recorded in the lock file as well,
so a pin means the same bytes on every machine.

The lock file (``targets/packages.lock.json``) maps each package image to the Debian
packages it is made of, per arch. ``refresh`` re-pins it to what the archive offers now.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .engine.errors import BuildgraphError

LOCK_FILE = "targets/packages.lock.json"
DEB_ARCH = {"amd64": "amd64", "arm64": "arm64"}


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    sha256: str
    track: str = ""
    """A metapackage whose current dependency ``refresh`` follows (e.g. the cloud kernel)."""

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


def load_lock(path: Path) -> dict[str, dict[str, list[Pin]]]:
    """package image name -> arch -> its Debian packages."""
    try:
        data = json.loads(path.read_text())
        return {
            image: {arch: [_pin(pin) for pin in pins] for arch, pins in arches.items()}
            for image, arches in data["packages"].items()
        }
    except FileNotFoundError:
        raise BuildgraphError(
            f"package lock file {path} is missing",
            hint="restore it from git, or write it with: buildgraph pins refresh",
        ) from None
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise BuildgraphError(
            f"package lock file {path} is malformed: {err}",
            hint="restore it from git, or rewrite it with: buildgraph pins refresh",
        ) from None


def _pin(entry: dict) -> Pin:
    pin = Pin(**entry)
    if not all(isinstance(value, str) for value in (pin.name, pin.version, pin.track)):
        raise ValueError(f"{entry}: name, version and track must be strings")
    if not pin.name or not pin.version:
        raise ValueError(f"{entry}: name and version must not be empty")
    if len(pin.sha256) != 64 or set(pin.sha256) - set("0123456789abcdef"):
        raise ValueError(f"{pin.name}: sha256 must be 64 lowercase hex digits")
    return pin


def pins_for(lock: Path, image: str, arch: str) -> list[Pin]:
    pins = load_lock(lock).get(image, {}).get(arch)
    if not pins:
        raise BuildgraphError(
            f"no Debian packages are pinned for package image {image!r} on {arch}",
            hint=f"add them to {lock.name}, or set PKG_{image.upper()} to an image reference",
        )
    return pins


def pins_digest(pins: Sequence[Pin]) -> str:
    return hashlib.sha256("".join(pin.digest() for pin in pins).encode()).hexdigest()


class Apt:
    """apt-get and apt-cache with a private state for one arch."""

    def __init__(self, state_dir: Path, arch: str) -> None:
        self.dir = state_dir / DEB_ARCH[arch]
        self.arch = DEB_ARCH[arch]
        if shutil.which("apt-get") is None:
            raise BuildgraphError(
                "apt-get is not installed: Debian packages cannot be downloaded",
                hint="run on Debian, or set PKG_<NAME> to images in a registry",
            )

    def _options(self) -> list[str]:
        return [
            "-o", f"APT::Architecture={self.arch}",
            "-o", f"APT::Architectures={self.arch}",
            "-o", f"Dir::State::Lists={self.dir / 'lists'}",
            "-o", f"Dir::Cache={self.dir / 'cache'}",
            "-o", "Dir::State::Status=/dev/null",
            "-o", "Debug::NoLocking=1",
            "-o", f"APT::Sandbox::User={getpass.getuser()}",
            "-qq",
        ]  # fmt: skip

    def _run(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(
            [tool, *self._options(), *args], capture_output=True, text=True, cwd=cwd, check=False
        )
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise BuildgraphError(
                f"{tool} {' '.join(args)} ({self.arch}) failed:\n{tail}",
                hint="check that the Debian archive in /etc/apt/sources.list is reachable",
            )
        return done.stdout

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One apt process at a time per arch: they share the lists and apt's cache."""
        (self.dir / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (self.dir / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        with open(self.dir / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def update(self) -> None:
        """Fetch the package lists."""
        with self._locked():
            self._update()

    def _update(self) -> None:
        self._run("apt-get", "update")
        (self.dir / "updated").touch()

    def download(self, pin: Pin, dest: Path) -> Path:
        """The .deb of ``pin`` in ``dest``, its sha256 checked against the pin."""
        with self._locked():
            self._download(pin, dest)
        return self._checked(pin, dest)

    def _download(self, pin: Pin, dest: Path) -> None:
        if not (self.dir / "updated").exists():
            self._update()
        try:
            self._run("apt-get", "download", f"{pin.name}={pin.version}", cwd=dest)
        except BuildgraphError:
            self._update()  # the lists may predate the pin
            try:
                self._run("apt-get", "download", f"{pin.name}={pin.version}", cwd=dest)
            except BuildgraphError as err:
                raise BuildgraphError(
                    f"Debian package {pin.name}={pin.version} ({self.arch}) cannot be"
                    f" downloaded: {err.message}",
                    hint="the archive may have dropped that version: re-pin with"
                    " `buildgraph pins refresh`",
                ) from None

    def _checked(self, pin: Pin, dest: Path) -> Path:
        debs = [p for p in dest.glob("*.deb") if p.name.startswith(f"{pin.name}_")]
        if len(debs) != 1:
            raise BuildgraphError(f"apt-get download {pin.name} left {len(debs)} .deb files")
        got = _sha256(debs[0])
        if got != pin.sha256:
            debs[0].unlink()
            raise BuildgraphError(
                f"Debian package {pin.name}={pin.version} ({self.arch}) has sha256 {got},"
                f" but the lock file pins {pin.sha256}",
                hint="someone changed the archive or the pin; check, then re-pin with"
                " `buildgraph pins refresh`",
            )
        return debs[0]

    def show(self, name: str) -> dict[str, str]:
        """The archive's record of a package's candidate version (Version, Depends, SHA256…)."""
        policy = self._run("apt-cache", "policy", name)
        candidate = next(
            (line.split(":", 1)[1].strip() for line in policy.splitlines()
             if line.strip().startswith("Candidate:")),
            "(none)",
        )  # fmt: skip
        if candidate == "(none)":
            raise BuildgraphError(f"Debian package {name} ({self.arch}) is not in the archive")
        record: dict[str, str] = {}
        for line in self._run("apt-cache", "show", f"{name}={candidate}").splitlines():
            if not line.strip():
                break
            if ":" in line and not line.startswith(" "):
                key, value = line.split(":", 1)
                record[key] = value.strip()
        return record


def extract(deb: Path, dest: Path) -> None:
    """Unpack a .deb's files (not its maintainer scripts) into ``dest``."""
    if shutil.which("dpkg-deb") is None:
        raise BuildgraphError("tool 'dpkg-deb' is not installed", hint="apt-get install dpkg")
    done = subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildgraphError(f"dpkg-deb -x {deb.name} failed: {done.stderr.strip()}")


def refresh(lock: Path, state_dir: Path) -> list[str]:
    """Re-pin every package of the lock file to the archive's candidate; returns changes."""
    data = json.loads(lock.read_text())
    changes = []
    apts: dict[str, Apt] = {}
    for image, arches in data["packages"].items():
        for arch, pins in arches.items():
            apt = apts.get(arch)
            if apt is None:
                apt = apts[arch] = Apt(state_dir, arch)
                apt.update()
            for index, old in enumerate(pins):
                name = old["name"]
                if old.get("track"):
                    depends = apt.show(old["track"]).get("Depends", "")
                    name = depends.split(",")[0].split("(")[0].strip()
                record = apt.show(name)
                version, sha256 = record["Version"], record["SHA256"]
                new = {**old, "name": name, "version": version, "sha256": sha256}
                if new != old:
                    changes.append(f"{image} {arch}: {old['name']} {old['version']}"
                                   f" -> {name} {record['Version']}")  # fmt: skip
                pins[index] = new
    tmp = lock.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, lock)
    return changes


def _sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
