"""explain names what changed since a node's last build: old -> new."""

from project import FIXED, build, make_project

from buildgraph.engine import step as steps
from buildgraph.engine.explain import explain
from buildgraph.engine.session import Session

SPECS = """
targets:
  leaf:
    step: concat
    per_arch: true
    sources: [src/leaf.txt]
    params: {text: "${GOAMD64}"}
    outputs: ["leaf-${ARCH}.txt"]
  top:
    step: concat
    needs: [leaf]
    outputs: [top.txt]
"""


def _explain(root, cache, **variables):
    session = Session(root, ["top"], {**FIXED, **variables}, environ={}, cache_dir=cache)
    return list(explain(session))


def test_explain_names_variable_file_and_upstream(tmp_path):
    root = make_project(tmp_path / "repo", SPECS, {"src/leaf.txt": "one\n"})
    cache = tmp_path / "cache"
    build(root, cache, ["top"], PLATFORM="linux/amd64")
    assert _explain(root, cache, PLATFORM="linux/amd64") == [
        "leaf:amd64  cached",
        "top         cached",
    ]
    (root / "src" / "leaf.txt").write_text("two\n")
    lines = _explain(root, cache, PLATFORM="linux/amd64", GOAMD64="v3")
    assert lines[0] == "leaf:amd64  would run"
    assert "  variable GOAMD64: v2 -> v3" in lines
    assert any(line.startswith("  file src/leaf.txt: ") and " -> " in line for line in lines)
    assert "  upstream leaf:amd64 would run first" in lines
    assert lines.index("top         would run") > 0


def test_explain_names_a_changed_upstream_output(tmp_path):
    root = make_project(tmp_path / "repo", SPECS, {"src/leaf.txt": "one\n"})
    cache = tmp_path / "cache"
    build(root, cache, ["top"], PLATFORM="linux/amd64")
    build(root, cache, ["leaf"], PLATFORM="linux/amd64", GOAMD64="v4")
    lines = _explain(root, cache, PLATFORM="linux/amd64", GOAMD64="v4")
    assert lines[0] == "leaf:amd64  cached"
    assert any(line.startswith("  upstream leaf:amd64/leaf-amd64.txt: ") for line in lines)


def test_explain_names_a_new_step_version(tmp_path, monkeypatch):
    root = make_project(tmp_path / "repo", SPECS, {"src/leaf.txt": "one\n"})
    cache = tmp_path / "cache"
    build(root, cache, ["top"], PLATFORM="linux/amd64")
    concat = steps.REGISTRY["concat"]
    monkeypatch.setitem(
        steps.REGISTRY, "concat", concat.__class__(**{**concat.__dict__, "version": 99})
    )
    # the compiled plan is keyed on the engine's files, not the registry: start afresh
    for plan in (cache / "workspaces").rglob("plans/*"):
        plan.unlink()
    lines = _explain(root, cache, PLATFORM="linux/amd64")
    assert f"  step concat: {concat.version} -> 99" in lines


def test_explain_names_a_new_tool_version(tmp_path, monkeypatch):
    from buildgraph.engine import tools
    from buildgraph.engine.state import State

    shell = """
    targets:
      top:
        step: shell
        params: {script: "echo hi > $OUT/top.txt"}
        outputs: [top.txt]
    """
    root = make_project(tmp_path / "repo", shell)
    cache = tmp_path / "cache"
    build(root, cache, ["top"])
    monkeypatch.setattr(tools, "_dpkg_versions", lambda paths: dict.fromkeys(paths, "dash 100"))
    state = State(next((cache / "workspaces").iterdir()))
    state.tools.clear()  # as if the binary had changed: its version is asked for again
    state.save(force=True)
    lines = _explain(root, cache)
    assert lines[0] == "top  would run"
    assert lines[1].startswith("  tool sh: ") and lines[1].endswith(" -> dash 100")
