"""Linting a disk image: every readable partition walked once, every rule applied.

Each partition is read where its layout mounts it; an entry that another partition's
mount would hide (ROOT's ``/boot`` under EFI-SYSTEM on Flatcar) is not the OS's, so it
is skipped. Partitions that hold no filesystem this package reads are listed as not
read: a note, never a finding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from functools import partial
from pathlib import Path
from typing import Any

from . import filesystems, gpt, layouts
from .rules import RULES, Rule
from .source import raw_image


@dataclass(frozen=True)
class Finding:
    partition: int
    label: str
    path: str
    """As the booted OS sees it."""
    partition_path: str
    """Within the partition's filesystem."""
    rule: str
    severity: str
    message: str

    def line(self) -> str:
        return (
            f"{self.severity.upper()} p{self.partition} {_label(self.label)} {self.path}:"
            f" {self.message}"
        )


@dataclass(frozen=True)
class PartitionRead:
    number: int
    label: str
    filesystem: str
    mount: str
    read: bool

    def note(self) -> str:
        what = {"none": "no filesystem (zeros)", "unknown": "raw data, no known filesystem"}.get(
            self.filesystem, self.filesystem
        )
        return f"INFO p{self.number} {_label(self.label)}: {what}, not read"


@dataclass(frozen=True)
class Report:
    image: str
    layers: tuple[str, ...]
    layout: str
    partitions: tuple[PartitionRead, ...]
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> int:
        return sum(finding.severity == "error" for finding in self.findings)

    def lines(self) -> list[str]:
        notes = [part.note() for part in self.partitions if not part.read]
        warnings = len(self.findings) - self.errors
        read = sum(part.read for part in self.partitions)
        counts = (
            (
                f"{self.errors} error{'s' * (self.errors != 1)},"
                f" {warnings} warning{'s' * (warnings != 1)}"
            )
            if self.findings
            else "no findings"
        )
        summary = (
            f"{self.image}: {self.layout} layout, {len(self.partitions)} partitions,"
            f" {read} read: {counts}"
        )
        return [*notes, *(finding.line() for finding in self.findings), summary]

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "layers": list(self.layers),
            "layout": self.layout,
            "partitions": [asdict(part) for part in self.partitions],
            "findings": [asdict(finding) for finding in self.findings],
            "notes": [part.note() for part in self.partitions if not part.read],
        }


def lint(image: Path, rules: tuple[Rule, ...] = RULES) -> Report:
    """Read the disk image at ``image`` (any format source.raw_image opens) and apply
    ``rules`` to every partition it can read."""
    with raw_image(image) as raw:
        table = gpt.read(raw.path, str(image))
        layout = layouts.detect(part.name for part in table.partitions)
        mounts = {part.number: layout.mount(part.name) for part in table.partitions}
        applying = [rule for rule in rules if rule.layouts is None or layout.name in rule.layouts]
        present = [rule for rule in applying if not rule.missing]
        findings: list[Finding] = []
        seen: dict[int, tuple[set[str], bool]] = {}  # partition -> (OS paths, case-sensitive)
        parts = []
        for part in table.partitions:
            filesystem = filesystems.detect(raw.path, part)
            reader = filesystems.open_reader(raw.path, part, filesystem)
            parts.append(
                PartitionRead(
                    part.number, part.name, filesystem, mounts[part.number], reader is not None
                )
            )
            if reader is not None:
                seen[part.number] = (
                    _walk(part, reader, mounts, present, findings),
                    reader.case_sensitive,
                )
        for rule in applying:
            if rule.missing:
                findings.extend(_absent(rule, table.partitions, mounts, seen))
    findings.sort(key=lambda found: (found.partition, found.path, found.rule))
    return Report(str(image), raw.layers, layout.name, tuple(parts), tuple(findings))


def _walk(
    part: gpt.Partition,
    reader: filesystems.Reader,
    mounts: dict[int, str],
    rules: list[Rule],
    findings: list[Finding],
) -> set[str]:
    """Apply ``rules`` to each entry of ``part`` the OS sees; returns their OS paths."""
    mount = mounts[part.number]
    above = [
        other
        for number, other in mounts.items()
        if number != part.number and len(other) > len(mount) and layouts.under(other, mount)
    ]
    paths = set()
    for entry in reader.walk():
        where = layouts.os_path(mount, entry.path)
        if any(layouts.under(where, other) for other in above):
            continue
        paths.add(where if reader.case_sensitive else where.casefold())
        for rule in rules:
            if entry.kind not in rule.kinds or not _matches(
                rule.paths, where, reader.case_sensitive
            ):
                continue
            message = rule.check(entry, partial(reader.read, entry)) if rule.check else rule.message
            if message:
                findings.append(
                    Finding(
                        part.number, part.name, where, entry.path, rule.id, rule.severity, message
                    )
                )
    return paths


def _absent(
    rule: Rule,
    partitions: tuple[gpt.Partition, ...],
    mounts: dict[int, str],
    seen: dict[int, tuple[set[str], bool]],
) -> list[Finding]:
    """Findings of a ``missing`` rule: on the partition mounted where each path would be,
    when it was read and nothing there matches."""
    found = []
    for pattern in rule.paths:
        holding = [part for part in partitions if layouts.under(pattern, mounts[part.number])]
        if not holding:
            continue
        deepest = max(len(mounts[part.number]) for part in holding)
        owners = [
            part for part in holding if len(mounts[part.number]) == deepest and part.number in seen
        ]
        if not owners or any(
            _matches((pattern,), path, seen[part.number][1])
            for part in owners
            for path in seen[part.number][0]
        ):
            continue
        owner = owners[0]
        mount = mounts[owner.number]
        inside = pattern if mount == "/" else pattern[len(mount) :]
        found.append(
            Finding(owner.number, owner.name, pattern, inside, rule.id, rule.severity, rule.message)
        )
    return found


def _matches(patterns: tuple[str, ...], path: str, case_sensitive: bool) -> bool:
    """Whether ``path`` matches one of ``patterns`` (none: every path), ``*`` staying
    within one segment."""
    if not patterns:
        return True
    fold = (lambda text: text) if case_sensitive else str.casefold
    segments = fold(path).split("/")
    for pattern in patterns:
        wanted = fold(pattern).split("/")
        if len(wanted) == len(segments) and all(map(fnmatchcase, segments, wanted)):
            return True
    return False


def _label(label: str) -> str:
    if not label:
        return "(no name)"
    return label if label.isprintable() and " " not in label else repr(label)
