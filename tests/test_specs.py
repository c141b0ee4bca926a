"""Loading targets/: each kind of broken spec fails with file, line and a fix."""

import textwrap

import pytest

from buildgraph.engine.errors import SpecError, UnknownTargetError
from buildgraph.engine.specs import load_specs

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
    from buildgraph.engine.graph import compile_nodes, expand
    from buildgraph.engine.variables import resolve

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
    params: {text: "${profile.platform} ${ARCH}"}
    outputs: ["${PROFILE}-${ARCH}.raw"]
"""


def _profiles(root, **files):
    """Profile files under targets/profiles/: name -> YAML text."""
    (root / "targets" / "profiles").mkdir(exist_ok=True)
    for name, text in files.items():
        (root / "targets" / "profiles" / f"{name}.yaml").write_text(textwrap.dedent(text))
    return root


def _error(root):
    with pytest.raises(SpecError) as caught:
        load_specs(root)
    return str(caught.value)


def test_pattern_targets_expand_from_profiles(tmp_path):
    root = _profiles(_write(tmp_path, PATTERN), aws="platform: aws\n", gcp="platform: gcp\n")
    specs = load_specs(root)
    assert {"image-aws", "image-gcp"} <= set(specs.targets)
    aws = specs.targets["image-aws"]
    assert aws.params == {"text": "aws ${ARCH}"}
    assert aws.sources == ()
    assert aws.where == "targets/graph.yaml:3"
    assert root / "targets" / "profiles" / "aws.yaml" in specs.files
    assert root / "targets" / "profiles" in specs.files
    with pytest.raises(UnknownTargetError) as caught:
        specs.resolve("image-nope")
    assert "unknown profile 'nope' for target image-%: known profiles are aws, gcp" in str(
        caught.value
    )
    assert "targets/profiles/nope.yaml" in str(caught.value)


FIELDS = """
targets:
  image-%:
    step: shell
    per_arch: true
    profiles: profiles
    arches: ${profile.arches}
    doc: the ${profile.platform} image
    sources: ${profile.sources}
    params:
      script: "echo ${profile.platform} ${profile.size}G $${profile.size} > $OUT/${PROFILE}-${ARCH}"
      size: ${profile.size}
      consoles: ${profile.consoles}
      flags: ${profile.flags}
    outputs: ["${PROFILE}-${ARCH}"]
"""
AWS = """
platform: aws
arches: [amd64]
sources: src/a.txt
size: 8
consoles: {per_arch: {amd64: [ttyS0], arm64: [ttyAMA0]}}
flags: {fast: true}
"""


def test_a_whole_reference_takes_the_field_as_it_is_and_text_takes_its_text(tmp_path):
    specs = load_specs(_profiles(_write(tmp_path, FIELDS), aws=AWS))
    aws = specs.targets["image-aws"]
    assert aws.params == {
        "script": "echo aws 8G $${profile.size} > $OUT/${PROFILE}-${ARCH}",
        "size": 8,
        "consoles": {"per_arch": {"amd64": ["ttyS0"], "arm64": ["ttyAMA0"]}},
        "flags": {"fast": True},
    }
    assert aws.arches == ("amd64",)
    assert aws.sources == ("src/a.txt",)
    assert aws.doc == "the aws image"


def test_a_per_arch_profile_value_gets_the_per_arch_checks(tmp_path):
    root = _profiles(_write(tmp_path, FIELDS), aws=AWS.replace("arm64: [ttyAMA0]", "riscv: [x]"))
    text = _error(root)
    assert text.startswith(
        "targets/graph.yaml:13: image-aws: per_arch names unknown arch 'riscv'; known: amd64,"
        " arm64 (profile 'aws': 'consoles' at targets/profiles/aws.yaml:6)"
    )


def test_a_list_inside_text_is_refused_at_the_profile_field(tmp_path):
    root = _profiles(_write(tmp_path, FIELDS), aws=AWS.replace("size: 8", "size: [8]"))
    text = _error(root)
    assert text.startswith(
        "targets/profiles/aws.yaml:5: profile 'aws' field 'size' is a list, but image-% at"
        " targets/graph.yaml:11 reads it inside text, where it must be text or a number"
    )


def test_a_step_check_failing_on_a_profile_value_names_the_profile_line(tmp_path):
    root = _profiles(_write(tmp_path, PATTERN), aws="platform: aws\n")
    path = root / "targets" / "graph.yaml"
    path.write_text(
        path.read_text().replace('"${profile.platform} ${ARCH}"', '"${profile.platform}"')
    )
    assert load_specs(root).targets["image-aws"].params == {"text": "aws"}
    _profiles(root, aws="platform: [aws]\n")
    text = _error(root)
    assert "targets/graph.yaml:7: target 'image-aws': concat params.text must be a string" in text
    assert "(profile 'aws': 'platform' at targets/profiles/aws.yaml:1)" in text


def test_a_field_a_pattern_reads_must_be_in_every_profile(tmp_path):
    root = _profiles(_write(tmp_path, PATTERN), aws="platform: aws\n", gcp="{}\n")
    text = _error(root)
    assert text.startswith(
        "targets/profiles/gcp.yaml:1: profile 'gcp' lacks field 'platform', which image-% reads"
        " at targets/graph.yaml:7"
    )


def test_a_field_no_pattern_reads_is_refused_with_a_suggestion(tmp_path):
    root = _profiles(_write(tmp_path, PATTERN), aws="platform: aws\nplatfrom: aws\n")
    text = _error(root)
    assert text.startswith(
        "targets/profiles/aws.yaml:2: profile 'aws' has unknown field 'platfrom';"
        " known fields are platform"
    )
    assert "did you mean 'platform'?" in text


SHARED = """
targets:
  cmdline-%:
    step: concat
    profiles: profiles
    params: {text: "${profile.args}"}
    outputs: ["cmdline-${PROFILE}"]
  disk-%:
    step: concat
    profiles: profiles/
    needs: [cmdline-%]
    params: {text: "size ${profile.size}"}
    outputs: ["disk-${PROFILE}"]
"""


def test_patterns_over_one_directory_share_its_files_and_fields(tmp_path, monkeypatch):
    from buildgraph.engine import specs as specs_module

    root = _profiles(_write(tmp_path, SHARED), aws="args: quiet\nsize: 8\n")
    loaded = []
    real_load = specs_module.load
    monkeypatch.setattr(
        specs_module, "load", lambda path, rel: loaded.append(rel) or real_load(path, rel)
    )
    specs = load_specs(root)
    assert loaded.count("targets/profiles/aws.yaml") == 1
    assert specs.targets["cmdline-aws"].params == {"text": "quiet"}
    assert specs.targets["disk-aws"].params == {"text": "size 8"}
    assert [need.target for need in specs.targets["disk-aws"].needs] == ["cmdline-aws"]


def test_profiles_whose_expansions_do_the_same_work_share_one_target(tmp_path):
    from project import build

    root = _profiles(
        _write(tmp_path, SHARED),
        aws="args: quiet\nsize: 8\n",
        aws2="args: quiet\nsize: 8\n",
        a2="args: quiet\nsize: 9\n",
    )
    specs = load_specs(root)
    # The shortest name leads each group: aws the disk it shares with aws2, and a2, whose
    # disk differs, the cmdline all three share.
    assert specs.targets["disk-aws2"] is specs.targets["disk-aws"]
    assert specs.targets["disk-aws"].name == "disk-aws"
    assert specs.targets["cmdline-aws"] is specs.targets["cmdline-aws2"]
    assert specs.targets["cmdline-aws"].name == "cmdline-a2"
    assert specs.targets["disk-a2"].name == "disk-a2"
    assert build(root, tmp_path / "cache", ["disk-aws", "disk-aws2", "disk-a2"]) == {
        "cmdline-a2": "built",
        "disk-aws": "built",
        "disk-a2": "built",
    }


DEFAULTS = """
targets:
  disk-%:
    step: concat
    profiles: profiles
    defaults: {size: 4, label: ""}
    params: {text: "size ${profile.size}${profile.label}"}
    outputs: ["disk-${PROFILE}"]
"""


def test_a_pattern_s_defaults_fill_the_fields_a_profile_leaves_out(tmp_path):
    root = _profiles(_write(tmp_path, DEFAULTS), aws="size: 8\n", small="label: ' small'\n")
    specs = load_specs(root)
    assert specs.targets["disk-aws"].params == {"text": "size 8"}
    assert specs.targets["disk-small"].params == {"text": "size 4 small"}


def test_defaults_must_be_a_mapping_and_a_field_they_leave_out_is_still_required(tmp_path):
    bad = DEFAULTS.replace("defaults: {size: 4, label: \"\"}", "defaults: [size]")
    with pytest.raises(SpecError, match="defaults must be a mapping"):
        load_specs(_profiles(_write(_dir(tmp_path / "a"), bad), aws="size: 8\n"))
    partial = DEFAULTS.replace("defaults: {size: 4, label: \"\"}", "defaults: {size: 4}")
    with pytest.raises(SpecError, match="profile 'aws' lacks field 'label'"):
        load_specs(_profiles(_write(_dir(tmp_path / "b"), partial), aws="size: 8\n"))


def _dir(path):
    path.mkdir()
    return path


def test_defaults_outside_a_pattern_is_an_unknown_key(tmp_path):
    plain = "targets:\n  t:\n    step: concat\n    defaults: {a: 1}\n    outputs: [t]\n"
    with pytest.raises(SpecError, match="defaults"):
        load_specs(_write(tmp_path, plain))


OUTSIDE = [
    (
        "a pattern without profiles",
        """
        targets:
          image-%: {step: concat, outputs: [x]}
        """,
        "targets/graph.yaml:3: pattern target 'image-%' needs exactly one % and a 'profiles'",
    ),
    (
        "a profile field in a plain target",
        """
        targets:
          plain:
            step: concat
            outputs: ["${profile.args}"]
        """,
        "targets/graph.yaml:5: ${profile.args} in target 'plain', which is not a pattern",
    ),
    (
        "a % in a plain target's needs",
        """
        targets:
          plain:
            step: concat
            needs: [cmdline-%]
            outputs: [x]
        """,
        "targets/graph.yaml:5: need 'cmdline-%' has a %",
    ),
]


@pytest.mark.parametrize(("case", "text", "message"), OUTSIDE, ids=[o[0] for o in OUTSIDE])
def test_profile_references_outside_a_pattern_are_refused(tmp_path, case, text, message):
    assert message in _error(_write(tmp_path, text))


def test_a_profile_may_read_variables_and_they_key_its_nodes(tmp_path):
    from project import build

    shell = PATTERN.replace("step: concat", "step: shell").replace(
        'params: {text: "${profile.platform} ${ARCH}"}',
        'params: {script: "echo ${profile.level} > $OUT/${PROFILE}-${ARCH}.raw"}',
    )
    root = _profiles(_write(tmp_path, shell), aws="level: ${GOAMD64}\n")
    cache = tmp_path / "cache"
    assert build(root, cache, ["image-aws"], PLATFORM="linux/amd64") == {"image-aws:amd64": "built"}
    assert (root / "_out" / "aws-amd64.raw").read_text() == "v2\n"
    again = build(root, cache, ["image-aws"], PLATFORM="linux/amd64", GOAMD64="v3")
    assert again == {"image-aws:amd64": "built"}
    _profiles(root, aws="level: ${NOPE}\n")
    text = _error(root)
    assert "target 'image-aws' reads unknown variable 'NOPE'" in text
    assert "'level' at targets/profiles/aws.yaml:1" in text


ALIASED = """
aliases:
  tops: [top]
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
REFUSED = [
    (
        "an arch nobody builds",
        ALIASED.replace(
            "    per_arch: true\n", "    per_arch: true\n    arches: [amd64, riscv64]\n"
        ),
        "targets/graph.yaml:8: target 'base' lists unknown arch 'riscv64';"
        " known arches are amd64, arm64",
        None,
    ),
    (
        "arches on a target that is not per_arch",
        ALIASED.replace("    needs: [base]", "    needs: [base]\n    arches: [amd64]"),
        "targets/graph.yaml:13: arches in target 'top', which is not per_arch",
        None,
    ),
    (
        "no arch at all",
        ALIASED.replace("    per_arch: true\n", "    per_arch: true\n    arches: []\n"),
        "targets/graph.yaml:8: target 'base' lists no arch",
        None,
    ),
    (
        "an alias named like a target",
        ALIASED.replace("  tops: [top]", "  top: [base]"),
        "targets/graph.yaml:3: alias 'top' is also a target (targets/graph.yaml:10)",
        "rename one of them",
    ),
    (
        "an unknown member",
        ALIASED.replace("  tops: [top]", "  tops: [tpo]"),
        "targets/graph.yaml:3: alias 'tops' names unknown target 'tpo'",
        "did you mean top?",
    ),
    (
        "a cycle of aliases",
        ALIASED.replace("  tops: [top]", "  tops: [top, more]\n  more: [base, tops]"),
        "targets/graph.yaml:4: alias cycle: tops -> more -> tops",
        None,
    ),
    (
        "a need on an alias",
        ALIASED.replace("needs: [base]", "needs: [tops]"),
        "targets/graph.yaml:12: target 'top' needs 'tops', which is an alias",
        "need its members instead: top",
    ),
    (
        "an alias name with an arch",
        ALIASED.replace("  tops: [top]", "  tops:amd64: [top]"),
        "targets/graph.yaml:3: alias name 'tops:amd64' must be text without % or :",
        None,
    ),
    (
        "a default that names nothing",
        "default: [topz]\n" + ALIASED,
        "targets/graph.yaml:1: default goal 'topz' is no target or alias",
        None,
    ),
]


@pytest.mark.parametrize(("case", "text", "message", "hint"), REFUSED, ids=[r[0] for r in REFUSED])
def test_bad_arches_and_aliases_are_refused(tmp_path, case, text, message, hint):
    with pytest.raises(SpecError) as caught:
        load_specs(_write(tmp_path, text))
    assert caught.value.message.startswith(message), caught.value.message
    assert caught.value.hint == hint or hint is None


def test_an_alias_stands_for_its_patterns_and_aliases_flattened(tmp_path):
    text = SHARED.replace(
        "targets:", "aliases:\n  all: [cmdline, disk-%]\n  cmdline: [cmdline-%]\ntargets:"
    )
    root = _profiles(_write(tmp_path, text), aws="args: quiet\nsize: 8\n", gcp="args: x\nsize: 9\n")
    assert load_specs(root).aliases == {
        "all": ("cmdline-aws", "cmdline-gcp", "disk-aws", "disk-gcp"),
        "cmdline": ("cmdline-aws", "cmdline-gcp"),
    }


def test_step_checks_see_only_the_arches_a_target_builds(tmp_path):
    text = """
    targets:
      boot:
        step: shell
        per_arch: true
        arches: [amd64]
        params:
          script: {per_arch: {amd64: "echo > $OUT/boot"}}
        outputs: [boot]
    """
    assert load_specs(_write(tmp_path, text)).targets["boot"].arches == ("amd64",)
