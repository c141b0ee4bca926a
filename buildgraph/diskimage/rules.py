"""The lint rules of ``buildgraph lint-image``, as a table: a new rule is a row.

A rule names paths as the booted OS sees them (globs, ``*`` within one path segment;
none: every entry), the kinds of entry it matches, and optionally a check on the entry
and its bytes that returns the finding's message (None: no finding). A ``missing`` rule
finds the absence of its path instead. What each warns about is state that a booted
image keeps and that would make every instance made from it identical or open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .filesystems import KINDS, Entry

Check = Callable[[Entry, Callable[[], bytes]], str | None]
SEVERITIES = ("error", "warning")


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    description: str
    paths: tuple[str, ...] = ()
    kinds: frozenset[str] = frozenset(KINDS)
    message: str = ""
    """The finding's message, when there is no check."""
    check: Check | None = None
    layouts: frozenset[str] | None = None
    """The layouts (layouts.LAYOUTS) it applies to; None: every one."""
    missing: bool = False


def _machine_id(entry: Entry, content: Callable[[], bytes]) -> str:
    empty = entry.kind == "file" and (entry.size if entry.size is not None else len(content())) == 0
    return (
        f"machine-id is present{', though empty' if empty else ''}: delete the file, do not"
        " truncate it; only an absent one gives each instance its own ID and runs systemd's"
        " first-boot setup (unit presets)"
    )


def _passwords(_entry: Entry, content: Callable[[], bytes]) -> str | None:
    found = []
    for line in content().decode("utf-8", "replace").splitlines():
        user, _, rest = line.partition(":")
        secret = rest.split(":", 1)[0]
        if not user or not rest or secret.startswith(("!", "*")):
            continue  # locked, or no password login at all
        found.append(f"{user} (empty: logs in without one)" if secret == "" else user)
    if not found:
        return None
    return (
        f"accounts with a password: {', '.join(found)}; remove these accounts, or lock them"
        " with '!' or '*' in the second field"
    )


def _world_writable(entry: Entry, _content: Callable[[], bytes]) -> str | None:
    if entry.mode is None or not entry.mode & 0o002:
        return None
    return (
        f"world-writable file (mode {entry.mode:04o}): any user of an instance can change"
        " it; clear the o+w bit"
    )


_FILES = frozenset({"file", "symlink"})
_USERS = ("/root", "/home/*")

RULES: tuple[Rule, ...] = (
    Rule(
        "machine-id",
        "error",
        "/etc/machine-id must be absent, not truncated",
        paths=("/etc/machine-id",),
        check=_machine_id,
    ),
    Rule(
        "ssh-host-key",
        "error",
        "no SSH host keys: each instance makes its own",
        paths=("/etc/ssh/ssh_host_*",),
        kinds=_FILES,
        message="SSH host key in the image: every instance would share it, and anyone with"
        " the image could pose as them; delete it so each instance makes its own",
    ),
    Rule(
        "first-boot-flag",
        "error",
        "Flatcar's first-boot flag is present, so Ignition runs",
        paths=("/boot/flatcar/first_boot",),
        missing=True,
        layouts=frozenset({"flatcar"}),
        message="the first-boot flag is missing, so Ignition will not run on first boot:"
        " create the empty file flatcar/first_boot in EFI-SYSTEM",
    ),
    Rule(
        "oem-config-ign",
        "warning",
        "no leftover config.ign in the OEM partition",
        paths=("/oem/config.ign",),
        kinds=_FILES,
        message="config.ign in the OEM partition: Ignition prefers it to any userdata;"
        " remove it if it only served to set the image up",
    ),
    Rule(
        "authorized-keys",
        "warning",
        "no SSH keys authorized for default users",
        paths=tuple(
            f"{home}/.ssh/{name}"
            for home in _USERS
            for name in ("authorized_keys", "authorized_keys2", "authorized_keys.d/*")
        ),
        kinds=_FILES,
        message="SSH authorized keys in the image: their holder can log in to every"
        " instance; remove them unless every instance is meant to trust them",
    ),
    Rule(
        "shadow-password",
        "error",
        "no account in /etc/shadow has a password",
        paths=("/etc/shadow",),
        kinds=frozenset({"file"}),
        check=_passwords,
    ),
    Rule(
        "random-seed",
        "error",
        "no systemd random seed",
        paths=("/var/lib/systemd/random-seed",),
        message="systemd's random seed is in the image: every instance would start from the"
        " same one; delete it",
    ),
    Rule(
        "dhcp-lease",
        "warning",
        "no DHCP leases from a booted system",
        paths=(
            "/var/lib/dhcp/*.leases",
            "/var/lib/dhcp/*.lease",
            "/var/lib/dhclient/*",
            "/var/lib/dhcpcd/*.lease",
            "/var/lib/NetworkManager/*.lease",
            "/var/lib/systemd/network/*lease*",
        ),
        kinds=frozenset({"file"}),
        message="a DHCP lease from a booted system: instances would start with its address"
        " and ID; delete it",
    ),
    Rule(
        "shell-history",
        "warning",
        "no shell history",
        paths=tuple(
            f"{home}/{name}"
            for home in _USERS
            for name in (".bash_history", ".zsh_history", ".ash_history")
        ),
        kinds=_FILES,
        message="shell history from a booted system: it may hold commands and secrets; delete it",
    ),
    Rule(
        "world-writable",
        "error",
        "no regular file is writable by every user",
        kinds=frozenset({"file"}),
        check=_world_writable,
    ),
)
