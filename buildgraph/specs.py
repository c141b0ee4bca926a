"""Target specs: the data in ``targets/*.yaml``, loaded and validated.

A spec file holds ``targets`` (name -> spec) and optionally ``default`` (the goal of a
bare ``doit``), ``variables`` (defaults that are data, such as the pinned PKGS tag) and
``packages`` (the names that make ``PKG_<NAME>`` variables). A target named with a
``%`` and a ``profiles`` directory expands to one target per profile file, so
``image-%`` with ``profiles/aws.yaml`` gives ``image-aws``.

Everything is checked here, before any graph exists: unknown keys, missing fields,
unknown steps, unknown variables and targets, and cycles, each with file and line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import steps, variables
from .errors import SpecError, UnknownTargetError
from .yamlsrc import LDict, load, where

TARGET_KEYS = {
    "doc": "one line for `doit list`",
    "step": "the step that builds it",
    "per_arch": "true: one node per arch in PLATFORM",
    "params": "step parameters; strings may use ${VARIABLE}, ${ARCH}, ${PROFILE};"
    " {per_arch: {amd64: x, arm64: y}} gives each arch its own value",
    "sources": "repo files and globs it reads",
    "needs": "targets whose outputs it reads: a name, or {target, arches: same|all}",
    "vars": "variables it reads beyond those its params name",
    "outputs": "file names it produces in _out/",
    "profiles": "for a name with %: the directory of profile files it expands over",
}
FILE_KEYS = ("targets", "default", "variables", "packages")
NEED_KEYS = ("target", "arches")
BUILTIN_NAMES = ("ARCH", "PROFILE")
_REF = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


@dataclass(frozen=True)
class Need:
    target: str
    arches: str  # "same", "all", or a ${VAR} whose value is "all" or "targetarch"
    where: str


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


@dataclass
class Specs:
    root: Path
    targets: dict[str, TargetSpec] = field(default_factory=dict)
    patterns: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
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
        close = difflib.get_close_matches(name, list(self.targets), n=1)
        raise UnknownTargetError(
            f"unknown target {name!r}; known targets are {', '.join(sorted(self.targets))}",
            hint=f"did you mean {close[0]}?" if close else "`doit list` shows them with docs",
        )


def load_specs(root: Path) -> Specs:
    """Load and validate every spec file under ``root/targets``."""
    specs = Specs(root=root)
    base = root / "targets"
    if not base.is_dir():
        raise SpecError(str(base), "no targets/ directory", hint="run from the repository root")
    raw_targets: list[tuple[str, str, LDict, LDict]] = []
    packages: set[str] = set()
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
            if name in {t[0] for t in raw_targets}:
                raise SpecError(where(rel, doc["targets"], name), f"target {name!r} defined twice")
            if not isinstance(body, dict):
                raise SpecError(
                    where(rel, doc["targets"], name), f"target {name!r} must be a mapping"
                )
            raw_targets.append((name, rel, body, doc["targets"]))
        if "default" in doc:
            specs.default = _strings(doc["default"], rel, doc, "default")
        for var, value in _mapping(doc.get("variables", LDict()), rel, doc, "variables").items():
            if variables.lookup(var) is None:
                raise SpecError(where(rel, doc["variables"], var), f"unknown variable {var!r}")
            specs.variables[var] = str(value)
        packages.update(_strings(doc.get("packages", []), rel, doc, "packages"))
    specs.packages = frozenset(packages)
    for name, rel, body, parent in raw_targets:
        if "%" in name:
            _expand_pattern(specs, name, rel, body, parent)
        else:
            specs.targets[name] = _target(specs, name, rel, body, parent, None)
    for spec in specs.targets.values():
        for need in spec.needs:
            if need.target not in specs.targets:
                try:
                    specs.resolve(need.target)
                except UnknownTargetError as err:
                    raise SpecError(need.where, f"target {spec.name!r} needs {err}") from None
    for name in specs.default:
        if name.split(":", 1)[0] not in specs.targets:
            raise SpecError(
                f"{specs.files[0].relative_to(root)}", f"default goal {name!r} is no target"
            )
    _check_cycles(specs)
    return specs


def _expand_pattern(specs: Specs, name: str, rel: str, body: LDict, parent: LDict) -> None:
    if name.count("%") != 1 or "profiles" not in body:
        raise SpecError(
            where(rel, parent, name),
            f"pattern target {name!r} needs exactly one % and a 'profiles' directory",
        )
    directory = str(body["profiles"])
    profile_dir = specs.root / "targets" / directory
    if not profile_dir.is_dir():
        raise SpecError(
            where(rel, body, "profiles"), f"profile directory targets/{directory} is missing"
        )
    stems = []
    specs.files.append(profile_dir)
    for path in sorted(profile_dir.glob("*.yaml")):
        stem = path.stem
        profile_rel = path.relative_to(specs.root).as_posix()
        specs.files.append(path)
        data = load(path, profile_rel)
        if not isinstance(data, dict):
            raise SpecError(f"{profile_rel}:1", "a profile must be a mapping")
        expanded = name.replace("%", stem)
        if expanded in specs.targets:
            raise SpecError(
                where(rel, parent, name), f"profile {stem!r} clashes with target {expanded!r}"
            )
        spec = _target(specs, expanded, rel, body, parent, stem)
        _check_per_arch(data, spec.per_arch, profile_rel, f"profile {stem!r}")
        read = references(data) - set(BUILTIN_NAMES)
        for var in sorted(read):
            if variables.lookup(var, specs.packages) is None:
                raise SpecError(
                    f"{profile_rel}:1",
                    f"profile {stem!r} reads unknown variable {var!r}",
                    hint="known are " + ", ".join(variables.BY_NAME) + " and PKG_<package>",
                )
        params = dict(spec.params)
        params["profile"] = _plain(data)
        specs.targets[expanded] = TargetSpec(
            **{
                **spec.__dict__,
                "params": params,
                "sources": (*spec.sources, profile_rel),
                "vars": tuple(sorted({*spec.vars, *read})),
            }
        )
        stems.append(stem)
    specs.patterns[name] = (f"targets/{directory}", stems)


def _target(
    specs: Specs, name: str, rel: str, body: LDict, parent: LDict, profile: str | None
) -> TargetSpec:
    here = where(rel, parent, name)
    allowed = set(TARGET_KEYS) - (set() if profile is not None else {"profiles"})
    _reject_unknown(body, allowed, rel, f"target {name!r}")
    for required in ("step", "outputs"):
        if required not in body:
            raise SpecError(
                here, f"target {name!r} is missing {required!r}: {TARGET_KEYS[required]}"
            )
    step = steps.get(str(body["step"]), where(rel, body, "step"))
    per_arch = body.get("per_arch", False)
    if not isinstance(per_arch, bool):
        raise SpecError(where(rel, body, "per_arch"), "per_arch must be true or false")
    params = body.get("params", LDict())
    if not isinstance(params, dict):
        raise SpecError(where(rel, body, "params"), "params must be a mapping")
    if PER_ARCH in params:
        raise SpecError(
            where(rel, body, "params"),
            f"target {name!r}: per_arch goes on a param's value, not on params itself",
        )
    _check_per_arch(params, per_arch, where(rel, body, "params"), name)
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
    needs = tuple(_need(item, rel, body, i) for i, item in enumerate(body.get("needs", []) or []))
    referenced = set(declared)
    for text, key in [
        *((t, "params") for t in _texts(params)),
        *((o, "outputs") for o in outputs),
        *((s, "sources") for s in sources),
        *((n.arches, "needs") for n in needs),
    ]:
        for ref in _REF.findall(text.replace("$$", "")):
            if ref == "ARCH" and not per_arch:
                raise SpecError(
                    where(rel, body, key), f"${{ARCH}} in target {name!r}, which is not per_arch"
                )
            if ref == "PROFILE" and profile is None:
                raise SpecError(
                    where(rel, body, key), f"${{PROFILE}} in {name!r}, which has no profiles"
                )
            if ref not in BUILTIN_NAMES:
                referenced.add(ref)
    for var in sorted(referenced):
        if variables.lookup(var, specs.packages) is None:
            raise SpecError(
                here,
                f"target {name!r} reads unknown variable {var!r}",
                hint="known are " + ", ".join(variables.BY_NAME) + " and PKG_<package>",
            )
    if step.check is not None:
        try:
            for arch in variables.ARCHES if per_arch else (None,):
                step.check(select_arch(_plain(params), arch))
        except ValueError as err:
            raise SpecError(where(rel, body, "params"), f"target {name!r}: {err}") from None
    return TargetSpec(
        name=name,
        step=step.name,
        per_arch=per_arch,
        params=_plain(params),
        sources=tuple(sources),
        needs=needs,
        vars=tuple(sorted(referenced)),
        declared_vars=tuple(declared),
        outputs=tuple(outputs),
        doc=str(body.get("doc", "")).strip() or f"{step.name} step",
        where=here,
        profile=profile,
    )


def _need(item: Any, rel: str, body: LDict, index: int) -> Need:
    here = where(rel, body.get("needs"), index)
    if isinstance(item, str):
        return Need(item, "same", here)
    if isinstance(item, dict) and "target" in item:
        _reject_unknown(item, NEED_KEYS, rel, "need")
        arches = str(item.get("arches", "same"))
        if arches not in ("same", "all") and not _REF.fullmatch(arches):
            raise SpecError(here, f"arches {arches!r}: use same, all or ${{VARIABLE}}")
        return Need(str(item["target"]), arches, here)
    raise SpecError(here, "a need is a target name or {target: NAME, arches: same|all}")


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
    return {ref for text in _texts(value) for ref in _REF.findall(text.replace("$$", ""))}


def substitute(value: Any, lookup: dict[str, str]) -> Any:
    """Replace ``${NAME}`` in every string of ``value``; ``$$`` stands for ``$``."""
    if isinstance(value, str):
        if "$" not in value:
            return value
        return _REF.sub(lambda m: lookup[m.group(1)], value.replace("$$", "\0")).replace("\0", "$")
    if isinstance(value, dict):
        return {k: substitute(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, lookup) for v in value]
    return value
