"""Properties of the imager's flags: however they are spelled or ordered, the same
customization is the same build, and a different one is never served from the cache."""

from __future__ import annotations

import shlex
import shutil
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from project import REPO, build

from buildgraph.formats.meta import decode_cmdline_value
from buildgraph.imager.flags import canonical, parse_imager_args

VALUES = st.text(alphabet="abcxyz0123456789-_.", min_size=0, max_size=8)
META = st.dictionaries(st.integers(0, 255), VALUES, max_size=4)
SPELLINGS = st.sampled_from([str, hex, oct, lambda k: f"0x{k:02X}"])


@st.composite
def meta_flags(draw) -> tuple[dict[int, str], list[str]]:
    """META values and --meta flags that set them, keys spelled in any base, any order."""
    values = draw(META)
    flags = [f"--meta={draw(SPELLINGS)(key)}={value}" for key, value in values.items()]
    return values, draw(st.permutations(flags))


@given(meta_flags())
def test_meta_is_canonical_whatever_the_spelling_or_order(case) -> None:
    values, flags = case
    found = parse_imager_args(shlex.join(flags)).get("META", "")
    assert found == shlex.join(f"{hex(k)}={values[k]}" for k in sorted(values))
    assert canonical("META", found) == found


@settings(max_examples=25, deadline=None)
@given(st.lists(meta_flags(), min_size=2, max_size=4))
def test_a_meta_change_rebuilds_and_a_respelling_is_a_cache_hit(cases) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        shutil.copytree(REPO / "targets", root / "targets")
        cache = Path(tmp) / "cache"
        seen: dict[str, str] = {}
        for values, flags in cases:
            args = {"PLATFORM": "linux/amd64", "IMAGER_ARGS": shlex.join(flags)}
            status = build(root, cache, ["iso-cmdline"], **args)["iso-cmdline:amd64"]
            key = canonical("META", shlex.join(f"{k}={v}" for k, v in values.items()))
            assert status == ("cached" if key in seen else "built")
            line = (root / "_out" / "iso-cmdline-amd64").read_text().split()
            meta = [word for word in line if word.startswith("buildgraph.meta=")]
            assert (decode_cmdline_value(meta[0].split("=", 1)[1]) if meta else {}) == values
            seen[key] = line
