"""One grammar of image references: what a variable accepts is what the build can read.

A value that passes its variable's check but that ``buildgraph.oci.reference.parse``
refuses would fail mid-build (or worse, be read as another registry); one that parse
takes but the check refuses would be a reference the user cannot give.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from buildgraph.engine.errors import VariableError
from buildgraph.engine.variables import Rejected, lookup, resolve
from buildgraph.oci.reference import parse

_LABEL = st.from_regex(r"[A-Za-z0-9-]{1,8}", fullmatch=True)
_HOST = st.builds(".".join, st.lists(_LABEL, min_size=1, max_size=3))
_REGISTRY = st.one_of(
    _HOST,
    st.builds("{}:{}".format, _HOST, st.integers(0, 10**8)),
    st.sampled_from(["local", "localhost", "localhost:5000", "[::1]:5000", "[::1]"]),
)
_COMPONENT = st.from_regex(r"[a-zA-Z0-9._-]{1,10}", fullmatch=True)
_TAG = st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True)
_DIGEST = st.one_of(
    st.just("sha256:" + "a" * 64), st.from_regex(r"sha256:[0-9a-fA-F]{62,66}", fullmatch=True)
)


def _joined(registry: str | None, path: list[str], tag: str | None, digest: str | None) -> str:
    text = "/".join([registry, *path] if registry else path)
    return text + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


REFERENCES = st.one_of(
    st.builds(_joined, st.none() | _REGISTRY, st.lists(_COMPONENT, min_size=1, max_size=3),
              st.none() | _TAG, st.none() | _DIGEST),
    st.text(alphabet="aZ0.:/@_-[]", min_size=1, max_size=24),
)  # fmt: skip

REFERENCE_VARIABLES = ("IMAGER_IMAGE", "CUSTOMIZATION", "OVERLAY_IMAGE",
                       "BASE_INSTALLER_IMAGE", "SYSTEM_EXTENSIONS")  # fmt: skip
WORDS = ("OVERLAY_IMAGE", "BASE_INSTALLER_IMAGE", "SYSTEM_EXTENSIONS")
"""Variables whose value is shell words: a reference is given quoted."""


def _parses(text: str) -> bool:
    try:
        parse(text)
    except ValueError:
        return False
    return True


def _accepts(name: str, value: str) -> bool:
    row = lookup(name, frozenset({"kernel"}))
    assert row is not None
    try:
        row.validate(value)
    except Rejected:
        return False
    return True


@given(REFERENCES)
@example("x.io:99999999/a")
@example("x.io:65536/a")
@example("Foo")
def test_every_reference_variable_accepts_what_the_reference_parser_reads(text: str) -> None:
    expected = _parses(text)
    for name in ("PKG_KERNEL", *REFERENCE_VARIABLES):
        if name == "CUSTOMIZATION" and text.startswith((".", "/")):
            continue  # a directory, not a reference
        if name == "SYSTEM_EXTENSIONS" and text.endswith(".tar"):
            continue  # an extension tarball, not a reference
        value = shlex.quote(text) if name in WORDS else text
        assert _accepts(name, value) == expected, (name, text)
    # The values references are made of: accepted when what the build makes of them parses.
    assert _accepts("PKGS_PREFIX", text) == _parses(f"{text}/kernel:latest"), text
    made = f"{text}/me/installer:v1"
    assert _accepts("REGISTRY", text) == (_parses(made) and parse(made).registry == text), text


def test_a_port_out_of_range_is_refused_by_the_variable_and_the_parser() -> None:
    message = "port 99999999 of 'x.io:99999999' is not 1..65535"
    with pytest.raises(ValueError, match=re.escape(message)):
        parse("x.io:99999999/a")
    with pytest.raises(VariableError, match="port 99999999"):
        resolve({"IMAGER_IMAGE": "x.io:99999999/a"}, {}, Path("."))
