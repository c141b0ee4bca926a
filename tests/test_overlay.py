"""Overlays (buildgraph/steps/overlay.py): what an overlay image gives, and each way it
can be wrong, with its own message."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildgraph.engine.errors import StepFailedError
from buildgraph.oci.layout import tar_from_directory
from buildgraph.steps.overlay import load

REPO = Path(__file__).resolve().parent.parent
GOOD = """\
name: board
options: {board: generic, rev: "1"}
profile:
  kernelArgs: ["buildgraph.board={board}-{rev}", quiet]
  diskSize: 2GiB
"""


def _overlay(tmp_path: Path, text: str | None = GOOD, boot: bool = True) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    if text is not None:
        (tree / "overlay.yaml").write_text(text)
    if boot:
        (tree / "boot" / "dtbs").mkdir(parents=True)
        (tree / "boot" / "dtbs" / "board.dtb").write_bytes(b"\xd0\x0d")
    tar_from_directory(tree, tmp_path / "overlay.tar", 0)
    return tmp_path / "overlay.tar"


def test_an_overlay_gives_kernel_args_a_disk_size_and_boot_files(tmp_path: Path) -> None:
    found = load(_overlay(tmp_path), "board", "board=rpi")
    assert found.kernel_args == ["buildgraph.board=rpi-1", "quiet"]
    assert found.disk_size == "2GiB"
    assert found.options == {"board": "rpi", "rev": "1"}
    assert sorted(found.boot) == ["dtbs/board.dtb"]


def test_the_example_overlay_loads(tmp_path: Path) -> None:
    tar = tmp_path / "example.tar"
    tar_from_directory(REPO / "targets/overlays/example", tar, 0)
    assert load(tar, "", "").kernel_args == ["buildgraph.board=generic"]


@pytest.mark.parametrize(
    ("text", "name", "options", "message"),
    [
        (None, "", "", "the overlay image holds no overlay.yaml"),
        ("name: [", "", "", "overlay.yaml is not YAML"),
        (GOOD + "extra: 1\n", "", "", "overlay.yaml has an unknown field 'extra'"),
        (GOOD.replace("diskSize", "size"), "", "", "profile has an unknown field 'size'"),
        (GOOD, "other", "", "--overlay-name 'other' does not match the overlay image"),
        (GOOD, "", "colour=red", "overlay 'board' has no option 'colour'"),
        (GOOD.replace("{rev}", "{bogus}"), "", "", "names no option {bogus}"),
        (GOOD, "", "'board=a b'", "which is not one argument"),
        (GOOD.replace('["buildgraph.board={board}-{rev}", quiet]', "quiet"), "", "",
         "profile.kernelArgs must be a list"),
    ],
)  # fmt: skip
def test_a_bad_overlay_is_refused_with_its_own_message(
    tmp_path: Path, text: str | None, name: str, options: str, message: str
) -> None:
    with pytest.raises(StepFailedError) as raised:
        load(_overlay(tmp_path, text), name, options)
    assert message in str(raised.value)
