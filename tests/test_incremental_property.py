"""Incremental builds agree with a reference model: zero missed, zero spurious steps.

Hypothesis draws a random DAG of up to 60 nodes over a handful of source files and
build variables, then a random sequence of edits: a file's content changes (to new
bytes or bytes it held before), a file is touched or rewritten unchanged, a variable
changes or reverts, white space is added to a source that a ``strip`` node reads, or
nothing changes at all. After every edit a :class:`Session` builds everything, and

* the set of nodes whose step ran equals the set the model says must run, and
* every file in ``_out/`` holds exactly the bytes the model computes, which are also
  what a from-scratch build in a fresh checkout and cache produces (checked at the end).

The model is independent of the engine's hashing: a node's key is the tuple of what
it reads (params after substitution, the values of its variables, its sources'
contents and its dependencies' output bytes), and the cache is the set of keys ever
built. A node must run iff its key was never seen, which is early cutoff and revert
hits, exactly.

``HYPOTHESIS_PROFILE=ci`` runs more examples (see conftest.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from buildgraph.engine import hashing
from buildgraph.engine.session import Session
from buildgraph.engine.state import State, workspace_dir
from buildgraph.engine.step import StepContext, step

# -- a second pure step: one distinct output per declared name --------------------
# Its outputs are a many-to-one function of its input (the set of bytes it holds), so
# it cuts off early on reordering edits as well; and it declares its outputs out of
# sorted order, so a consumer sees whether dependency outputs keep their declared order.


def charset_body(name: str, data: bytes) -> bytes:
    return name.encode() + b":" + bytes(sorted(set(data))) + b"\n"


@step("test_charset", version=1)
def _charset(ctx: StepContext) -> None:
    data = b"".join(path.read_bytes() for path in ctx.input_files())
    for name in ctx.outputs:
        ctx.output(name).write_bytes(charset_body(name, data))


# -- variables the nodes may read: value choices and how the engine normalizes them --
VAR_CHOICES: dict[str, list[str | None]] = {
    "GOAMD64": [None, "v1", "v2", "v3", "v4"],
    "INSTALLER_ARCH": [None, "all", "targetarch"],
    "PUSH": [None, "false", "true", "0", "1", "yes", "no"],
}
VAR_DEFAULTS = {"GOAMD64": "v2", "INSTALLER_ARCH": "all", "PUSH": "false"}
_BOOL = {"true": "true", "1": "true", "yes": "true", "false": "false", "0": "false", "no": "false"}


def effective(name: str, given: str | None) -> str:
    """The value a variable takes: given (normalized) or its default."""
    value = VAR_DEFAULTS[name] if given is None else given
    return _BOOL[value] if name == "PUSH" else value


# -- the random project -------------------------------------------------------------
@dataclass(frozen=True)
class Node:
    name: str
    step: str  # "concat" or "test_charset"
    strip: bool
    text: str  # params.text before substitution ("" for test_charset)
    vars: tuple[str, ...]  # declared in `vars:` (read even though the text does not say)
    sources: tuple[str, ...]
    needs: tuple[str, ...]  # sorted, as the engine orders dependencies
    outputs: tuple[str, ...]

    def read_vars(self) -> tuple[str, ...]:
        refs = {name for name in VAR_CHOICES if "${" + name + "}" in self.text}
        return tuple(sorted(refs | set(self.vars)))

    def params(self, values: Mapping[str, str]) -> dict:
        if self.step != "concat":
            return {}
        text = self.text
        for name in VAR_CHOICES:
            text = text.replace("${" + name + "}", values[name])
        return {"text": text, "strip": self.strip}

    def spec(self) -> dict:
        body: dict = {"step": self.step, "outputs": list(self.outputs)}
        if self.step == "concat":
            body["params"] = {"text": self.text, "strip": self.strip}
        if self.vars:
            body["vars"] = list(self.vars)
        if self.sources:
            body["sources"] = list(self.sources)
        if self.needs:
            body["needs"] = list(self.needs)
        return body


def file_name(index: int) -> str:
    return f"src/f{index}.txt"


def node_name(index: int) -> str:
    return f"n{index:02d}"  # zero-padded: label order is index order


CONTENT = st.text(alphabet="ab \n", max_size=5)
"""Few, short contents: edits often return to earlier bytes or differ in white space."""


@st.composite
def node_strategy(draw, index: int, n_files: int) -> Node:
    name = node_name(index)
    kind = draw(st.sampled_from(["concat", "concat", "concat", "test_charset"]))
    sources = draw(st.lists(st.integers(0, n_files - 1), max_size=2, unique=True))
    needs = draw(st.lists(st.integers(0, index - 1), max_size=3, unique=True)) if index else []
    declared = draw(st.lists(st.sampled_from(sorted(VAR_CHOICES)), max_size=1))
    if kind == "concat":
        refs = draw(st.lists(st.sampled_from(["GOAMD64", "INSTALLER_ARCH"]), max_size=2))
        text = f"<{name}" + "".join(f" ${{{r}}}" for r in refs) + ">\n"
        strip = draw(st.booleans())
        outputs = (f"{name}.out",) if draw(st.booleans()) else (f"{name}.y", f"{name}.x")
    else:
        text, strip = "", False
        outputs = (f"{name}.z", f"{name}.a")  # deliberately not sorted
    return Node(
        name=name,
        step=kind,
        strip=strip,
        text=text,
        vars=tuple(declared),
        sources=tuple(file_name(i) for i in sources),
        needs=tuple(node_name(j) for j in sorted(needs)),
        outputs=outputs,
    )


@st.composite
def project_strategy(draw) -> tuple[list[Node], dict[str, bytes]]:
    n_files = draw(st.integers(1, 6))
    n_nodes = draw(st.integers(1, 60))
    nodes = [draw(node_strategy(i, n_files)) for i in range(n_nodes)]
    files = {file_name(i): draw(CONTENT).encode() for i in range(n_files)}
    return nodes, files


EDIT_KINDS = ["write", "write", "touch", "rewrite", "var", "revert", "whitespace", "nothing"]


# -- the reference model -------------------------------------------------------------
@dataclass
class Model:
    nodes: list[Node]
    files: dict[str, bytes]
    given: dict[str, str | None] = field(default_factory=lambda: dict.fromkeys(VAR_CHOICES))
    built: set[tuple] = field(default_factory=set)
    last_keys: dict[str, tuple] = field(default_factory=dict)
    last_outputs: dict[str, bytes] = field(default_factory=dict)

    def values(self) -> dict[str, str]:
        return {name: effective(name, value) for name, value in self.given.items()}

    def evaluate(self) -> tuple[dict[str, tuple], dict[str, bytes]]:
        """Every node's key and every output's bytes, for the current files and variables."""
        values = self.values()
        keys: dict[str, tuple] = {}
        produced: dict[str, dict[str, bytes]] = {}
        for node in self.nodes:
            params = node.params(values)
            # Dependencies in label order (as the engine sorts them), each one's outputs
            # in the order its spec declares them (StepContext.input_files's contract).
            dep_outputs = [
                (dep, out, produced[dep][out])
                for dep in node.needs
                for out in self._by_name[dep].outputs
            ]
            keys[node.name] = (
                node.name,
                node.step,
                tuple(sorted(params.items())),
                tuple((v, values[v]) for v in node.read_vars()),
                tuple((src, self.files[src]) for src in node.sources),
                tuple(dep_outputs),
            )
            inputs = [self.files[src] for src in node.sources] + [d[2] for d in dep_outputs]
            if node.step == "concat":
                if node.strip:
                    inputs = [data.strip() + b"\n" for data in inputs]
                body = b"".join(inputs) + params["text"].encode()
                produced[node.name] = {out: body for out in node.outputs}
            else:
                data = b"".join(inputs)
                produced[node.name] = {out: charset_body(out, data) for out in node.outputs}
        outputs = {out: data for per_node in produced.values() for out, data in per_node.items()}
        return keys, outputs

    def step(self) -> tuple[set[str], dict[str, bytes]]:
        """The nodes that must run now, and the expected _out/ contents."""
        keys, outputs = self.evaluate()
        must_run = {name for name, key in keys.items() if key not in self.built}
        if self.last_keys:
            # What this step covers, for --hypothesis-show-statistics.
            by_name = self._by_name
            if any(
                all(outputs[o] == self.last_outputs[o] for o in by_name[name].outputs)
                for name in must_run
            ):
                event("a step reran and made the same bytes (early cutoff)")
            if any(keys[n] != self.last_keys[n] and n not in must_run for n in keys):
                event("a changed key was found in the cache (revert hit)")
            if not must_run:
                event("nothing ran")
        self.built.update(keys.values())
        self.last_keys, self.last_outputs = keys, outputs
        return must_run, outputs

    @property
    def _by_name(self) -> dict[str, Node]:
        return {node.name: node for node in self.nodes}


# -- driving the engine --------------------------------------------------------------
def write_project(root: Path, nodes: list[Node], files: Mapping[str, bytes]) -> None:
    (root / "targets").mkdir(parents=True)
    (root / "src").mkdir()
    specs = {"targets": {node.name: node.spec() for node in nodes}}
    (root / "targets" / "graph.yaml").write_text(yaml.safe_dump(specs, sort_keys=False))
    for path, data in files.items():
        (root / path).write_bytes(data)


def build(root: Path, cache: Path, nodes: list[Node], given: Mapping[str, str | None]):
    cmdline = {name: value for name, value in given.items() if value is not None}
    return Session(root, [n.name for n in nodes], cmdline, {}, cache).build()


def read_out(root: Path) -> dict[str, bytes]:
    out = root / "_out"
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def check(status: dict[str, str], root: Path, model: Model, what: str) -> None:
    must_run, expected = model.step()
    assert set(status) == {node.name for node in model.nodes}, what
    assert set(status.values()) <= {"built", "cached"}, what
    ran = {label for label, s in status.items() if s == "built"}
    assert sorted(ran - must_run) == [], f"spurious after {what}"
    assert sorted(must_run - ran) == [], f"missed after {what}"
    actual = read_out(root)
    assert sorted(actual) == sorted(expected), what
    wrong = sorted(name for name in expected if actual[name] != expected[name])
    assert wrong == [], f"wrong outputs after {what}: " + ", ".join(
        f"{name}: {actual[name]!r} != {expected[name]!r}" for name in wrong
    )


def apply_edit(data, root: Path, model: Model, history: dict[str, list]) -> str:
    """Draw one edit, apply it to the checkout and the model; returns a description."""
    kind = data.draw(st.sampled_from(EDIT_KINDS), label="edit")
    event(f"edit: {kind}")
    names = sorted(model.files)
    if kind == "write":
        path = data.draw(st.sampled_from(names), label="file")
        used = sorted(set(history[path]))
        new = data.draw(CONTENT.map(str.encode) | st.sampled_from(used), label="content")
        (root / path).write_bytes(new)
        model.files[path] = new
        history[path].append(new)
        return f"write {path} {new!r}"
    if kind == "touch":
        path = data.draw(st.sampled_from(names), label="file")
        shift = data.draw(st.integers(-(10**6), 10**6), label="shift")
        stamp = time.time_ns() + shift * 1000
        os.utime(root / path, ns=(stamp, stamp))
        return f"touch {path}"
    if kind == "rewrite":
        path = data.draw(st.sampled_from(names), label="file")
        (root / path).write_bytes(model.files[path])
        return f"rewrite {path} unchanged"
    if kind == "var":
        name = data.draw(st.sampled_from(sorted(VAR_CHOICES)), label="var")
        value = data.draw(st.sampled_from(VAR_CHOICES[name]), label="value")
        model.given[name] = value
        history[name].append(value)
        return f"set {name}={value}"
    if kind == "revert":
        name = data.draw(st.sampled_from(sorted(VAR_CHOICES)), label="var")
        value = data.draw(st.sampled_from(history[name]), label="earlier value")
        model.given[name] = value
        history[name].append(value)
        return f"revert {name}={value}"
    if kind == "whitespace":
        stripped = sorted({src for n in model.nodes if n.strip for src in n.sources})
        if not stripped:
            return "nothing (no strip node reads a file)"
        path = data.draw(st.sampled_from(stripped), label="file")
        new = model.files[path] + data.draw(st.sampled_from([b" ", b"\n", b" \n"]), label="ws")
        (root / path).write_bytes(new)
        model.files[path] = new
        history[path].append(new)
        return f"append white space to {path}"
    return "nothing"


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(project=project_strategy(), data=st.data())
def test_incremental_matches_model(project, data) -> None:
    nodes, files = project
    with tempfile.TemporaryDirectory(prefix="bg-prop-") as tmp:
        root, cache = Path(tmp) / "repo", Path(tmp) / "cache"
        write_project(root, nodes, files)
        model = Model(nodes, dict(files))
        history: dict[str, list] = {path: [content] for path, content in files.items()}
        history.update({name: [None] for name in VAR_CHOICES})
        check(build(root, cache, nodes, model.given), root, model, "the first build")

        n_edits = data.draw(st.integers(1, 12), label="number of edits")
        for _ in range(n_edits):
            what = apply_edit(data, root, model, history)
            check(build(root, cache, nodes, model.given), root, model, what)

        # The model's bytes are what a from-scratch build makes, in a fresh checkout
        # whose files never had any other content, with a fresh cache.
        fresh, fresh_cache = Path(tmp) / "fresh", Path(tmp) / "fresh-cache"
        write_project(fresh, nodes, model.files)
        status = build(fresh, fresh_cache, nodes, model.given)
        assert set(status.values()) == {"built"}
        assert read_out(fresh) == read_out(root)


# -- plain examples --------------------------------------------------------------------
def _chain(root: Path) -> None:
    write_project(
        root,
        [
            Node("a", "concat", True, "<a>\n", (), ("src/f0.txt",), (), ("a.out",)),
            Node("b", "concat", False, "<b ${GOAMD64}>\n", (), (), ("a",), ("b.out",)),
            Node("c", "concat", False, "<c>\n", (), ("src/f1.txt",), ("b",), ("c.out",)),
        ],
        {"src/f0.txt": b"zero", "src/f1.txt": b"one"},
    )


def test_early_cutoff_and_revert(tmp_path: Path) -> None:
    """White space a strip step drops reruns that step only; reverting runs nothing."""
    root, cache = tmp_path / "repo", tmp_path / "cache"
    _chain(root)

    def run(**given: str) -> dict[str, str]:
        return Session(root, ["c"], given, {}, cache).build()

    assert run() == {"a": "built", "b": "built", "c": "built"}
    expected_c = b"onezero\n<a>\n<b v2>\n<c>\n"
    assert (root / "_out" / "c.out").read_bytes() == expected_c
    assert run() == {"a": "cached", "b": "cached", "c": "cached"}

    # a's source changes, a reruns, its output is the same: b and c do not rerun.
    (root / "src/f0.txt").write_bytes(b"zero  \n")
    assert run() == {"a": "built", "b": "cached", "c": "cached"}
    assert (root / "_out" / "a.out").read_bytes() == b"zero\n<a>\n"
    assert (root / "_out" / "c.out").read_bytes() == expected_c

    # Back to the first content: a's first key is in the cache, so nothing runs.
    (root / "src/f0.txt").write_bytes(b"zero")
    assert run() == {"a": "cached", "b": "cached", "c": "cached"}

    # A real change runs everything downstream of it.
    (root / "src/f0.txt").write_bytes(b"ZERO")
    assert run() == {"a": "built", "b": "built", "c": "built"}
    assert (root / "_out" / "c.out").read_bytes() == b"oneZERO\n<a>\n<b v2>\n<c>\n"

    # A variable only b reads: b and c run; setting it back to its default runs nothing,
    # and so does naming the default explicitly.
    assert run(GOAMD64="v3") == {"a": "cached", "b": "built", "c": "built"}
    assert (root / "_out" / "c.out").read_bytes() == b"oneZERO\n<a>\n<b v3>\n<c>\n"
    assert run() == {"a": "cached", "b": "cached", "c": "cached"}
    assert run(GOAMD64="v2") == {"a": "cached", "b": "cached", "c": "cached"}
    assert (root / "_out" / "c.out").read_bytes() == b"oneZERO\n<a>\n<b v2>\n<c>\n"


def test_dependency_outputs_keep_declared_order(tmp_path: Path) -> None:
    """A consumer reads a dependency's outputs in one order, whether the dependency ran
    in this build or came from the cache: the bytes must not depend on cache history."""
    root = tmp_path / "repo"
    nodes = [
        Node("d", "test_charset", False, "", ("PUSH",), ("src/f0.txt",), (), ("d.z", "d.a")),
        Node("u", "concat", False, "<u ${GOAMD64}>", (), (), ("d",), ("u.out",)),
    ]
    write_project(root, nodes, {"src/f0.txt": b"ab"})

    def run(cache: Path, **given: str) -> dict[str, str]:
        return Session(root, ["u"], given, {}, cache).build()

    cache = tmp_path / "cache"
    assert run(cache, PUSH="false", GOAMD64="v1") == {"d": "built", "u": "built"}
    assert run(cache, PUSH="true", GOAMD64="v1") == {"d": "built", "u": "cached"}
    # d comes back from the cache while u runs with a new key.
    assert run(cache, PUSH="false", GOAMD64="v3") == {"d": "cached", "u": "built"}
    incremental = (root / "_out" / "u.out").read_bytes()

    shutil.rmtree(root / "_out")
    assert run(tmp_path / "fresh-cache", PUSH="false", GOAMD64="v3") == {
        "d": "built",
        "u": "built",
    }
    from_scratch = (root / "_out" / "u.out").read_bytes()
    assert incremental == from_scratch


def test_stat_cache_sees_content_changes_behind_old_mtimes(tmp_path: Path) -> None:
    """Source digests are remembered by stat once a file is old enough to trust. An edit
    that keeps the size and sets the mtime back into the past (a checkout, an archive
    extraction, `touch -d`) must still be seen; a touch that changes no byte runs nothing."""
    root, cache = tmp_path / "repo", tmp_path / "cache"
    names = [f"src/f{i}.txt" for i in range(4)]
    nodes = [
        Node(f"n{i}", "concat", False, f"<{i}>", (), (name,), (), (f"n{i}.out",))
        for i, name in enumerate(names)
    ]
    nodes.append(Node("all", "concat", False, "", (), (), tuple(n.name for n in nodes), ("all",)))
    write_project(root, nodes, {name: f"old{i}".encode() for i, name in enumerate(names)})
    past = time.time_ns() - 30 * 86400 * 10**9
    for i, name in enumerate(names):
        os.utime(root / name, ns=(past + i * 10**9, past + i * 10**9))
    # Old enough (ctime included) for their stats to be trusted from now on.
    time.sleep(hashing.RACY_SECONDS + 0.2)

    def run() -> dict[str, str]:
        return Session(root, ["all"], {}, {}, cache).build()

    def ran(status: dict[str, str]) -> set[str]:
        return {label for label, s in status.items() if s == "built"}

    assert ran(run()) == {"n0", "n1", "n2", "n3", "all"}
    assert ran(run()) == set()
    trusted = State(workspace_dir(cache.resolve(), root.resolve())).files
    assert {str(root.resolve() / name) for name in names} <= set(trusted)

    def stamp(name: str) -> int:
        return os.stat(root / name).st_mtime_ns

    # Same size, new bytes, an mtime in the past but different from before.
    (root / names[0]).write_bytes(b"new0")
    os.utime(root / names[0], ns=(past - 10**9, past - 10**9))
    # Same size, new bytes, the very same mtime as before.
    before = stamp(names[1])
    (root / names[1]).write_bytes(b"new1")
    os.utime(root / names[1], ns=(before, before))
    # Same bytes, mtime moved further into the past.
    os.utime(root / names[2], ns=(past - 5 * 10**9, past - 5 * 10**9))
    # Same size, new bytes in a new inode renamed over the old one, same mtime.
    before = stamp(names[3])
    (root / "src/tmp").write_bytes(b"new3")
    os.utime(root / "src/tmp", ns=(before, before))
    os.replace(root / "src/tmp", root / names[3])

    assert ran(run()) == {"n0", "n1", "n3", "all"}
    assert (root / "_out" / "all").read_bytes() == b"new0<0>new1<1>old2<2>new3<3>"
    assert ran(run()) == set()
