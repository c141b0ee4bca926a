"""The variables table: precedence, validation and the messages for bad input."""

from pathlib import Path

import pytest

from buildgraph.engine.errors import VariableError
from buildgraph.engine.variables import resolve

ROOT = Path(".")


def test_command_line_beats_environment_beats_default():
    values = resolve({"GOAMD64": "v3"}, {"GOAMD64": "v1", "PUSH": "true"}, ROOT)
    assert values["GOAMD64"] == "v3"
    assert values["PUSH"] == "true"
    assert values["INSTALLER_ARCH"] == "all"
    assert values.origin("GOAMD64") == "given on the command line"
    assert values.origin("PUSH") == "from the environment"


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("PLATFORM", "linux/riscv64", "linux/amd64, linux/arm64"),
        ("GOAMD64", "v9", "v1, v2, v3, v4"),
        ("PUSH", "maybe", "true or false"),
        ("INSTALLER_ARCH", "some", "all, targetarch"),
        ("SOURCE_DATE_EPOCH", "yesterday", "non-negative integer"),
        ("REGISTRY", "not a host!", "host[:port]"),
        ("IMAGER_ARGS", "--extra-kernel-arg='unterminated", "shell-quoted"),
        ("IMAGER_ARGS", "--meta 0x100=x", "0..255"),
        ("META", "0xa", "0xa"),
        ("KERNEL_ARGS", "=x", "has no key"),
        ("SYSTEM_EXTENSIONS", "Bad:Ref", "bad image reference"),
        ("OVERLAY_OPTIONS", "novalue", "is not KEY=VALUE"),
        ("OVERLAY_NAME", "Example!", "is not a name"),
        ("RM", "/etc/../..", "no '..'"),
    ],
)
def test_bad_value_names_variable_value_and_accepted(name, value, accepted):
    with pytest.raises(VariableError) as caught:
        resolve({name: value}, {}, ROOT)
    message = str(caught.value)
    assert name in message
    assert repr(value) in message
    assert accepted in message


def test_bad_value_in_environment_says_so():
    with pytest.raises(VariableError, match="from the environment for variable GOAMD64"):
        resolve({}, {"GOAMD64": "v7"}, ROOT)


def test_unknown_name_is_refused_with_a_suggestion():
    with pytest.raises(VariableError) as caught:
        resolve({"PLATFROM": "linux/amd64"}, {}, ROOT)
    assert "unknown variable 'PLATFROM'" in str(caught.value)
    assert "did you mean PLATFORM?" in str(caught.value)


def test_platform_is_normalized_and_fans_out_in_order():
    values = resolve({"PLATFORM": "linux/arm64, linux/amd64,linux/arm64"}, {}, ROOT)
    assert values["PLATFORM"] == "linux/arm64,linux/amd64"
    assert values.arches() == ["arm64", "amd64"]


def test_package_variables_default_into_the_package_set():
    packages = frozenset({"kernel", "base"})
    values = resolve({"PKGS": "v1.2.3"}, {}, ROOT, {"PKGS_PREFIX": "ghcr.io/me"}, packages)
    assert values["PKG_KERNEL"] == "ghcr.io/me/kernel:v1.2.3"
    custom = resolve({"PKG_KERNEL": "127.0.0.1:5005/me/kernel:v1"}, {}, ROOT, {}, packages)
    assert custom["PKG_KERNEL"] == "127.0.0.1:5005/me/kernel:v1"
    with pytest.raises(VariableError, match="PKG_KERNEL"):
        resolve({"PKG_KERNEL": "Not A Reference"}, {}, ROOT, {}, packages)


def test_unrelated_pkg_variables_in_the_environment_are_ignored():
    values = resolve({}, {"PKG_CONFIG_PATH": "/usr/lib/pkgconfig"}, ROOT, {}, frozenset({"kernel"}))
    assert "PKG_CONFIG_PATH" not in values.given
    with pytest.raises(VariableError, match="unknown variable 'PKG_NOPE'"):
        resolve({"PKG_NOPE": "x/y:z"}, {}, ROOT, {}, frozenset({"kernel"}))


def test_defaults_are_computed_only_when_read(tmp_path):
    values = resolve({}, {}, tmp_path)
    assert "TAG" not in values.read
    assert values["TAG"] == "v0.0.0-dev"  # not a git checkout
    assert "TAG" in values.read


def test_registry_defaults_follow_registry():
    values = resolve({"REGISTRY": "127.0.0.1:5005"}, {}, ROOT)
    assert values["IMAGE_REGISTRY"] == "127.0.0.1:5005"


@pytest.mark.parametrize("spelling", ["ext/hello.tar", "./ext/hello.tar", "{root}/ext/hello.tar",
                                      "ext/../ext/hello.tar"])  # fmt: skip
def test_a_path_has_one_spelling_so_one_key(tmp_path, spelling):
    root = tmp_path / "repo"
    root.mkdir()
    word = spelling.format(root=root)
    values = resolve({"SYSTEM_EXTENSIONS": f"{word} local/me/ext:v1"}, {}, root)
    assert values["SYSTEM_EXTENSIONS"] == "./ext/hello.tar local/me/ext:v1"
    via_flags = resolve({"IMAGER_ARGS": f"--system-extension-image={word}"}, {}, root)
    assert via_flags["SYSTEM_EXTENSIONS"] == "./ext/hello.tar"
    path = word if word.startswith("/") else f"./{word}"
    assert resolve({"CUSTOMIZATION": path}, {}, root)["CUSTOMIZATION"] == "./ext/hello.tar"


def test_a_path_outside_the_repository_is_absolute(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    values = resolve({"CUSTOMIZATION": "../files"}, {}, root)
    assert values["CUSTOMIZATION"] == str(tmp_path / "files")
