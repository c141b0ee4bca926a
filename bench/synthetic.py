"""Synthetic scale benchmark: buildgraph against plain doit and ninja.

Why this exists: buildgraph promises that a build with nothing to do costs a few stats,
not a doit task per node. This script checks that promise where it matters, on large
graphs of trivial steps, against the two obvious baselines measured in the same run:
plain doit (a dodo.py with file_dep and targets, buildgraph's own front end without
buildgraph) and ninja (the floor).

For each size it generates one layered graph: layers of width round(sqrt(N)), every
node with one small source file and 2-3 dependencies picked (seeded) from a window of
three around its position in the layer below, and a node ``top`` that needs every node
nothing else needs, so ``top`` builds the whole graph. Picking dependencies near the
node's own position makes a change ripple up as a cone rather than through the whole
graph in a few layers. Every node runs the same command in all three systems::

    cat <its source> <its dependencies' outputs> | cksum > <its output>

(``cksum`` keeps every output one short line: a bare ``cat`` would multiply the size
of the outputs by about 2.5 per layer.)

Each system is timed in separate processes, by wall clock, as a user would pay:

* cold: from no build state at all (buildgraph: an empty cache), builds everything;
* no-op: the same command again (median of ``--repeat`` runs) and its peak RSS;
* one-leaf change: one source of a first-layer node edited, then the build again
  (median of ``--repeat`` edits); the script asserts that all three systems rerun the
  same, expected number of steps and end with the same bytes in ``top``'s output.

Usage::

    python bench/synthetic.py --nodes 1000 10000 --repeat 5 [--jobs 1] [--write]

``--write`` puts the results in BENCHMARKS.md, between the markers of that ``--jobs``.
"""

from __future__ import annotations

import argparse
import compileall
import itertools
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import REPO, WORK, doit_path, exclusive, host, revision, say, write_section

ENGINE = WORK / "engine"
"""A copy of buildgraph/ taken at the start, first on buildgraph's PYTHONPATH: the run
measures one version of the engine even if the checkout is edited meanwhile."""
MARKER = "<!-- bench/synthetic.py --jobs {jobs}: {edge} -->"
"""Delimits the section ``--write`` replaces; each job count has its own."""

NOOP_GOAL_SECONDS = 0.25
"""At 10,000 nodes (issue #12), and at most this fraction of plain doit's no-op:"""
NOOP_GOAL_FRACTION_OF_DOIT = 1 / 4
NOOP_GOAL_NODES = 10_000
COLD_GOAL_OF_NINJA = 1.5
"""Cold build per step: at most plain doit's, and the goal within this factor of ninja's."""
LEAF_GOAL_OF_NINJA = 1.2
"""One-leaf change: at most our no-op plus this factor of ninja's time for the same steps."""

# -- the graph ---------------------------------------------------------------------


@dataclass(frozen=True)
class Graph:
    """Node name -> sorted dependency names, in topological order, ``top`` last."""

    deps: dict[str, list[str]]
    width: int
    layers: int
    leaf: str
    """The first-layer node whose source the one-leaf change edits."""

    def __len__(self) -> int:
        return len(self.deps)

    def affected_by(self, name: str) -> int:
        """How many nodes must rerun when ``name``'s source changes: it and its users."""
        users: dict[str, list[str]] = {n: [] for n in self.deps}
        for node, deps in self.deps.items():
            for dep in deps:
                users[dep].append(node)
        seen = {name}
        stack = [name]
        while stack:
            for user in users[stack.pop()]:
                if user not in seen:
                    seen.add(user)
                    stack.append(user)
        return len(seen)


def layered_graph(size: int, seed: int) -> Graph:
    """``size`` nodes: ``size - 1`` in layers of width round(sqrt(size)), then ``top``."""
    if size < 3:
        raise ValueError("a graph needs at least 3 nodes")
    rng = random.Random(seed)
    width = max(1, round(math.sqrt(size)))
    digits = len(str(size - 2))
    names = [f"n{i:0{digits}d}" for i in range(size - 1)]
    layers = [names[i : i + width] for i in range(0, len(names), width)]
    deps: dict[str, list[str]] = {name: [] for name in layers[0]}
    for below, layer in itertools.pairwise(layers):
        for position, name in enumerate(layer):
            window = below[max(0, position - 1) : position + 2]
            deps[name] = sorted(rng.sample(window, min(len(window), rng.choice((2, 3)))))
    needed = {dep for node_deps in deps.values() for dep in node_deps}
    deps["top"] = [name for name in names if name not in needed]
    return Graph(deps=deps, width=width, layers=len(layers), leaf=names[0])


def write_sources(root: Path, graph: Graph) -> None:
    src = root / "src"
    src.mkdir(parents=True)
    for name in graph.deps:
        (src / f"{name}.txt").write_text(f"{name}\n")


# -- the systems -------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    seconds: float
    max_rss_mib: float
    reran: int


class System:
    """One build system's copy of the graph: its files, state and command line."""

    name = ""

    def __init__(self, root: Path, jobs: int) -> None:
        self.root = root
        self.jobs = jobs

    def write(self, graph: Graph) -> None:
        """Write the project: sources plus this system's description of the graph."""
        write_sources(self.root, graph)

    def reset(self) -> None:
        """Forget every build result, so the next run is cold."""
        shutil.rmtree(self.root / "_out", ignore_errors=True)

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def reran(self, stdout: str, stderr: str) -> int:
        """How many steps ran, from what the build printed."""
        raise NotImplementedError

    def top_output(self) -> Path:
        return self.root / "_out" / "top.out"

    def build(self) -> Run:
        """Run the build once in a process of its own; fails loudly if the build fails."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            started = time.perf_counter()
            proc = subprocess.Popen(
                self.argv(), cwd=self.root, env=self.env(), stdout=out, stderr=err
            )
            _pid, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - started
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
        if proc.returncode != 0:
            raise SystemExit(
                f"{self.name} failed in {self.root} (exit {proc.returncode}):\n"
                f"{stdout[-2000:]}\n{stderr[-2000:]}"
            )
        return Run(seconds, usage.ru_maxrss / 1024, self.reran(stdout, stderr))


def _jobs_option(jobs: int) -> list[str]:
    return [] if jobs == 1 else ["-n", str(jobs)]


class Buildgraph(System):
    name = "buildgraph"

    @property
    def cache(self) -> Path:
        return self.root.parent / f"{self.root.name}-cache"

    def write(self, graph: Graph) -> None:
        super().write(graph)
        shutil.copy(REPO / "dodo.py", self.root / "dodo.py")
        shutil.copy(REPO / "pyproject.toml", self.root / "pyproject.toml")
        lines = ["default: [top]", "targets:"]
        for name, deps in graph.deps.items():
            lines += [
                f"  {name}:",
                "    step: shell",
                f"    sources: [src/{name}.txt]",
                *([f"    needs: [{', '.join(deps)}]"] if deps else []),
                f"    params: {{script: 'cat $SRCS $DEPS | cksum > $OUT/{name}.out'}}",
                f"    outputs: [{name}.out]",
            ]
        (self.root / "targets").mkdir()
        (self.root / "targets" / "graph.yaml").write_text("\n".join(lines) + "\n")

    def reset(self) -> None:
        super().reset()
        shutil.rmtree(self.cache, ignore_errors=True)

    def argv(self) -> list[str]:
        return [doit_path(), *_jobs_option(self.jobs), "top"]

    def env(self) -> dict[str, str]:
        env = super().env()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ENGINE), env.get("PYTHONPATH")]))
        env.pop("BUILDGRAPH_LOG", None)  # console mode: one "built <node>" line per step
        env["BUILDGRAPH_CACHE"] = str(self.cache)
        return env

    def reran(self, stdout: str, stderr: str) -> int:
        # Not anchored: with --jobs, two workers' lines can end up on one line.
        return len(re.findall(r"built +\S+ in [0-9.]+s", stderr))


PLAIN_DODO = '''\
"""Plain doit build of the synthetic graph, written by bench/synthetic.py."""

import json
from pathlib import Path

DOIT_CONFIG = {"default_tasks": ["top"]}
GRAPH = json.loads(Path("graph.json").read_text())
Path("_out").mkdir(exist_ok=True)


def task_graph():
    for name, deps in GRAPH.items():
        inputs = [f"src/{name}.txt", *(f"_out/{dep}.out" for dep in deps)]
        target = f"_out/{name}.out"
        yield {
            "basename": name,
            "actions": [f"cat {' '.join(inputs)} | cksum > {target}"],
            "file_dep": inputs,
            "targets": [target],
        }
'''


class PlainDoit(System):
    name = "plain doit"

    def write(self, graph: Graph) -> None:
        super().write(graph)
        (self.root / "dodo.py").write_text(PLAIN_DODO)
        entries = ",\n".join(
            f'  "{name}": [{", ".join(f"{dep!r}" for dep in deps)}]'.replace("'", '"')
            for name, deps in graph.deps.items()
        )
        (self.root / "graph.json").write_text("{\n" + entries + "\n}\n")

    def reset(self) -> None:
        super().reset()
        for path in self.root.glob(".doit.db*"):
            path.unlink()

    def argv(self) -> list[str]:
        return [doit_path(), *_jobs_option(self.jobs), "top"]

    def reran(self, stdout: str, stderr: str) -> int:
        return len(re.findall(r"^\.  ", stdout, re.MULTILINE))


class Ninja(System):
    name = "ninja"

    def write(self, graph: Graph) -> None:
        super().write(graph)
        lines = ["rule cat", "  command = cat $in | cksum > $out", ""]
        for name, deps in graph.deps.items():
            inputs = " ".join([f"src/{name}.txt", *(f"_out/{dep}.out" for dep in deps)])
            lines.append(f"build _out/{name}.out: cat {inputs}")
        lines += ["", "build top: phony _out/top.out", "default top"]
        (self.root / "build.ninja").write_text("\n".join(lines) + "\n")

    def reset(self) -> None:
        super().reset()
        for name in (".ninja_log", ".ninja_deps"):
            (self.root / name).unlink(missing_ok=True)

    def argv(self) -> list[str]:
        ninja = shutil.which("ninja")
        if ninja is None:
            raise SystemExit("ninja is not on PATH")
        return [ninja, "-j", str(self.jobs), "top"]

    def env(self) -> dict[str, str]:
        return {**super().env(), "NINJA_STATUS": "[%f/%t] "}

    def reran(self, stdout: str, stderr: str) -> int:
        return len(re.findall(r"^\[\d+/\d+\] ", stdout, re.MULTILINE))


SYSTEMS: dict[str, type[System]] = {
    "buildgraph": Buildgraph,
    "doit": PlainDoit,
    "ninja": Ninja,
}

# -- measuring ---------------------------------------------------------------------


@dataclass
class Result:
    size: int
    system: str
    cold: Run
    noops: list[Run] = field(default_factory=list)
    leaves: list[Run] = field(default_factory=list)

    @property
    def noop(self) -> float:
        return statistics.median(run.seconds for run in self.noops)

    @property
    def leaf(self) -> float:
        return statistics.median(run.seconds for run in self.leaves)

    @property
    def reran(self) -> int:
        return self.leaves[0].reran

    @property
    def per_step(self) -> float:
        """Seconds per rerun step of the one-leaf change, beyond the no-op."""
        return (self.leaf - self.noop) / self.reran

    @property
    def cold_per_step(self) -> float:
        """Seconds per step of the cold build, start-up included."""
        return self.cold.seconds / self.size

    @property
    def noop_rss(self) -> float:
        return max(run.max_rss_mib for run in self.noops)


def measure(system: System, graph: Graph, repeat: int) -> Result:
    size = len(graph)
    expected = graph.affected_by(graph.leaf)
    system.reset()
    cold = system.build()
    say(f"  {system.name:<10} cold     {cold.seconds:8.3f}s  ran {cold.reran}")
    if cold.reran != size:
        raise SystemExit(f"{system.name}: the cold build ran {cold.reran} steps, not {size}")
    result = Result(size, system.name, cold)
    for _ in range(repeat):
        run = system.build()
        say(f"  {system.name:<10} no-op    {run.seconds:8.3f}s  {run.max_rss_mib:6.1f} MiB")
        if run.reran != 0:
            raise SystemExit(f"{system.name}: a no-op run ran {run.reran} steps")
        result.noops.append(run)
    leaf_source = system.root / "src" / f"{graph.leaf}.txt"
    for edit in range(repeat):
        with leaf_source.open("a") as handle:
            handle.write(f"edit {edit}\n")
        run = system.build()
        say(f"  {system.name:<10} one-leaf {run.seconds:8.3f}s  ran {run.reran}")
        if run.reran != expected:
            raise SystemExit(
                f"{system.name}: the one-leaf change ran {run.reran} steps, not {expected}"
            )
        result.leaves.append(run)
    return result


def bench_size(
    size: int, systems: Sequence[str], repeat: int, jobs: int, seed: int
) -> list[Result]:
    graph = layered_graph(size, seed)
    work = WORK / f"n{size}"
    shutil.rmtree(work, ignore_errors=True)
    say(
        f"{size} nodes: {graph.layers} layers of {graph.width}, "
        f"{sum(map(len, graph.deps.values()))} edges; "
        f"editing {graph.leaf} reruns {graph.affected_by(graph.leaf)} steps ({work})"
    )
    instances = [SYSTEMS[name](work / name.replace(" ", "-"), jobs) for name in systems]
    for system in instances:
        system.write(graph)
    results = [measure(system, graph, repeat) for system in instances]
    outputs = {system.name: system.top_output().read_bytes() for system in instances}
    if len(set(outputs.values())) != 1:
        raise SystemExit(f"the systems disagree on top's output: {sorted(outputs)}")
    return results


# -- reporting ---------------------------------------------------------------------


def machine() -> str:
    ninja = subprocess.run(["ninja", "--version"], capture_output=True, text=True, check=False)
    doit = subprocess.run([doit_path(), "--version"], capture_output=True, text=True, check=False)
    return (
        f"{host()}, doit {doit.stdout.split()[0]}, "
        f"ninja {ninja.stdout.strip()}, buildgraph at {revision()}"
    )


def snapshot_engine() -> None:
    """Copy buildgraph/ to ENGINE and check that the buildgraph runs will import it."""
    shutil.rmtree(ENGINE, ignore_errors=True)
    shutil.copytree(
        REPO / "buildgraph", ENGINE / "buildgraph", ignore=shutil.ignore_patterns("__pycache__")
    )
    # Byte-compiled, as an installed package is (and doit is): with PYTHONDONTWRITEBYTECODE
    # set, every run would otherwise compile the engine from source.
    compileall.compile_dir(ENGINE, quiet=1)
    probe = subprocess.run(
        [sys.executable, "-c", "import buildgraph; print(buildgraph.__file__)"],
        cwd=WORK,
        env=Buildgraph(WORK, 1).env(),
        capture_output=True,
        text=True,
        check=True,
    )
    if Path(probe.stdout.strip()).parent != ENGINE / "buildgraph":
        raise SystemExit(f"buildgraph runs would import {probe.stdout.strip()}, not {ENGINE}")


def verdicts(results: list[Result]) -> list[str]:
    """One line per goal of issue #12, for each size where buildgraph and its peers ran."""
    lines = []
    by_key = {(r.size, r.system): r for r in results}
    met = {True: "met", False: "**not met**"}
    for size in sorted({r.size for r in results}):
        ours = by_key.get((size, Buildgraph.name))
        doit = by_key.get((size, PlainDoit.name))
        ninja = by_key.get((size, Ninja.name))
        if ours is None:
            continue
        if size >= NOOP_GOAL_NODES:
            lines.append(
                f"- {size} nodes, no-op: {ours.noop:.3f} s against a goal of "
                f"{NOOP_GOAL_SECONDS} s: {met[ours.noop <= NOOP_GOAL_SECONDS]}"
            )
        if doit is not None:
            if size >= NOOP_GOAL_NODES:
                lines.append(
                    f"- {size} nodes, no-op: {ours.noop / doit.noop:.2f}x plain doit's "
                    f"{doit.noop:.3f} s against a goal of 1/4: "
                    f"{met[ours.noop <= doit.noop * NOOP_GOAL_FRACTION_OF_DOIT]}"
                )
            else:
                lines.append(
                    f"- {size} nodes, no-op: {ours.noop:.3f} s against plain doit's "
                    f"{doit.noop:.3f} s: {met[ours.noop <= doit.noop]}"
                )
            lines.append(
                f"- {size} nodes, cold build per step: {ours.cold_per_step * 1000:.2f} ms "
                f"against plain doit's {doit.cold_per_step * 1000:.2f} ms: "
                f"{met[ours.cold_per_step <= doit.cold_per_step]}"
            )
        if ninja is not None:
            bound = COLD_GOAL_OF_NINJA * ninja.cold_per_step
            ratio = ours.cold_per_step / ninja.cold_per_step
            lines.append(
                f"- {size} nodes, cold build per step: {ratio:.2f}x ninja's "
                f"{ninja.cold_per_step * 1000:.2f} ms against a goal of "
                f"{COLD_GOAL_OF_NINJA}x: {met[ours.cold_per_step <= bound]}"
            )
            same_steps = ninja.leaf - ninja.noop
            bound = ours.noop + LEAF_GOAL_OF_NINJA * same_steps
            lines.append(
                f"- {size} nodes, one-leaf change: {ours.leaf:.3f} s against no-op "
                f"{ours.noop:.3f} s + {LEAF_GOAL_OF_NINJA} x ninja's {same_steps:.3f} s for the "
                f"same {ours.reran} steps = {bound:.3f} s: {met[ours.leaf <= bound]}"
            )
    return lines


def report(results: list[Result], argv: Sequence[str], where: str, repeat: int, jobs: int) -> str:
    rows = [
        "| nodes | system | cold (s) | no-op (s) | one-leaf change (s) | steps rerun "
        "| ms per rerun step | no-op peak RSS (MiB) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rows.append(
            f"| {r.size} | {r.system} | {r.cold.seconds:.2f} | {r.noop:.3f} | {r.leaf:.3f} "
            f"| {r.reran} | {r.per_step * 1000:.2f} | {r.noop_rss:.0f} |"
        )
    command = " ".join(["python", "bench/synthetic.py", *argv])
    return "\n".join(
        [
            f"Command: `{command}`",
            "",
            f"Machine: {where}.",
            "",
            f"Each system ran with {jobs} job{'s' if jobs > 1 else ''}. Cold is one run; "
            f"no-op and one-leaf change are medians of {repeat} runs; peak RSS is the "
            "largest of the no-op runs (the build process and any children). Steps rerun "
            "were counted from each system's output and are identical across systems "
            "(the script asserts it); ms per rerun step is (one-leaf change - no-op) / "
            "steps rerun. buildgraph ran from a copy of buildgraph/ taken at the start.",
            "",
            *rows,
            "",
            *verdicts(results),
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1000], help="graph sizes")
    parser.add_argument("--repeat", type=int, default=5, help="no-op and one-leaf runs")
    parser.add_argument("--jobs", type=int, default=1, help="parallel steps, for every system")
    parser.add_argument("--seed", type=int, default=1, help="seed of the graph's edges")
    parser.add_argument(
        "--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS), help="which to run"
    )
    parser.add_argument("--write", action="store_true", help="put the results in BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.jobs < 1:
        parser.error("--repeat and --jobs must be at least 1")
    with exclusive():
        where = machine()
        snapshot_engine()
        load = os.getloadavg()[0]
        results = []
        for size in args.nodes:
            results += bench_size(size, args.systems, args.repeat, args.jobs, args.seed)
    where += f"; 1-minute load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    command = sys.argv[1:] if argv is None else argv
    section = report(results, command, where, args.repeat, args.jobs)
    print(section)
    if args.write:
        begin, end = (MARKER.format(jobs=args.jobs, edge=edge) for edge in ("begin", "end"))
        write_section(begin, end, section)


if __name__ == "__main__":
    main()
