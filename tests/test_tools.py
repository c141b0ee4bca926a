"""Tool versions: dpkg's word only for the binary dpkg installed; otherwise its digest."""

import shutil

import pytest

from buildgraph.engine import tools
from buildgraph.engine.errors import ToolMissingError


def test_the_debian_binary_is_keyed_by_its_package_version(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    ((_path, version),) = tools.resolve(["sh"], {}, {}).values()
    assert version.startswith("dash ")


def test_a_same_named_binary_elsewhere_is_keyed_by_its_bytes(tmp_path, monkeypatch):
    shutil.copy(shutil.which("bash"), tmp_path / "sh")
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    ((path, version),) = tools.resolve(["sh"], {}, {}).values()
    assert path == str(tmp_path / "sh")
    assert version.startswith("sha:")


def test_a_missing_tool_names_its_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError, match="apt-get install xorriso"):
        tools.resolve(["xorriso"], {}, {"xorriso": "iso:amd64"})


def test_links_to_one_binary_are_keyed_by_the_package_that_owns_it(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    found = tools.resolve(["mcopy", "mmd", "go"], {}, {})
    assert found["mcopy"][1] == found["mmd"][1] and found["mcopy"][1].startswith("mtools ")
    assert found["go"][1].startswith("golang-1.")  # the compiler's package, not golang-go
