"""Target specs: the data in ``targets/*.yaml``, loaded and validated.

A spec file holds ``targets`` (name -> spec) and optionally ``default`` (the goal of a
bare ``doit``), ``variables`` (defaults that are data, such as the pinned PKGS tag) and
``packages`` (the names that make ``PKG_<NAME>`` variables) and ``aliases`` (a name for
a list of targets, such as ``images: [image-%]``).

A target named with a ``%`` and a ``profiles`` directory is a pattern: it expands to one
target per profile file, so ``image-%`` with ``profiles/aws.yaml`` gives ``image-aws``,
and ``${profile.FIELD}`` in its body is that file's field. The engine gives the fields no
meaning: they become params, outputs, needs, arches like any written there, so a node
keys exactly the fields it reads.

Everything is checked here, before any graph exists: unknown keys, missing fields,
unknown steps, unknown variables and targets, and cycles, each with file and line.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from . import step as steps
from . import variables
from .errors import SpecError, UnknownTargetError
from .yamlsrc import LDict, LList, load, where

TARGET_KEYS = {
    "doc": "one line for `doit list`",
    "step": "the step that builds it",
    "per_arch": "true: one node per arch in PLATFORM",
    "arches": "for a per_arch target: the arches it builds for, when not all",
    "params": "step parameters; strings may use ${VARIABLE}, ${ARCH}, ${PROFILE};"
    " {per_arch: {amd64: x, arm64: y}} gives each arch its own value",
    "sources": "repo files and globs it reads",
    "needs": "targets whose outputs it reads: a name, or {target, arches: same|all,"
    " unless: ${VARIABLE}, when: ${VARIABLE}} (unless: only while the variable is unset:"
    " empty or false; when: only while it is set)",
    "vars": "variables it reads beyond those its params name",
    "outputs": "file names it produces in _out/",
    "profiles": "for a name with %: the directory of profile files it expands over;"
    " ${profile.FIELD} in its body is a profile's field, and % in its needs its profile",
    "defaults": "for a pattern: profile fields a profile may leave out, each with the value"
    " it then takes",
}
FILE_KEYS = ("targets", "default", "variables", "packages", "aliases")
NEED_KEYS = ("target", "arches", "unless", "when")
BUILTIN_NAMES = ("ARCH", "PROFILE")
_REF = re.compile(r"\$\{([A-Za-z0-9_]+)(?::([+-])([^${}]*))?\}")
"""``${NAME}``; ``${NAME:+text}``: ``text`` while NAME is set (see variables.is_set), else
nothing; ``${NAME:-text}``: NAME's value while it is set, else ``text``; as in the shell."""
_PLAIN_REF = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
_PROFILE_REF = re.compile(r"\$\$|\$\{profile\.([^}]*)\}")
"""A profile field, ``${profile.FIELD}``; ``$$`` is matched so that ``$${profile.x}`` is not."""


@dataclass(frozen=True)
class Need:
    target: str
    arches: str  # "same", "all", or a ${VAR} whose value is "all" or "targetarch"
    where: str
    unless: str = ""
    """``${VAR}``: the need holds only while VAR is empty (IMAGER_IMAGE replaces the OS)."""
    when: str = ""
    """``${VAR}``: the need holds only while VAR is set (SYSTEM_EXTENSIONS adds a part)."""


@dataclass(frozen=True)
class TargetSpec:
    name: str
    step: str
    per_arch: bool
    params: dict[str, Any]
    sources: tuple[str, ...]
    needs: tuple[Need, ...]
    vars: tuple[str, ...]
    declared_vars: tuple[str, ...]
    outputs: tuple[str, ...]
    doc: str
    where: str
    profile: str | None = None
    arches: tuple[str, ...] | None = None
    """The arches a per_arch target builds for; None: every arch."""

    def builds_for(self, arch: str) -> bool:
        return self.arches is None or arch in self.arches


@dataclass
class Specs:
    root: Path
    targets: dict[str, TargetSpec] = field(default_factory=dict)
    patterns: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Alias -> the targets it stands for, patterns and aliases in it expanded."""
    default: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    packages: frozenset[str] = frozenset()
    files: list[Path] = field(default_factory=list)
    """Every file and profile directory read: the compiled plan is valid while they are."""

    def resolve(self, name: str) -> TargetSpec:
        """The spec of target ``name``; an unknown name lists what exists."""
        spec = self.targets.get(name)
        if spec is not None:
            return spec
        for pattern, (directory, profiles) in self.patterns.items():
            prefix, suffix = pattern.split("%", 1)
            if name.startswith(prefix) and name.endswith(suffix):
                stem = name[len(prefix) : len(name) - len(suffix)]
                raise UnknownTargetError(
                    f"unknown profile {stem!r} for target {pattern}: known profiles are "
                    + (", ".join(profiles) or "none"),
                    hint=f"add {directory}/{stem}.yaml to define it",
                )
        close = difflib.get_close_matches(name, [*self.targets, *self.aliases], n=1)
        aliases = f"; aliases are {', '.join(sorted(self.aliases))}" if self.aliases else ""
        raise UnknownTargetError(
            f"unknown target {name!r}" + (f"; did you mean {close[0]}?" if close else ""),
            hint=f"known targets are {', '.join(sorted(self.targets))}{aliases}"
            + ("" if close else " (`doit list` shows them with docs)"),
        )


@dataclass(frozen=True)
class _Pattern:
    name: str
    rel: str
    body: LDict
    here: str
    """Where the pattern is named: the ``where`` of each target it expands to."""
    directory: str
    """Of its profiles, under targets/."""
    first: dict[str, int]
    """Each profile field the body reads -> the line of its first reference."""
    below: dict[int, set[str]]
    """Each line of the body -> the fields read there or in the lines it holds: an error
    at ``params:`` may come from any field in the params."""


@dataclass(frozen=True)
class _Profile:
    stem: str
    rel: str
    fields: LDict

    def where(self, name: str | None = None) -> str:
        return where(self.rel, self.fields, name)


def load_specs(root: Path) -> Specs:
    """Load and validate every spec file under ``root/targets``."""
    specs = Specs(root=root)
    base = root / "targets"
    if not base.is_dir():
        raise SpecError(str(base), "no targets/ directory", hint="run from the repository root")
    raw_targets: dict[str, tuple[str, LDict, LDict]] = {}
    raw_aliases: dict[str, tuple[str, list[str]]] = {}
    packages: set[str] = set()
    default_where = ""
    for path in sorted(base.glob("*.yaml")):
        rel = path.relative_to(root).as_posix()
        specs.files.append(path)
        doc = load(path, rel)
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise SpecError(f"{rel}:1", "a spec file must be a mapping with a 'targets' key")
        _reject_unknown(doc, FILE_KEYS, rel, "spec file")
        for name, body in _mapping(doc.get("targets", LDict()), rel, doc, "targets").items():
            if not isinstance(name, str) or not name:
                raise SpecError(where(rel, doc["targets"], name), "a target name must be text")
            if name in raw_targets:
                raise SpecError(where(rel, doc["targets"], name), f"target {name!r} defined twice")
            if not isinstance(body, dict):
                raise SpecError(
                    where(rel, doc["targets"], name), f"target {name!r} must be a mapping"
                )
            raw_targets[name] = (rel, body, doc["targets"])
        aliases = _mapping(doc.get("aliases", LDict()), rel, doc, "aliases")
        for name, members in aliases.items():
            here = where(rel, aliases, name)
            if not isinstance(name, str) or not name or "%" in name or ":" in name:
                raise SpecError(here, f"alias name {name!r} must be text without % or :")
            if name in raw_aliases:
                raise SpecError(here, f"alias {name!r} defined twice")
            raw_aliases[name] = (here, _strings(members, rel, aliases, name))
        if "default" in doc:
            specs.default = _strings(doc["default"], rel, doc, "default")
            default_where = where(rel, doc, "default")
        for var, value in _mapping(doc.get("variables", LDict()), rel, doc, "variables").items():
            if variables.lookup(var) is None:
                raise SpecError(where(rel, doc["variables"], var), f"unknown variable {var!r}")
            specs.variables[var] = str(value)
        packages.update(_strings(doc.get("packages", []), rel, doc, "packages"))
    specs.packages = frozenset(packages)
    by_directory: dict[str, list[_Pattern]] = {}
    for name, (rel, body, parent) in raw_targets.items():
        if "%" not in name:
            specs.targets[name] = _target(specs, name, rel, body, where(rel, parent, name), None)
            continue
        pattern = _pattern(name, rel, body, parent)
        by_directory.setdefault(pattern.directory, []).append(pattern)
    for patterns in by_directory.values():
        _expand_patterns(specs, patterns)
    specs.aliases = {
        name: tuple(_alias_targets(specs, raw_aliases, name, ())) for name in raw_aliases
    }
    _check_needs(specs)
    for name in specs.default:
        if name.split(":", 1)[0] not in {*specs.targets, *specs.aliases}:
            raise SpecError(default_where, f"default goal {name!r} is no target or alias")
    _check_cycles(specs)
    return specs


def _pattern(name: str, rel: str, body: LDict, parent: LDict) -> _Pattern:
    """A target named with %, and where its body reads which profile fields."""
    here = where(rel, parent, name)
    if name.count("%") != 1 or "profiles" not in body:
        raise SpecError(
            here, f"pattern target {name!r} needs exactly one % and a 'profiles' directory"
        )
    first: dict[str, int] = {}
    below: dict[int, set[str]] = {}
    _read_lines(body, body.line, first, below)
    directory = PurePosixPath(str(body["profiles"])).as_posix()
    return _Pattern(name, rel, body, here, directory, first, below)


def _read_lines(
    value: Any, line: int, first: dict[str, int], below: dict[int, set[str]]
) -> set[str]:
    """The profile fields ``value`` (at ``line``) reads; fills ``first`` and ``below``."""
    if isinstance(value, dict):
        entries = [(value.key_lines[key], item) for key, item in value.items()]
    elif isinstance(value, list):
        entries = list(zip(value.item_lines, value, strict=True))
    else:
        fields = _profile_fields(value)
        for field_name in fields:
            first.setdefault(field_name, line)
        return set(fields)
    found: set[str] = set()
    for entry_line, item in entries:
        inner = _read_lines(item, entry_line, first, below)
        below.setdefault(entry_line, set()).update(inner)
        found |= inner
    return found


def _expand_patterns(specs: Specs, patterns: list[_Pattern]) -> None:
    """Expand the patterns over one profile directory, reading each profile file once.

    A profile may hold only fields that one of these patterns reads: a field nothing
    reads is a typo or a leftover, and would silently build nothing different.
    """
    directory = patterns[0].directory
    profile_dir = specs.root / "targets" / directory
    if not profile_dir.is_dir():
        raise SpecError(
            where(patterns[0].rel, patterns[0].body, "profiles"),
            f"profile directory targets/{directory} is missing",
        )
    specs.files.append(profile_dir)
    known = sorted({field_name for pattern in patterns for field_name in pattern.first})
    profiles = []
    for path in sorted(profile_dir.glob("*.yaml")):
        profile_rel = path.relative_to(specs.root).as_posix()
        specs.files.append(path)
        fields = load(path, profile_rel)
        if not isinstance(fields, dict):
            raise SpecError(f"{profile_rel}:1", "a profile must be a mapping of fields")
        profile = _Profile(path.stem, profile_rel, fields)
        for name in fields:
            if name not in known:
                close = difflib.get_close_matches(str(name), known, n=1)
                raise SpecError(
                    profile.where(name),
                    f"profile {profile.stem!r} has unknown field {name!r};"
                    f" known fields are {', '.join(known) or 'none'}",
                    hint=f"did you mean {close[0]!r}?"
                    if close
                    else f"no pattern over targets/{directory} reads it: remove it,"
                    f" or read it with ${{profile.{name}}}",
                )
        profiles.append(profile)
    for pattern in patterns:
        made: dict[tuple, TargetSpec] = {}
        # The shortest name leads a group of equal expansions: adding metal-qcow2 next to
        # metal must not rename (and so rebuild) metal's nodes.
        for profile in sorted(profiles, key=lambda p: (len(p.stem), p.stem)):
            expanded = pattern.name.replace("%", profile.stem)
            if expanded in specs.targets:
                raise SpecError(
                    pattern.here,
                    f"profile {profile.stem!r} clashes with target {expanded!r}"
                    f" ({specs.targets[expanded].where})",
                )
            spec = _expansion(specs, pattern, profile, expanded)
            specs.targets[expanded] = made.setdefault(_work(specs, spec), spec)
        specs.patterns[pattern.name] = (f"targets/{directory}", [p.stem for p in profiles])


def _work(specs: Specs, spec: TargetSpec) -> tuple:
    """What a pattern's expansion does, whatever its profile is called: two profiles whose
    expansions do the same work share one target, and so one node and one cache entry
    (a metal-qcow2 profile shares metal's cmdline and raw disk, and converts only)."""
    needs = tuple(
        (
            specs.targets[n.target].name if n.target in specs.targets else n.target,
            n.arches,
            n.unless,
            n.when,
        )
        for n in spec.needs
    )
    params = json.dumps(spec.params, sort_keys=True)
    return (spec.step, spec.per_arch, params, spec.sources, needs, spec.vars, spec.arches)


def _expansion(specs: Specs, pattern: _Pattern, profile: _Profile, name: str) -> TargetSpec:
    """The target ``pattern`` gives for ``profile``: its body with the profile's fields in,
    validated as any target is; an error a field may cause names the field's line."""
    defaults = pattern.body.get("defaults", LDict())
    if not isinstance(defaults, dict):
        raise SpecError(where(pattern.rel, pattern.body, "defaults"), "defaults must be a mapping")
    if defaults:
        fields = LDict({**defaults, **profile.fields})
        fields.line, fields.key_lines = profile.fields.line, profile.fields.key_lines
        profile = _Profile(profile.stem, profile.rel, fields)
    for field_name, line in pattern.first.items():
        if field_name not in profile.fields:
            raise SpecError(
                profile.where(),
                f"profile {profile.stem!r} lacks field {field_name!r}, which {pattern.name}"
                f" reads at {pattern.rel}:{line}",
                hint=f"add {field_name}: ... to {profile.rel}",
            )
    filled = _fill(pattern.body, profile, pattern, pattern.body.line)
    try:
        return _target(specs, name, pattern.rel, filled, pattern.here, profile.stem)
    except SpecError as err:
        rel, _, line = err.where.rpartition(":")
        blamed = pattern.below.get(int(line), set()) if rel == pattern.rel else set()
        if not blamed:
            raise
        values = ", ".join(
            f"{f!r} at {profile.where(f)}" for f in sorted(blamed, key=pattern.first.__getitem__)
        )
        raise SpecError(
            err.where,
            f"{err.message.removeprefix(f'{err.where}: ')} (profile {profile.stem!r}: {values})",
            hint=err.hint,
        ) from None


def _fill(value: Any, profile: _Profile, pattern: _Pattern, line: int) -> Any:
    """``value`` (at ``line`` of ``pattern``) with each ``${profile.FIELD}`` replaced: by the
    field as it is when the reference is the whole string, else by its text. Line
    bookkeeping is kept, and a field's value takes the line of its reference."""
    if isinstance(value, str):
        whole = _PROFILE_REF.fullmatch(value)
        if whole is not None and whole.group(1) is not None:
            return _stamped(profile.fields[whole.group(1)], line)
        reader = f"{pattern.name} at {pattern.rel}:{line}"
        return _PROFILE_REF.sub(lambda match: _inline(match, profile, reader), value)
    if isinstance(value, dict):
        return _like(
            value, {k: _fill(v, profile, pattern, value.key_lines[k]) for k, v in value.items()}
        )
    if isinstance(value, list):
        return _like(
            value,
            [_fill(v, profile, pattern, n) for n, v in zip(value.item_lines, value, strict=True)],
        )
    return value


def _inline(match: re.Match[str], profile: _Profile, reader: str) -> str:
    """The text ``${profile.FIELD}`` stands for inside a longer string."""
    name = match.group(1)
    if name is None:
        return match.group(0)  # $$: left for variable substitution
    value = profile.fields[name]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        what = (
            "a mapping"
            if isinstance(value, dict)
            else "a list"
            if isinstance(value, list)
            else repr(value)
        )
        raise SpecError(
            profile.where(name),
            f"profile {profile.stem!r} field {name!r} is {what}, but {reader} reads it inside"
            " text, where it must be text or a number",
            hint=f'make "${{profile.{name}}}" the whole value to take the field as it is',
        )
    return str(value)


def _stamped(value: Any, line: int) -> Any:
    """A profile's value as it lands in a pattern's body, every line that of the reference."""
    if isinstance(value, dict):
        mapping = LDict((k, _stamped(v, line)) for k, v in value.items())
        mapping.line, mapping.key_lines = line, dict.fromkeys(value, line)
        return mapping
    if isinstance(value, list):
        sequence = LList(_stamped(v, line) for v in value)
        sequence.line, sequence.item_lines = line, [line] * len(value)
        return sequence
    return value


def _like(original: Any, contents: Any) -> Any:
    """``contents`` as the type of ``original``, with its line bookkeeping."""
    copy = type(original)(contents)
    copy.__dict__.update(getattr(original, "__dict__", {}))
    return copy


def _profile_fields(value: Any) -> list[str]:
    """The profile fields ``${profile.FIELD}`` in every string of ``value``, in order."""
    return list(
        dict.fromkeys(
            match.group(1)
            for text in _texts(value)
            for match in _PROFILE_REF.finditer(text)
            if match.group(1) is not None
        )
    )


def _alias_targets(
    specs: Specs, raw: dict[str, tuple[str, list[str]]], name: str, trail: tuple[str, ...]
) -> list[str]:
    """The targets alias ``name`` stands for: its patterns and aliases expanded, once each."""
    here, members = raw[name]
    if name in specs.targets:
        raise SpecError(
            here,
            f"alias {name!r} is also a target ({specs.targets[name].where})",
            hint="rename one of them",
        )
    if not members:
        raise SpecError(here, f"alias {name!r} names no target")
    found: list[str] = []
    for member in members:
        if member in raw:
            if member in (*trail, name):
                cycle = [*trail, name, member]
                cycle = cycle[cycle.index(member) :]
                raise SpecError(here, "alias cycle: " + " -> ".join(cycle))
            found.extend(_alias_targets(specs, raw, member, (*trail, name)))
        elif member in specs.patterns:
            found.extend(member.replace("%", stem) for stem in specs.patterns[member][1])
        elif member in specs.targets:
            found.append(member)
        else:
            close = difflib.get_close_matches(member, [*specs.targets, *specs.patterns, *raw], n=1)
            raise SpecError(
                here,
                f"alias {name!r} names unknown target {member!r}",
                hint=f"did you mean {close[0]}?" if close else "`doit list` shows the targets",
            )
    return list(dict.fromkeys(found))


def _check_needs(specs: Specs) -> None:
    """Every need names a target, not an alias, and one that builds the arches asked of it."""
    for spec in specs.targets.values():
        for need in spec.needs:
            members = specs.aliases.get(need.target)
            if members is not None:
                raise SpecError(
                    need.where,
                    f"target {spec.name!r} needs {need.target!r}, which is an alias;"
                    " a need names targets",
                    hint=f"need its members instead: {', '.join(members)}",
                )
            try:
                dep = specs.resolve(need.target)
            except UnknownTargetError as err:
                raise SpecError(need.where, f"target {spec.name!r} needs {err}") from None
            if need.arches == "same" and spec.per_arch and dep.per_arch:
                for arch in spec.arches or variables.ARCHES:
                    if not dep.builds_for(arch):
                        raise arch_not_built(spec, dep, arch, need)


def arch_not_built(spec: TargetSpec, dep: TargetSpec, arch: str, need: Need) -> SpecError:
    """``spec`` needs ``dep`` for ``arch``, which ``dep`` does not build."""
    assert dep.arches is not None
    return SpecError(
        need.where,
        f"target {spec.name!r} needs {dep.name!r} for {arch},"
        f" but {dep.name!r} builds for {', '.join(dep.arches)} only",
        hint=f"give {spec.name!r} arches: [{', '.join(dep.arches)}],"
        f" or need {{target: {dep.name}, arches: all}}",
    )


def _target(
    specs: Specs, name: str, rel: str, body: LDict, here: str, profile: str | None
) -> TargetSpec:
    allowed = set(TARGET_KEYS) - (set() if profile is not None else {"profiles", "defaults"})
    _reject_unknown(body, allowed, rel, f"target {name!r}")
    for key, value in body.items():
        fields = _profile_fields(value) if key != "profiles" else []
        if fields:
            raise SpecError(
                where(rel, body, key),
                f"${{profile.{fields[0]}}} in target {name!r}, which is not a pattern over profiles"
                if profile is None
                else f"${{profile.{fields[0]}}} in a profile value of {name!r}:"
                " a profile field cannot read another",
            )
    for required in ("step", "outputs"):
        if required not in body:
            raise SpecError(
                here, f"target {name!r} is missing {required!r}: {TARGET_KEYS[required]}"
            )
    step = steps.get(str(body["step"]), where(rel, body, "step"))
    per_arch = body.get("per_arch", False)
    if not isinstance(per_arch, bool):
        raise SpecError(where(rel, body, "per_arch"), "per_arch must be true or false")
    arches = _arches(body, rel, name, per_arch)
    params = body.get("params", LDict())
    if not isinstance(params, dict):
        raise SpecError(where(rel, body, "params"), "params must be a mapping")
    if PER_ARCH in params:
        raise SpecError(
            where(rel, body, "params"),
            f"target {name!r}: per_arch goes on a param's value, not on params itself",
        )
    for key, value in params.items():
        _check_per_arch(value, per_arch, where(rel, params, key), name)
    outputs = _strings(body["outputs"], rel, body, "outputs")
    if not outputs:
        raise SpecError(where(rel, body, "outputs"), f"target {name!r} declares no outputs")
    for out in outputs:
        if out.startswith("/") or ".." in Path(out).parts:
            raise SpecError(where(rel, body, "outputs"), f"output {out!r} must stay inside _out/")
    sources = _strings(body.get("sources", []), rel, body, "sources")
    declared = _strings(body.get("vars", []), rel, body, "vars")
    if not isinstance(body.get("needs", []) or [], list):
        raise SpecError(where(rel, body, "needs"), "needs must be a list")
    needs = tuple(
        _need(item, rel, body, i, profile) for i, item in enumerate(body.get("needs", []) or [])
    )
    referenced = {(var, "vars") for var in declared}
    for text, key in [
        *((t, "params") for t in _texts(params)),
        *((o, "outputs") for o in outputs),
        *((s, "sources") for s in sources),
        *((n.arches, "needs") for n in needs),
        *((n.unless, "needs") for n in needs),
        *((n.when, "needs") for n in needs),
    ]:
        for ref in _names(text):
            if ref == "ARCH" and not per_arch:
                raise SpecError(
                    where(rel, body, key), f"${{ARCH}} in target {name!r}, which is not per_arch"
                )
            if ref == "PROFILE" and profile is None:
                raise SpecError(
                    where(rel, body, key), f"${{PROFILE}} in {name!r}, which has no profiles"
                )
            if ref not in BUILTIN_NAMES:
                referenced.add((ref, key))
    for var, key in sorted(referenced):
        if variables.lookup(var, specs.packages) is None:
            raise SpecError(
                where(rel, body, key),
                f"target {name!r} reads unknown variable {var!r}",
                hint="known are " + ", ".join([*variables.BY_NAME, *variables.family_docs()]),
            )
    for arch in (arches or variables.ARCHES) if per_arch else (None,):
        written = select_arch(_plain(params), arch)
        if step.check is not None:
            try:
                step.check(written)
            except ValueError as err:
                param = err.param if isinstance(err, steps.ParamError) else None
                at = where(rel, params, param) if param in params else where(rel, body, "params")
                raise SpecError(at, f"target {name!r}: {err}") from None
        _check_roles(step, written, needs, name,
                     where(rel, body, "needs") if "needs" in body else here)  # fmt: skip
    return TargetSpec(
        name=name,
        step=step.name,
        per_arch=per_arch,
        params=_plain(params),
        sources=tuple(sources),
        needs=needs,
        vars=tuple(sorted({var for var, _key in referenced})),
        declared_vars=tuple(declared),
        outputs=tuple(outputs),
        doc=str(body.get("doc", "")).strip() or f"{step.name} step",
        where=here,
        profile=profile,
        arches=arches,
    )


def _check_roles(
    step: steps.Step, params: dict[str, Any], needs: tuple[Need, ...], name: str, here: str
) -> None:
    """Every role the step requires is given by one of the target's needs."""
    for role in step.roles(params):
        if role.optional or any(role.given_by(need.target) for need in needs):
            continue
        names = ", ".join(need.target for need in needs)
        named = role.name.replace("%", "<profile>")
        raise SpecError(
            here,
            f"target {name!r}: step {step.name!r} reads its {role.name!r} input, and no need"
            f" gives it ({f'its needs are {names}' if needs else 'it has no needs'})",
            hint=f"need the target named {named} (a role is the name of the need that gives it)",
        )


def _arches(body: LDict, rel: str, name: str, per_arch: bool) -> tuple[str, ...] | None:
    """The ``arches`` of a target, in the order of variables.ARCHES; None when absent."""
    if "arches" not in body:
        return None
    here = where(rel, body, "arches")
    if not per_arch:
        raise SpecError(
            here,
            f"arches in target {name!r}, which is not per_arch",
            hint="arches limits the arches a per_arch target builds for",
        )
    listed = _strings(body["arches"], rel, body, "arches")
    for arch in listed:
        if arch not in variables.ARCHES:
            raise SpecError(
                here,
                f"target {name!r} lists unknown arch {arch!r};"
                f" known arches are {', '.join(variables.ARCHES)}",
            )
    if not listed:
        raise SpecError(here, f"target {name!r} lists no arch: name at least one, or drop arches")
    return tuple(arch for arch in variables.ARCHES if arch in listed)


def _need(item: Any, rel: str, body: LDict, index: int, profile: str | None) -> Need:
    here = where(rel, body.get("needs"), index)
    if isinstance(item, str):
        target, arches = item, "same"
    elif isinstance(item, dict) and "target" in item:
        _reject_unknown(item, NEED_KEYS, rel, "need")
        target, arches = str(item["target"]), str(item.get("arches", "same"))
        if arches not in ("same", "all") and not _PLAIN_REF.fullmatch(arches):
            raise SpecError(here, f"arches {arches!r}: use same, all or ${{VARIABLE}}")
        for key in ("unless", "when"):
            ref = str(item.get(key, ""))
            if ref and not _PLAIN_REF.fullmatch(ref):
                raise SpecError(here, f"{key} {ref!r}: give one ${{VARIABLE}}")
    else:
        raise SpecError(here, "a need is a target name or {target: NAME, arches: same|all}")
    if "%" in target:
        if profile is None:
            raise SpecError(
                here,
                f"need {target!r} has a %, which stands for the profile of a pattern's"
                " expansion; this target is no pattern",
                hint="name one of the targets it expands to",
            )
        target = target.replace("%", profile)
    if not isinstance(item, dict):
        return Need(target, arches, here)
    return Need(target, arches, here, str(item.get("unless", "")), str(item.get("when", "")))


def _check_cycles(specs: Specs) -> None:
    import networkx as nx

    deps = nx.DiGraph()
    for spec in specs.targets.values():
        deps.add_node(spec.name)
        for need in spec.needs:
            deps.add_edge(spec.name, need.target, where=need.where)
    if nx.is_directed_acyclic_graph(deps):  # linear; find_cycle alone is not
        return
    cycle = nx.find_cycle(deps)
    names = [edge[0] for edge in cycle] + [cycle[0][0]]
    lines = [f"{a} needs {b} at {deps.edges[a, b]['where']}" for a, b, *_ in cycle]
    raise SpecError(
        specs.targets[names[0]].where,
        "cycle: " + " -> ".join(names) + " (" + "; ".join(lines) + ")",
        hint="remove one of these needs",
    )


def _reject_unknown(mapping: dict, allowed: Iterable[str], rel: str, what: str) -> None:
    allowed = list(allowed)
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            raise SpecError(
                where(rel, mapping, key),
                f"unknown key {key!r} in {what}; allowed keys are {', '.join(allowed)}",
                hint=f"did you mean {close[0]!r}?" if close else None,
            )


def _mapping(value: Any, rel: str, parent: dict, key: str) -> dict:
    if not isinstance(value, dict):
        raise SpecError(where(rel, parent, key), f"{key!r} must be a mapping")
    return value


def _texts_keys(value: Any) -> set[str]:
    """Every mapping key anywhere in ``value``."""
    if isinstance(value, dict):
        return set(value).union(*(_texts_keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_texts_keys(v) for v in value))
    return set()


def _check_per_arch(value: Any, per_arch: bool, here: str, name: str) -> None:
    if isinstance(value, dict):
        if PER_ARCH in value:
            branches = value[PER_ARCH]
            if len(value) != 1 or not isinstance(branches, dict):
                raise SpecError(here, f"{name}: per_arch must be alone, mapping arch -> value")
            if not per_arch:
                raise SpecError(here, f"per_arch in target {name!r}, which is not per_arch")
            unknown = sorted(set(branches) - set(variables.ARCHES))
            if unknown:
                raise SpecError(
                    here,
                    f"{name}: per_arch names unknown arch {unknown[0]!r};"
                    f" known: {', '.join(variables.ARCHES)}",
                )
            if any(PER_ARCH in _texts_keys(branch) for branch in branches.values()):
                raise SpecError(here, f"{name}: per_arch inside per_arch")
            return
        for item in value.values():
            _check_per_arch(item, per_arch, here, name)
    elif isinstance(value, list):
        for item in value:
            _check_per_arch(item, per_arch, here, name)


def _strings(value: Any, rel: str, parent: dict, key: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise SpecError(where(rel, parent, key), f"{key!r} must be a list of strings")
    return [str(v) for v in value]


def _texts(value: Any) -> Iterable[str]:
    """Every string inside nested params."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)


def _plain(value: Any) -> Any:
    """Strip line bookkeeping so specs hash and compare as plain data."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


PER_ARCH = "per_arch"


def select_arch(value: Any, arch: str | None) -> Any:
    """``value`` with every ``{per_arch: {arch: v, ...}}`` replaced by this arch's ``v``;
    a mapping entry whose per-arch value has no branch for ``arch`` is left out."""
    if isinstance(value, dict):
        if set(value) == {PER_ARCH}:
            return value[PER_ARCH].get(arch, _ABSENT)
        chosen = {k: select_arch(v, arch) for k, v in value.items()}
        return {k: v for k, v in chosen.items() if v is not _ABSENT}
    if isinstance(value, list):
        return [v for v in (select_arch(item, arch) for item in value) if v is not _ABSENT]
    return value


_ABSENT = object()


def references(value: Any) -> set[str]:
    """The variables ``${NAME}`` in every string of ``value``."""
    return {ref for text in _texts(value) for ref in _names(text)}


def _names(text: str) -> list[str]:
    return [match.group(1) for match in _REF.finditer(text.replace("$$", ""))]


def substitute(value: Any, lookup: dict[str, str]) -> Any:
    """Replace ``${NAME}``, ``${NAME:+text}`` and ``${NAME:-text}`` in every string of
    ``value``; ``$$`` stands for ``$``."""
    if isinstance(value, str):
        if "$" not in value:
            return value

        def value_of(match: re.Match[str]) -> str:
            found, operator, text = lookup[match.group(1)], match.group(2), match.group(3)
            if operator is None:
                return found
            given = variables.is_set(found)
            if operator == "+":
                return text if given else ""
            return found if given else text

        return _REF.sub(value_of, value.replace("$$", "\0")).replace("\0", "$")
    if isinstance(value, dict):
        return {k: substitute(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, lookup) for v in value]
    return value
