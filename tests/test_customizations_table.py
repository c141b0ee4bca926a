"""The customizations table: one row makes a variable, an imager flag and a profile field.

A customization given as a flag, in IMAGER_ARGS, as its variable or as a profile field
must be one value (so one node key), and each of the four must exist for every row.
"""

from __future__ import annotations

import argparse
import shlex

from project import REPO

from buildgraph import variables
from buildgraph.engine.variables import BY_NAME, resolve
from buildgraph.imager import command, customizations, flags
from buildgraph.imager.profile import SCHEMA, apply_flags, build_request, check

FLAGS = [
    "--extra-kernel-arg", "x=1 -console", "--extra-kernel-arg=quiet",
    "--meta", "10=a", "--meta", "0x1=b",
    "--system-extension-image", "local/me/ext-b:v1",
    "--system-extension-image", "local/me/ext-a:v1",
    "--overlay-image", "local/me/overlay:v1",
    "--overlay-name", "example",
    "--overlay-option", "z=1", "--overlay-option", "a=x y",
    "--base-installer-image", "ghcr.io/me/installer-base:v2",
]  # fmt: skip
CANONICAL = {
    "KERNEL_ARGS": "x=1 -console quiet",
    "META": "0x1=b 0xa=a",
    "SYSTEM_EXTENSIONS": "local/me/ext-b:v1 local/me/ext-a:v1",
    "OVERLAY_IMAGE": "local/me/overlay:v1",
    "OVERLAY_NAME": "example",
    "OVERLAY_OPTIONS": "'a=x y' z=1",
    "BASE_INSTALLER_IMAGE": "ghcr.io/me/installer-base:v2",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    command.add_parser(sub)
    return parser


def test_a_flag_imager_args_the_variable_and_the_profile_field_give_one_value(tmp_path):
    args = _parser().parse_args(["imager", "iso", *FLAGS])
    from_flags = flags.to_variables(args)
    assert from_flags == CANONICAL
    from_imager_args = resolve({"IMAGER_ARGS": shlex.join(FLAGS)}, {}, tmp_path)
    from_variables = resolve(CANONICAL, {}, tmp_path)
    profile = {"arch": "amd64", "platform": "metal", "output": {"kind": "iso"}}
    apply_flags(profile, from_flags)
    check(profile)
    from_profile = build_request(profile, command.load_platforms(REPO)).variables
    for name, value in CANONICAL.items():
        assert (from_imager_args[name], from_variables[name], from_profile[name]) == (value,) * 3


def test_the_profile_a_flag_fills_reads_back_as_the_flag_s_value():
    profile: dict = {"arch": "amd64", "output": {"kind": "iso"},
                     "customization": {"extraKernelArgs": ["first=1"]},
                     "overlay": {"options": {"b": "2"}}}  # fmt: skip
    apply_flags(profile, CANONICAL)
    assert profile["customization"]["extraKernelArgs"] == ["first=1", "x=1", "-console", "quiet"]
    assert profile["overlay"] == {"options": {"b": "2", "a": "x y", "z": "1"},
                                  "image": {"imageRef": "local/me/overlay:v1"},
                                  "name": "example"}  # fmt: skip
    assert profile["input"]["systemExtensions"] == [
        {"imageRef": "local/me/ext-b:v1"}, {"imageRef": "local/me/ext-a:v1"}
    ]
    values = build_request(profile, command.load_platforms(REPO)).variables
    assert values["OVERLAY_OPTIONS"] == "'a=x y' b=2 z=1"
    assert values["KERNEL_ARGS"] == "first=1 x=1 -console quiet"


def _schema_at(path: str):
    schema = SCHEMA
    for name in path.split("."):
        schema = schema[name]
    return schema


def test_every_row_is_a_variable_a_profile_field_and_its_flag_an_imager_option():
    imager = next(
        action.choices["imager"]
        for action in _parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    options = {option for action in imager._actions for option in action.option_strings}
    for row in customizations.TABLE:
        variable = BY_NAME[row.variable]
        assert variable in variables.TABLE
        assert (variable.validate, variable.requires, variable.excludes) == (
            row.validate, row.requires, row.excludes)  # fmt: skip
        assert _schema_at(row.field) == row.shape.schema
        if row.flag is not None:
            assert row.flag.option in options
            assert variable.derived_from == "IMAGER_ARGS"
    own = {"-h", "--help", "--arch", "--platform", "--output", "--output-kind", "--remote-cache",
           "--secureboot-keys"}  # keys are a mount in Talos, not a profile field
    assert options - own == {flag.option for _row, flag in customizations.FLAGS}
