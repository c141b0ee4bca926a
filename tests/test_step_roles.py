"""Steps declare the inputs they read by role; the spec loader checks the needs give them.

A role is the name of the need that gives it (``kernel``), or a pattern for a profile's
target (``cmdline-%``). A target renamed in YAML, so that a need no longer gives a role,
must fail when the specs load, with file and line, naming the role and the step: never
halfway through a build. A step reading a role it did not declare is a bug in the step.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from project import REPO, build, make_project

from buildgraph.engine.errors import SpecError, StepFailedError
from buildgraph.engine.specs import load_specs
from buildgraph.engine.step import REGISTRY, Role, StepContext, load_all, step
from buildgraph.steps import MODULES


def _repo(tmp_path: Path, renames: dict[str, str]) -> Path:
    """A copy of the real targets/ with each name in ``renames`` replaced everywhere."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "targets", root / "targets")
    for path in (root / "targets").glob("*.yaml"):
        text = path.read_text()
        for old, new in renames.items():
            text = re.sub(rf"(?<![\w-]){re.escape(old)}(?![\w-])", new, text)
        path.write_text(text)
    return root


def _line(root: Path, text: str) -> int:
    lines = (root / "targets" / "boot.yaml").read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def test_the_real_graph_gives_every_step_the_roles_it_requires() -> None:
    specs = load_specs(REPO)
    assert specs.targets["iso"].step == "iso"


def test_a_renamed_need_fails_at_load_naming_the_role_the_step_and_the_line(tmp_path) -> None:
    # Renamed consistently, so every need still names a target: only the role is lost.
    root = _repo(tmp_path, {"pkg-kernel": "pkg-linux"})
    with pytest.raises(SpecError) as caught:
        load_specs(root)
    where = f"targets/boot.yaml:{_line(root, '{target: pkg-linux, unless')}"
    assert caught.value.where == where
    message = str(caught.value)
    assert "step 'kernel' reads its 'pkg-kernel' input, and no need gives it" in message
    assert "its needs are pkg-linux" in message


def test_a_renamed_profile_target_fails_at_load_naming_the_pattern_role(tmp_path) -> None:
    root = _repo(tmp_path, {"cmdline-%": "commandline-%", "cmdline-metal": "commandline-metal"})
    with pytest.raises(SpecError) as caught:
        load_specs(root)
    assert caught.value.where == f"targets/boot.yaml:{_line(root, 'needs: [commandline-metal]')}"
    assert "step 'cmdline-meta' reads its 'cmdline-%' input" in str(caught.value)
    assert "cmdline-<profile>" in (caught.value.hint or "")


def test_a_role_named_by_params_is_checked_too(tmp_path) -> None:
    root = _repo(tmp_path, {})
    images = root / "targets" / "images.yaml"
    images.write_text(images.read_text().replace("- tar: pkg-base", "- tar: pkg-busybox"))
    with pytest.raises(SpecError, match="step 'oci-image' reads its 'pkg-busybox' input"):
        load_specs(root)


def test_an_optional_role_may_be_given_by_no_need(tmp_path) -> None:
    root = make_project(tmp_path / "p", """
        targets:
          line:
            step: cmdline
            params: {platform: metal, platform_key: p, consoles: [console=ttyS0]}
            outputs: [line]
        """)
    assert REGISTRY["cmdline"].roles({}) == (Role("overlay", optional=True),)
    assert build(root, tmp_path / "cache", ["line"]) == {"line": "built"}
    assert (root / "_out" / "line").read_text() == "p=metal console=ttyS0\n"


def test_every_step_that_reads_a_need_by_name_declares_it() -> None:
    """A step module reading ``ctx.input("x")`` or ``ctx.optional_input("x")`` declares x
    in one of its steps (steps whose params name their roles read them by param)."""
    load_all()
    declared: dict[str, set[str]] = {}
    for name, module in MODULES.items():
        roles = REGISTRY[name].inputs
        static = () if callable(roles) else roles
        declared.setdefault(module, set()).update(role.name for role in static)
    reads = 0
    for module, names in declared.items():
        text = (REPO / (module.replace(".", "/") + ".py")).read_text()
        read = set(re.findall(r"\binput\(\"([^\"]+)\"\)", text))
        assert read <= names, module
        reads += len(read)
    assert reads > 10


@step("test-roles", version=1, inputs=[Role("kernel"), Role("cmdline-%"), Role("extra", True)])
def _reads(ctx: StepContext) -> None:
    (out,) = ctx.outputs
    kernel, line = ctx.input("kernel"), ctx.input("cmdline-%")
    assert ctx.optional_input("extra") is None
    ctx.output(out).write_text(kernel.read_text() + line.read_text())
    ctx.input(ctx.params["also"])


def _context(tmp_path: Path, also: str) -> StepContext:
    files = {}
    for label in ("kernel:amd64", "kernel:arm64", "cmdline-aws:amd64"):
        files[label] = tmp_path / label.replace(":", "-")
        files[label].write_text(label + "\n")
    (tmp_path / "out").mkdir()
    return StepContext(
        params={"also": also},
        arch="amd64",
        root=tmp_path,
        sources=[],
        inputs={label: {"f": path} for label, path in files.items()},
        out_dir=tmp_path / "out",
        outputs=("o",),
    )


def test_a_step_reads_its_roles_by_need_name_and_pattern(tmp_path) -> None:
    ctx = _context(tmp_path, also="kernel")
    REGISTRY["test-roles"].run(ctx)
    assert (tmp_path / "out" / "o").read_text() == "kernel:amd64\ncmdline-aws:amd64\n"


def test_a_step_reading_a_role_it_did_not_declare_fails(tmp_path) -> None:
    with pytest.raises(StepFailedError, match="reads input 'initramfs', which it does not declare"):
        REGISTRY["test-roles"].run(_context(tmp_path, also="initramfs"))
