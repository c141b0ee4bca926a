"""YAML as the specs read it: merge keys share params; duplicates and lines stay exact."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from buildgraph.engine.errors import SpecError
from buildgraph.engine.yamlsrc import load


def _load(tmp_path: Path, text: str):
    path = tmp_path / "t.yaml"
    path.write_text(textwrap.dedent(text))
    return load(path)


def test_merge_keys_share_a_mapping_and_own_keys_win(tmp_path: Path) -> None:
    data = _load(
        tmp_path,
        """\
        a: &base {name: kernel, lock: x.json}
        b:
          <<: *base
          name: grub
        """,
    )
    assert data["b"] == {"name": "grub", "lock": "x.json"}
    assert data["b"].key_lines["name"] == 4


def test_a_duplicate_own_key_is_still_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="duplicate key 'name'"):
        _load(tmp_path, "a: &base {x: 1}\nb:\n  <<: *base\n  name: 1\n  name: 2\n")
