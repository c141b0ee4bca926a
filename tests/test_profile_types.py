"""Profile fields are typed when the specs load, and imager profile fields when read.

A platform profile's field lands in a step's params as written, so ``consoles:
console=tty1`` (a string, not a list) would put ``c o n s o l e ...`` on the command
line and ``kernelArgs: 5`` crash the step. The steps' checks type their params when the
specs load; the error names the target's line and the profile field's file and line.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from project import REPO, doit, imager

from buildgraph.engine.errors import SpecError
from buildgraph.engine.specs import load_specs
from buildgraph.imager.customizations import ANY_MAPPING
from buildgraph.imager.profile import SCHEMA, ProfileError, check


def _repo(tmp_path: Path, field: str, value: str) -> Path:
    """A copy of the repository's targets/ whose aws profile has ``field: value``."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "targets", root / "targets")
    for name in ("dodo.py", "pyproject.toml"):
        shutil.copy(REPO / name, root / name)
    aws = root / "targets" / "profiles" / "aws.yaml"
    lines = [f"{field}: {value}" if line.startswith(f"{field}:") else line
             for line in aws.read_text().splitlines()]  # fmt: skip
    aws.write_text("\n".join(lines) + "\n")
    return root


def _line(root: Path, field: str) -> int:
    lines = (root / "targets" / "profiles" / "aws.yaml").read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if line.startswith(f"{field}:"))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("consoles", "console=tty1",
         "params.consoles must be a list of strings, not 'console=tty1'"),
        ("consoles", "[1, 2]", "params.consoles must be a list of strings, not [1, 2]"),
        ("consoles", "{per_arch: {amd64: [console=tty1], arm64: ttyAMA0}}",
         "params.consoles must be a list of strings, not 'ttyAMA0'"),
        ("kernelArgs", "5", "params.platform_args must be a list of strings, not 5"),
        ("platform", "5", "params.platform must be a string, not 5"),
        ("platform", "[aws]", "field 'platform' is a list"),
        ("diskSize", "[8GiB]", "field 'diskSize' is a list"),
        ("diskFormat", "{a: 1}", "field 'diskFormat' is a mapping"),
        ("outFormat", "3", "unknown compression 3"),
        ("arches", "{amd64: true}", "'arches' must be a list of strings"),
    ],
)  # fmt: skip
def test_a_profile_field_of_the_wrong_type_fails_at_load_naming_its_line(
    tmp_path, field, value, message
):
    root = _repo(tmp_path, field, value)
    with pytest.raises(SpecError) as caught:
        load_specs(root)
    text = str(caught.value)
    assert message in text
    assert f"targets/profiles/aws.yaml:{_line(root, field)}" in text


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ("{partition: BOOT}", "params.edits must be a list of partition edits"),
        ("[{partition: BOOT, chmod: x}]", "unknown field chmod"),
        ("[{partition: BOOT, add: {src: a}}]", "does not fit"),
        ("[{partition: BOOT, add: {src: a, dest: /x, mode: 644}}]", "give it as quoted octal"),
        ("[{partition: BOOT, add: {src: a, dest: /x, mode: '999'}}]", "bad mode"),
        (
            "[{partition: BOOT, add: {src: /etc/passwd, dest: /x}}]",
            "/etc/passwd, which an edit adds to the disk, is not a path in the repository",
        ),
        (
            "[{partition: BOOT, tar: {archive: targets/../../x.tar, dest: /}}]",
            "is not a path in the repository",
        ),
    ],
)
def test_a_bad_partition_edit_in_a_profile_fails_at_load_naming_its_line(tmp_path, edits, message):
    root = _repo(tmp_path, "edits", "")
    aws = root / "targets" / "profiles" / "aws.yaml"
    aws.write_text(aws.read_text() + f"edits: {edits}\n")
    with pytest.raises(SpecError) as caught:
        load_specs(root)
    assert message in str(caught.value)
    assert f"targets/profiles/aws.yaml:{_line(root, 'edits')}" in str(caught.value)


def test_disk_size_of_the_wrong_type_names_the_disk_param(tmp_path):
    root = _repo(tmp_path, "diskSize", "true")
    boot = root / "targets" / "boot.yaml"
    # Read whole, not inside text: the disk step's check is what types it.
    boot.write_text(boot.read_text().replace(
        "doc: the raw ${profile.diskSize} GPT disk", "doc: the raw GPT disk"))  # fmt: skip
    message = "params.size must be a size like 8GiB or bytes, not True"
    with pytest.raises(SpecError, match=re.escape(message)):
        load_specs(root)


def test_a_string_for_a_list_stops_the_build_before_anything_runs(tmp_path):
    root = _repo(tmp_path, "consoles", "console=tty1")
    done = doit(root, tmp_path / "cache", "cmdline-aws", "PLATFORM=linux/amd64", json_log=False)
    assert done.returncode != 0
    assert "params.consoles must be a list of strings" in done.stderr
    assert not (root / "_out").exists()


def _wrong(schema: Any) -> Any:
    """A value no field of ``schema`` takes."""
    if schema is str:
        return 5
    if schema is bool:
        return "yes"
    if isinstance(schema, tuple):
        return [1]
    if isinstance(schema, list):
        return "text"
    return [1] if schema == ANY_MAPPING else 5


def _leaves(schema: Any, path: tuple[str | int, ...] = ()) -> list[tuple[tuple, Any]]:
    """(path, schema) of every field, and of the first item of every list field."""
    found: list[tuple[tuple, Any]] = [(path, schema)] if path else []
    if isinstance(schema, dict):
        for key, inner in schema.items():
            found += _leaves(inner, (*path, key))
    elif isinstance(schema, list):
        found += _leaves(schema[0], (*path, 0))
    return found


def _profile(path: tuple, value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    inner = _profile(tuple(rest), value)
    return [inner] if head == 0 else {head: inner}


def _spelled(path: tuple) -> str:
    return "profile" + "".join(f"[{p}]" if p == 0 else f".{p}" for p in path)


@pytest.mark.parametrize(("path", "schema"), _leaves(SCHEMA), ids=lambda p: str(p))
def test_every_imager_profile_field_of_the_wrong_type_is_refused_naming_it(path, schema):
    with pytest.raises(ProfileError) as caught:
        check(_profile(path, _wrong(schema)))
    assert caught.value.message.startswith(f"{_spelled(path)}: must be "), caught.value.message


def test_an_imager_profile_of_the_wrong_type_is_one_message(tmp_path):
    root = _repo(tmp_path, "platform", "aws")
    profile = "arch: amd64\noutput: {kind: iso}\ncustomization: {extraKernelArgs: quiet}\n"
    done = imager(root, tmp_path / "cache", "-", stdin=profile)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("buildgraph: error:")]
    assert errors == [
        "buildgraph: error: profile.customization.extraKernelArgs: must be a list, not 'quiet'"
    ], done.stderr
    assert not (root / "_out").exists()
