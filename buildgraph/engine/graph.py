"""The build graph: (target, arch) nodes of the goal and its ancestors.

Specs are templates; this module instantiates them for the variables in force. Each
node becomes a :class:`NodePlan` whose params, outputs and sources are final, listed
in a deterministic topological order. Only the goal's ancestors are ever expanded.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

import networkx as nx

from . import step as steps
from .errors import SpecError, UnknownTargetError
from .hashing import encode
from .nodeplan import NodePlan, static_components
from .specs import Need, Specs, TargetSpec, arch_not_built, references, select_arch, substitute
from .variables import ARCHES, Values, is_set, lookup

_GLOB = set("*?[")


def label_of(target: str, arch: str | None) -> str:
    return f"{target}:{arch}" if arch else target


def goal_labels(
    specs: Specs, values: Values, goal: Iterable[str], strict: bool = True
) -> dict[str, list[str]]:
    """Each goal item's labels: ``iso`` -> one per arch of PLATFORM it builds for, ``iso:amd64``
    -> that one; an alias -> its members' (``images:amd64``: their amd64 nodes).

    A target named outright must build what it is asked for: a user who names it wants
    it. An alias's members that do not are left out, and so is everything when not
    ``strict`` (``doit list``); an alias that leaves out every member is refused.
    """
    asked: dict[str, list[str]] = {}
    goal = list(goal)
    for index, item in enumerate(goal):
        name, _, arch = item.partition(":")
        members = specs.aliases.get(name)
        if members is None and name not in specs.targets:
            _check_not_a_variable(specs, item, goal[index + 1 : index + 2])
            specs.resolve(name)  # raises: an unknown target, said before its arch
        if arch and arch not in ARCHES:
            raise UnknownTargetError(
                f"unknown arch {arch!r} in {item!r}: known arches are {', '.join(ARCHES)}"
            )
        if members is None:
            spec = specs.resolve(name)
            labels = _labels(spec, arch, values)
            if not labels and strict:
                raise _nothing_to_build(spec, arch, item, values)
        else:
            if arch and arch not in values.arches():
                raise _not_in_platform(item, arch, values)
            labels = [label for m in members for label in _labels(specs.targets[m], arch, values)]
            if not labels and strict:
                raise UnknownTargetError(
                    f"alias {name!r}: none of its targets ({', '.join(members)}) builds for"
                    + (f" {arch}" if arch else f" PLATFORM={values['PLATFORM']}"),
                    hint="`doit list` shows what each target builds",
                )
        asked[item] = labels
    return asked


def _check_not_a_variable(specs: Specs, item: str, following: list[str]) -> None:
    """``doit iso GOAMD64 v3``: a variable and its value where NAME=value was meant."""
    if lookup(item, specs.packages) is None:
        return
    value = following[0] if following and "=" not in following[0] else "<value>"
    raise UnknownTargetError(
        f"{item!r} is a variable, not a target; did you mean {item}={value}?",
        hint="variables are given as NAME=value, with no space around =",
    )


def _labels(spec: TargetSpec, arch: str, values: Values) -> list[str]:
    """The labels of ``spec`` for ``arch`` ("": every arch) that PLATFORM and it allow."""
    if not spec.per_arch:
        return [] if arch else [spec.name]
    return [
        label_of(spec.name, a) for a in values.arches() if spec.builds_for(a) and arch in ("", a)
    ]


def _nothing_to_build(spec: TargetSpec, arch: str, item: str, values: Values) -> UnknownTargetError:
    """Why goal ``item`` gives no label of ``spec``."""
    if not spec.per_arch:
        return UnknownTargetError(f"target {spec.name!r} is not per-arch; ask for {spec.name!r}")
    if spec.arches is None or (arch and spec.builds_for(arch)):
        return _not_in_platform(item, arch, values)
    only = f"target {spec.name!r} builds for {', '.join(spec.arches)} only"
    if arch:
        return UnknownTargetError(
            f"{only}; {item!r} asks for {arch}",
            hint="ask for " + " or ".join(f"{spec.name}:{a}" for a in spec.arches),
        )
    return UnknownTargetError(
        f"{only}; PLATFORM={values['PLATFORM']} asks for none of them",
        hint=f"add {' or '.join(f'linux/{a}' for a in spec.arches)} to PLATFORM",
    )


def _not_in_platform(item: str, arch: str, values: Values) -> UnknownTargetError:
    return UnknownTargetError(
        f"arch {arch!r} of {item!r} is not in PLATFORM={values['PLATFORM']}",
        hint=f"add linux/{arch} to PLATFORM",
    )


def expand(
    specs: Specs, values: Values, goal: Iterable[str], strict: bool = True
) -> tuple[nx.DiGraph, dict[str, list[str]]]:
    """The DAG of the goal's nodes and all their ancestors, edges pointing dep -> user;
    and each goal item's labels (see :func:`goal_labels`)."""
    asked = goal_labels(specs, values, goal, strict)
    graph = nx.DiGraph()
    stack = [label for labels in asked.values() for label in labels]
    while stack:
        label = stack.pop()
        if graph.nodes.get(label, {}).get("spec") is not None:
            continue
        target, _, arch = label.partition(":")
        spec = specs.resolve(target)
        graph.add_node(label, spec=spec, arch=arch or None)
        for need in spec.needs:
            for dep in _dep_labels(specs, values, spec, arch or None, need):
                graph.add_edge(dep, label)
                stack.append(dep)
    _check_outputs(graph, values)
    return graph, asked


def _dep_labels(
    specs: Specs, values: Values, spec: TargetSpec, arch: str | None, need: Need
) -> list[str]:
    if need.unless and is_set(values[need.unless[2:-1]]):
        return []
    if need.when and not is_set(values[need.when[2:-1]]):
        return []
    dep = specs.resolve(need.target)
    if not dep.per_arch:
        return [dep.name]
    mode = need.arches
    if mode.startswith("${"):
        name = mode[2:-1]
        mode = values[name]
        row = lookup(name, values.packages)
        mode = row.as_arches.get(mode, mode) if row is not None else mode
        if mode not in ("same", "all"):
            raise SpecError(need.where, f"arches of need {need.target!r} resolved to {mode!r}")
    if arch is None or mode == "all":
        return [label_of(dep.name, a) for a in values.arches() if dep.builds_for(a)]
    if not dep.builds_for(arch):
        raise arch_not_built(spec, dep, arch, need)
    return [label_of(dep.name, arch)]


def _check_outputs(graph: nx.DiGraph, values: Values) -> None:
    owner: dict[str, str] = {}
    directories: dict[str, str] = {}
    """Each directory some output lies in -> that output."""
    for label, data in graph.nodes(data=True):
        for out in output_names(data["spec"], data["arch"], values):
            path = Path(out)
            if (
                not out
                or path.is_absolute()
                or ".." in path.parts
                or any(len(part.encode()) > 200 for part in path.parts)
            ):
                raise SpecError(
                    data["spec"].where,
                    f"output {out!r} of {label} must be a relative path inside _out/ "
                    "with names of at most 200 bytes",
                )
            clash = next((d for d in _parents(out) if d in owner), None)
            if clash is None and out in directories:
                clash = directories[out]
            if clash is not None:
                raise SpecError(
                    data["spec"].where,
                    f"output {out!r} of {label} and output {clash!r} of {owner[clash]} "
                    "cannot both exist: one is a directory of the other",
                )
            for parent in _parents(out):
                directories.setdefault(parent, out)
            if out in owner:
                raise SpecError(
                    data["spec"].where,
                    f"output {out!r} of {label} is also an output of {owner[out]}",
                    hint="give each target its own output names (use ${ARCH} in per-arch ones)",
                )
            owner[out] = label


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _node_vars(spec: TargetSpec, params: dict) -> tuple[str, ...]:
    """The variables one node reads: per_arch branches of other arches do not count."""
    if params is spec.params:
        return spec.vars
    read = references([params, list(spec.outputs), list(spec.sources)])
    read |= {
        ref for need in spec.needs for ref in references([need.arches, need.unless, need.when])
    }
    return tuple(v for v in spec.vars if v in read or v in spec.declared_vars)


def _lookup(spec: TargetSpec, arch: str | None, values: Values) -> dict[str, str]:
    table = {name: values[name] for name in spec.vars}
    if arch:
        table["ARCH"] = arch
    if spec.profile is not None:
        table["PROFILE"] = spec.profile
    return table


def output_names(spec: TargetSpec, arch: str | None, values: Values) -> list[str]:
    return substitute(list(spec.outputs), _lookup(spec, arch, values))


def compile_nodes(
    graph: nx.DiGraph, values: Values, root: Path
) -> tuple[list[NodePlan], dict[str, int]]:
    """Final node plans in topological order, and the directories their globs walked."""
    walked: dict[str, int] = {}
    plans = []
    for label in nx.lexicographical_topological_sort(graph):
        data = graph.nodes[label]
        spec: TargetSpec = data["spec"]
        arch = data["arch"]
        lookup = _lookup(spec, arch, values)
        selected = select_arch(spec.params, arch) if arch else spec.params
        params = substitute(selected, lookup)
        outputs = tuple(substitute(list(spec.outputs), lookup))
        step = steps.get(spec.step, spec.where)
        if step.check is not None and params != spec.params:
            try:
                step.check(params)
            except ValueError as err:
                raise SpecError(spec.where, f"{label}: {err}") from None
        named = substitute(list(spec.sources), lookup)
        named += step.reads(params) if step.reads else []
        sources = tuple(_expand_sources(named, root, spec, walked))
        node = NodePlan(
            label=label,
            target=spec.name,
            arch=arch,
            step=step.name,
            step_version=step.version,
            params=params,
            outputs=outputs,
            sources=sources,
            deps=tuple(graph.predecessors(label)),  # in the order of needs
            vars=_node_vars(spec, selected),
            tools=step.tools,
            probed=step.probe is not None,
            static_encoded="",
            doc=spec.doc,
        )
        plans.append(node._replace(static_encoded=encode(static_components(node))))
    return plans, walked


def _expand_sources(
    patterns: list[str], root: Path, spec: TargetSpec, walked: dict[str, int]
) -> list[str]:
    found: list[str] = []
    for pattern in patterns:
        path = root / pattern
        if not _GLOB & set(pattern):
            if path.is_file():
                found.append(pattern)
                continue
            if path.is_dir():
                found.extend(_walk(path, root, walked))
                continue
            raise SpecError(spec.where, f"target {spec.name!r}: source {pattern!r} does not exist")
        static = root
        for part in Path(pattern).parts:
            if _GLOB & set(part):
                break
            static = static / part
        _walk(static, root, walked)
        matches = sorted(
            name
            for name in glob.glob(pattern, root_dir=root, recursive=True)
            if os.path.isfile(root / name) and not _ignored(Path(name).parts)
        )
        if not matches:
            raise SpecError(
                spec.where, f"target {spec.name!r}: source glob {pattern!r} matches no file"
            )
        found.extend(matches)
    for name in found:
        try:
            name.encode()
        except UnicodeEncodeError:
            raise SpecError(
                spec.where,
                f"target {spec.name!r}: source {name.encode(errors='replace').decode()!r} "
                "has a name that is not UTF-8; rename it",
            ) from None
    return list(dict.fromkeys(found))


def _ignored(parts: tuple[str, ...]) -> bool:
    """Build outputs and hidden directories are never sources."""
    return bool(parts) and (parts[0] == "_out" or any(p.startswith(".") for p in parts[:-1]))


def _walk(directory: Path, root: Path, walked: dict[str, int]) -> list[str]:
    """Files below ``directory``, remembering every directory's mtime: a new file changes one.

    Symbolic links to directories are followed, as globs follow them, once each.
    """
    files: list[str] = []
    seen: set[tuple[int, int]] = set()
    for current, dirs, names in os.walk(directory, followlinks=True):
        st = os.stat(current)
        rel = os.path.relpath(current, root)
        if (st.st_dev, st.st_ino) in seen or _ignored((*Path(rel).parts, "")):
            dirs.clear()
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        walked[rel] = st.st_mtime_ns
        files.extend(
            Path(rel, name).as_posix()
            for name in sorted(names)
            if os.path.isfile(Path(current, name))
        )
    return files
