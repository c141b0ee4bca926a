"""Running one node's step in a scratch directory: what a local build and a cluster
worker share.

The caller keys the node and records the result; this links the dependencies' outputs in
from the CAS, runs the step with its errors said as the node's, checks that it wrote
exactly its declared outputs and left its inputs alone, and hashes the outputs into the
CAS. It knows nothing of where the inputs came from or where the result goes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from . import log
from . import step as steps
from .errors import DISK_ERRNOS, BuildgraphError, StepFailedError
from .nodeplan import NodePlan
from .store import Outputs, Store


def link_inputs(store: Store, directory: Path, outputs: Outputs) -> dict[str, Path]:
    """A dependency's outputs under their own names (unique in a goal), linked from the CAS."""
    linked = {}
    for name, (digest, _size) in outputs.items():
        path = directory / name
        if "/" in name:
            path.parent.mkdir(parents=True, exist_ok=True)
        source = store.object_path(digest)
        try:
            os.link(source, path)
        except OSError:
            shutil.copyfile(source, path)
        linked[name] = path
    return linked


def run_step(
    store: Store,
    node: NodePlan,
    scratch: Path,
    root: Path,
    deps: Mapping[str, Outputs],
    tool_paths: dict[str, str],
    probed: str | None,
    settled: Callable[[], None] = lambda: None,
) -> Outputs:
    """Run ``node``'s step on ``deps`` (label -> outputs, in the CAS) with sources under
    ``root``; returns its outputs, hashed into the CAS. ``settled`` runs once the step is
    done, before anything is hashed (a check that the sources did not change meanwhile)."""
    step = steps.get(node.step, node.label)
    out_dir = scratch / "out"
    inputs = {dep: link_inputs(store, scratch / "in", outputs) for dep, outputs in deps.items()}
    umask = os.umask(0o022)  # no output may depend on the user's umask
    try:
        with log.progress(node.label) as say:
            ctx = steps.StepContext(
                params=node.params,
                arch=node.arch,
                root=root,
                sources=[root / src for src in node.sources],
                inputs=inputs,
                out_dir=out_dir,
                outputs=node.outputs,
                tool_paths=tool_paths,
                cache_dir=store.root / "steps",
                probed=probed,
                progress=say,
            )
            try:
                step.run(ctx)
            except BuildgraphError as err:
                raise StepFailedError(
                    f"{node.label}: step {node.step} failed: {err.message}", hint=err.hint
                ) from None
            except Exception as err:
                if isinstance(err, OSError) and err.errno in DISK_ERRNOS:
                    err.filename = err.filename or str(out_dir)  # write(2) names none
                    raise  # a full or read-only disk, not the step's fault: said as such
                raise StepFailedError(
                    f"{node.label}: step {node.step} crashed: {type(err).__name__}: {err}"
                ) from err
    finally:
        os.umask(umask)
    settled()
    for dep, outputs in deps.items():
        for name, (digest, _size) in outputs.items():
            if not store.has_object(digest):
                raise StepFailedError(
                    f"{node.label}: step {node.step} modified its input {dep}/{name}",
                    hint="inputs are shared with the cache: write to $OUT instead",
                )
    check_produced(node, out_dir)
    return {name: store.put_file(out_dir / name) for name in node.outputs}


def check_produced(node: NodePlan, out_dir: Path) -> None:
    """The step must leave exactly its declared outputs, as regular files."""
    produced: dict[str, os.DirEntry] = {}
    stack = [("", str(out_dir))]
    while stack:
        prefix, directory = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((f"{prefix}{entry.name}/", entry.path))
                else:
                    produced[prefix + entry.name] = entry
    if produced.keys() == set(node.outputs) and all(
        entry.is_file(follow_symlinks=False) for entry in produced.values()
    ):
        return
    problems = []
    missing = sorted(set(node.outputs) - set(produced))
    extra = sorted(set(produced) - set(node.outputs))
    links = sorted(
        name for name, entry in produced.items() if name in node.outputs and entry.is_symlink()
    )
    odd = sorted(
        name
        for name, entry in produced.items()
        if name in node.outputs and not entry.is_symlink() and not entry.is_file()
    )
    if missing:
        problems.append(f"did not write {', '.join(missing)}")
    if extra:
        problems.append(f"wrote undeclared {', '.join(extra)}")
    if links:
        problems.append(f"wrote {', '.join(links)} as symbolic links, not files")
    if odd:
        problems.append(f"wrote {', '.join(odd)} as special files, not regular files")
    if problems:
        raise StepFailedError(f"{node.label}: step {node.step} " + "; ".join(problems))
