"""A file's digest is xxh3-128 of its bytes, however its holes lie (sparse files are
hashed without reading their holes, and must not hash differently for it)."""

from __future__ import annotations

import os
import tempfile

import xxhash
from hypothesis import given
from hypothesis import strategies as st

from buildgraph.engine.hashing import CHUNK, digest_file

# (bytes of data or None for a hole, length); holes of several MiB make real holes.
SEGMENTS = st.lists(
    st.tuples(st.one_of(st.none(), st.binary(min_size=1, max_size=64)),
              st.integers(min_value=1, max_value=3 * CHUNK)),
    max_size=6,
)  # fmt: skip


@given(SEGMENTS)
def test_a_sparse_file_digests_as_its_bytes(segments) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "disk.raw")
        with open(path, "wb") as f:
            for data, length in segments:
                if data is None:
                    f.seek(length, os.SEEK_CUR)
                else:
                    f.write((data * (length // len(data) + 1))[:length])
            f.truncate()
        with open(path, "rb") as f:
            expected = xxhash.xxh3_128_hexdigest(f.read())
        assert digest_file(path) == expected
