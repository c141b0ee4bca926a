"""The README's variables table lists the variables of the table, in its order.

The rows of buildgraph.variables (and the customizations table they include) are what
`doit NAME=value` accepts; a variable missing from the README, or one the README names
that no longer exists, misleads the reader.
"""

from __future__ import annotations

import re

from project import REPO

from buildgraph import variables
from buildgraph.engine.variables import FAMILIES
from buildgraph.imager import customizations


def _rows() -> dict[str, str]:
    """Each name in the first column of the table under ``## Variables`` -> its row."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Variables\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            rows.update((name, line) for name in re.findall(r"`([^`]+)`", first))
    return rows


def test_the_readme_lists_exactly_the_table_s_variables_in_order():
    listed = [name for name in _rows() if "<" not in name]
    assert listed == [row.name for row in variables.TABLE]
    assert [name for name in _rows() if "<" in name] == [
        f"{family.prefix}<NAME>" for family in FAMILIES
    ]


def test_the_readme_names_the_flag_of_each_customization():
    rows = _rows()
    for row, flag in customizations.FLAGS:
        assert f"`{flag.option}`" in rows[row.variable], row.variable
