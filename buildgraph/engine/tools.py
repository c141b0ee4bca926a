"""External tools: where they are, which version, and what to install when missing.

A tool's version is part of the key of every node whose step runs it. Versions come
from dpkg (the Debian package that ships the tool) and are remembered by the binary's
stat, so they cost a subprocess only when the binary changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable

from .errors import ToolMissingError
from .hashing import digest_file

PACKAGES: dict[str, str] = {}
"""Tool -> the Debian package that installs it, for the message when it is missing;
the OS side fills it."""


def locate(tool: str, why: str) -> str:
    """The path of ``tool``; a missing one is a ToolMissingError naming its Debian package
    and ``why`` it is needed."""
    path = shutil.which(tool)
    if path is None:
        package = PACKAGES.get(tool, tool)
        raise ToolMissingError(
            f"tool {tool!r} is not installed ({why})",
            hint=f"install the Debian package {package}: apt-get install {package}"
            " (or run ./setup.sh)",
        )
    return path


def resolve(
    tools: Iterable[str], cache: dict[str, tuple], needed_by: dict[str, str]
) -> dict[str, tuple[str, str]]:
    """Map each tool to (path, version); a missing tool names its Debian package."""
    found: dict[str, tuple[str, str]] = {}
    unknown: dict[str, tuple] = {}
    for tool in sorted(set(tools)):
        path = locate(tool, f"needed by {needed_by.get(tool, 'a step')}")
        st = os.stat(path)
        stamp = (path, st.st_ino, st.st_mtime_ns, st.st_size)
        seen = cache.get(tool)
        if seen is not None and tuple(seen[:4]) == stamp:
            found[tool] = (path, seen[4])
        else:
            unknown[tool] = stamp
    versions = _dpkg_versions([stamp[0] for stamp in unknown.values()])
    for tool, stamp in unknown.items():
        path = stamp[0]
        version = versions.get(path) or "sha:" + digest_file(path)[:16]
        cache[tool] = (*stamp, version)
        found[tool] = (path, version)
    return found


def _dpkg_versions(paths: list[str]) -> dict[str, str]:
    """path -> ``<package> <version>`` of the package owning the file it resolves to.

    The owner, not the package a user installs: /usr/bin/go is golang-go's link to
    golang-1.19-go's binary, and that package's version covers the compiler and the
    standard library. A tool from elsewhere (/usr/local, a venv) is absent: the caller
    keys it by its digest. Two dpkg-query runs, whatever the number of tools.
    """
    if not paths or shutil.which("dpkg-query") is None:
        return {}
    candidates: dict[str, list[str]] = {}  # mcopy and mmd are both links to mtools
    for path in paths:
        real = os.path.realpath(path)
        candidates.setdefault(real, []).append(path)
        for merged in ("/bin/", "/sbin/", "/lib/"):
            if real.startswith("/usr" + merged):
                candidates.setdefault(real[len("/usr") :], []).append(path)
    owners = subprocess.run(
        ["dpkg-query", "-S", *sorted(candidates)], capture_output=True, text=True, check=False
    )
    owner: dict[str, str] = {}
    for line in owners.stdout.splitlines():
        if line.startswith("diversion") or ": " not in line:
            continue
        packages, _, file = line.partition(": ")
        for path in candidates.get(file.strip(), []):
            owner.setdefault(path, packages.split(",")[0].strip())
    if not owner:
        return {}
    listed = subprocess.run(
        ["dpkg-query", "-W", "-f=${binary:Package} ${Version}\n",
         *sorted(set(owner.values()))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    version = dict(line.split(" ", 1) for line in listed.stdout.splitlines() if " " in line)
    return {path: f"{pkg} {version[pkg]}" for path, pkg in owner.items() if pkg in version}
