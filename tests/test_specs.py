"""Loading targets/: each kind of broken spec fails with file, line and a fix."""

import textwrap

import pytest

from buildgraph.errors import SpecError, UnknownTargetError
from buildgraph.specs import load_specs

GOOD = """
targets:
  base:
    step: concat
    per_arch: true
    sources: [src/a.txt]
    outputs: ["base-${ARCH}.txt"]
  top:
    step: concat
    needs: [base]
    outputs: [top.txt]
"""


def _write(tmp_path, text, name="graph.yaml"):
    (tmp_path / "targets").mkdir(exist_ok=True)
    (tmp_path / "targets" / name).write_text(textwrap.dedent(text))
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "a.txt").write_text("a\n")
    return tmp_path


def test_a_good_spec_loads(tmp_path):
    specs = load_specs(_write(tmp_path, GOOD))
    assert sorted(specs.targets) == ["base", "top"]
    assert specs.targets["base"].per_arch
    assert specs.targets["top"].needs[0].target == "base"


BROKEN = [
    (
        "unknown key",
        GOOD.replace("    per_arch: true", "    per_arhc: true"),
        "targets/graph.yaml:5: unknown key 'per_arhc' in target 'base'",
        "did you mean 'per_arch'?",
    ),
    (
        "missing step",
        GOOD.replace("    step: concat\n    needs", "    needs"),
        "targets/graph.yaml:8: target 'top' is missing 'step'",
        None,
    ),
    (
        "missing outputs",
        GOOD.replace("    outputs: [top.txt]\n", ""),
        "targets/graph.yaml:8: target 'top' is missing 'outputs'",
        None,
    ),
    (
        "unknown step",
        GOOD.replace("step: concat\n    needs", "step: compile\n    needs"),
        "targets/graph.yaml:9: unknown step 'compile'; known steps are",
        None,
    ),
    (
        "unknown need",
        GOOD.replace("needs: [base]", "needs: [bsae]"),
        "targets/graph.yaml:10: target 'top' needs unknown target 'bsae'",
        None,
    ),
    (
        "duplicate output",
        GOOD.replace("outputs: [top.txt]", 'outputs: ["base-amd64.txt"]'),
        "output 'base-amd64.txt' of base:amd64 is also an output of top",
        None,
    ),
    (
        "cycle",
        GOOD.replace("    sources: [src/a.txt]", "    sources: [src/a.txt]\n    needs: [top]"),
        "cycle: ",
        "remove one of these needs",
    ),
    (
        "broken yaml",
        GOOD.replace("needs: [base]", "needs: [base"),
        "targets/graph.yaml:11: broken YAML",
        None,
    ),
    (
        "unknown variable",
        GOOD.replace("outputs: [top.txt]", 'outputs: ["top-${GOAMD65}.txt"]'),
        "target 'top' reads unknown variable 'GOAMD65'",
        None,
    ),
    (
        "arch in an arch-less target",
        GOOD.replace("outputs: [top.txt]", 'outputs: ["top-${ARCH}.txt"]'),
        "${ARCH} in target 'top', which is not per_arch",
        None,
    ),
    (
        "missing source",
        GOOD.replace("sources: [src/a.txt]", "sources: [src/nope.txt]"),
        "source 'src/nope.txt' does not exist",
        None,
    ),
    (
        "bad step params",
        GOOD.replace("outputs: [top.txt]", "outputs: [top.txt]\n    params: {txet: x}"),
        "unknown concat params ['txet']",
        None,
    ),
]


@pytest.mark.parametrize(("case", "text", "message", "hint"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_specs_name_file_line_and_problem(tmp_path, case, text, message, hint):
    from buildgraph.graph import compile_nodes, expand
    from buildgraph.variables import resolve

    root = _write(tmp_path, text)
    with pytest.raises(SpecError) as caught:
        specs = load_specs(root)
        values = resolve({"PLATFORM": "linux/amd64"}, {}, root)
        graph, _ = expand(specs, values, ["top"])
        compile_nodes(graph, values, root)
    assert message in str(caught.value), str(caught.value)
    if hint:
        assert hint in str(caught.value)


def test_cycle_message_names_the_whole_cycle(tmp_path):
    root = _write(
        tmp_path,
        """
        targets:
          a: {step: concat, needs: [b], outputs: [a]}
          b: {step: concat, needs: [c], outputs: [b]}
          c: {step: concat, needs: [a], outputs: [c]}
        """,
    )
    with pytest.raises(SpecError) as caught:
        load_specs(root)
    text = str(caught.value)
    assert "cycle: a -> b -> c -> a" in text
    assert "a needs b at targets/graph.yaml:3" in text


PATTERN = """
targets:
  image-%:
    step: concat
    per_arch: true
    profiles: profiles
    params: {text: "${PROFILE} ${ARCH}"}
    outputs: ["${PROFILE}-${ARCH}.raw"]
"""


def test_pattern_targets_expand_from_profiles(tmp_path):
    root = _write(tmp_path, PATTERN)
    (root / "targets" / "profiles").mkdir()
    for name in ("aws", "gcp"):
        (root / "targets" / "profiles" / f"{name}.yaml").write_text(f"platform: {name}\n")
    specs = load_specs(root)
    assert {"image-aws", "image-gcp"} <= set(specs.targets)
    aws = specs.targets["image-aws"]
    assert aws.params["profile"] == {"platform": "aws"}
    assert "targets/profiles/aws.yaml" in aws.sources
    with pytest.raises(UnknownTargetError) as caught:
        specs.resolve("image-nope")
    assert "unknown profile 'nope' for target image-%: known profiles are aws, gcp" in str(
        caught.value
    )
    assert "targets/profiles/nope.yaml" in str(caught.value)


def test_a_profile_is_checked_for_per_arch_as_params_are(tmp_path):
    root = _write(tmp_path, PATTERN)
    (root / "targets" / "profiles").mkdir()
    (root / "targets" / "profiles" / "aws.yaml").write_text("per_arch: true\n")
    with pytest.raises(SpecError, match="per_arch must be alone, mapping arch -> value"):
        load_specs(root)


def test_a_profile_may_read_variables_and_they_key_its_nodes(tmp_path):
    from project import build

    script = 'params: {script: "echo > $OUT/${PROFILE}-${ARCH}.raw"}'
    shell = PATTERN.replace("step: concat", "step: shell")
    shell = shell.replace('params: {text: "${PROFILE} ${ARCH}"}', script)
    root = _write(tmp_path, shell)
    (root / "targets" / "profiles").mkdir()
    (root / "targets" / "profiles" / "aws.yaml").write_text("level: ${GOAMD64}\n")
    cache = tmp_path / "cache"
    assert build(root, cache, ["image-aws"], PLATFORM="linux/amd64") == {"image-aws:amd64": "built"}
    again = build(root, cache, ["image-aws"], PLATFORM="linux/amd64", GOAMD64="v3")
    assert again == {"image-aws:amd64": "built"}
    (root / "targets" / "profiles" / "aws.yaml").write_text("level: ${NOPE}\n")
    with pytest.raises(SpecError, match="profile 'aws' reads unknown variable 'NOPE'"):
        load_specs(root)
