"""A step's probe reads state outside the repo at every plan; its value keys the node.

The package step uses this for registry tags and the embedded store: a moved tag must
rebuild, a tag moved back must be a cache hit, and explain must say what moved.
"""

from __future__ import annotations

from pathlib import Path

from project import FIXED, build, make_project

from buildgraph.engine.explain import explain
from buildgraph.engine.session import Session
from buildgraph.engine.step import Probe, StepContext, step


def _read_external(probe: Probe) -> str:
    return Path(probe.params["external"]).read_text().strip()


@step("test-probed", version=1, probe=_read_external)
def _probed(ctx: StepContext) -> None:
    """Copies the external file: its output depends on state the probe reports."""
    (out,) = ctx.outputs
    ctx.output(out).write_text(Path(ctx.params["external"]).read_text())


def _project(tmp_path: Path) -> tuple[Path, Path, Path]:
    external = tmp_path / "registry-tag"
    external.write_text("sha256:aaa\n")
    specs = f"""
    targets:
      fetched:
        step: test-probed
        params: {{external: "{external}"}}
        outputs: [fetched.txt]
      user:
        step: shell
        needs: [fetched]
        params: {{script: "cat $DEPS > $OUT/user.txt"}}
        outputs: [user.txt]
    """
    return make_project(tmp_path / "repo", specs), tmp_path / "cache", external


def test_a_moved_probe_value_rebuilds_and_moving_back_is_a_hit(tmp_path: Path) -> None:
    root, cache, external = _project(tmp_path)
    assert build(root, cache, ["user"]) == {"fetched": "built", "user": "built"}
    assert build(root, cache, ["user"]) == {"fetched": "cached", "user": "cached"}
    external.write_text("sha256:bbb\n")
    assert build(root, cache, ["user"]) == {"fetched": "built", "user": "built"}
    external.write_text("sha256:aaa\n")
    assert build(root, cache, ["user"]) == {"fetched": "cached", "user": "cached"}


def test_explain_names_the_probed_value_old_and_new(tmp_path: Path) -> None:
    root, cache, external = _project(tmp_path)
    build(root, cache, ["user"])
    external.write_text("sha256:bbb\n")
    session = Session(root, ["user"], dict(FIXED), environ={}, cache_dir=cache)
    lines = list(explain(session))
    assert "  external input of step test-probed: sha256:aaa -> sha256:bbb" in lines


def _published(probe: Probe) -> str:
    path = Path(probe.params["external"])
    return path.read_text() if path.exists() else "none"


@step("test-publish", version=1, probe=_published, probe_settles=True)
def _publish(ctx: StepContext) -> None:
    """Publishes its text where its probe looks, as oci-publish does to a registry."""
    Path(ctx.params["external"]).write_text(ctx.params["text"])
    ctx.output(ctx.outputs[0]).write_text(ctx.params["text"])


def test_a_publishing_step_is_cached_once_it_has_published(tmp_path: Path) -> None:
    external = tmp_path / "registry"
    specs = f"""
    targets:
      publish:
        step: test-publish
        params: {{external: "{external}", text: "v1"}}
        outputs: [published.txt]
    """
    root, cache = make_project(tmp_path / "repo", specs), tmp_path / "cache"
    assert build(root, cache, ["publish"]) == {"publish": "built"}
    # The probe now answers "v1", not the "none" the node was keyed with: still cached.
    assert build(root, cache, ["publish"]) == {"publish": "cached"}
    external.write_text("moved by someone else")
    assert build(root, cache, ["publish"]) == {"publish": "built"}
    assert external.read_text() == "v1"
    external.unlink()
    assert build(root, cache, ["publish"]) == {"publish": "built"}
