"""Remote cache entries offline: chunks of sparse files restore the same bytes, sparse;
signatures bind repository, key and entry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buildgraph.engine.sparse import write_into
from buildgraph.remote import chunks
from buildgraph.remote.entry import (
    Chunk,
    Entry,
    EntryError,
    Output,
    decode,
    key_id,
    sign,
    verify,
)

CHUNK = chunks.CHUNK


def _cut_and_restore(src: Path, dest: Path) -> int:
    size = src.stat().st_size
    fd = chunks.create(dest, size, executable=False)
    sent = 0
    try:
        for offset, data in chunks.data_chunks(src):
            blob = chunks.compress(data)
            write_into(chunks.decompress(blob, len(data)), fd, offset)
            sent += 1
    finally:
        os.close(fd)
    return sent


@settings(max_examples=25, deadline=None)
@given(
    writes=st.lists(
        st.tuples(st.integers(0, 5 * CHUNK), st.binary(min_size=1, max_size=3000)), max_size=6
    ),
    tail=st.integers(0, 3 * CHUNK),
)
def test_a_sparse_file_restores_to_the_same_bytes(tmp_path_factory, writes, tail):
    base = tmp_path_factory.mktemp("sparse")
    src, dest = base / "src", base / "dest"
    with open(src, "wb") as handle:
        for offset, data in writes:
            handle.seek(offset)
            handle.write(data)
        handle.truncate(max((o + len(d) for o, d in writes), default=0) + tail)
    sent = _cut_and_restore(src, dest)
    assert dest.read_bytes() == src.read_bytes()
    touched = {o // CHUNK for o, d in writes if any(d)} | {
        (o + len(d) - 1) // CHUNK for o, d in writes if any(d)
    }
    assert sent <= len(touched)
    assert dest.stat().st_blocks * 512 <= src.stat().st_blocks * 512 + 4096 * len(writes)


def test_an_8_gib_image_of_a_little_data_sends_one_chunk(tmp_path):
    src = tmp_path / "disk.raw"
    with open(src, "wb") as handle:
        handle.truncate(8 << 30)
        handle.seek(5 << 30)
        handle.write(os.urandom(1 << 20))
    assert [offset for offset, _data in chunks.data_chunks(src)] == [5 << 30]
    dest = tmp_path / "restored"
    _cut_and_restore(src, dest)
    assert dest.stat().st_size == 8 << 30
    assert dest.stat().st_blocks * 512 <= 2 << 20


def test_zero_data_is_not_sent(tmp_path):
    src = tmp_path / "zeros"
    src.write_bytes(bytes(3 * CHUNK))
    assert list(chunks.data_chunks(src)) == []


def test_a_damaged_chunk_is_refused():
    blob = chunks.compress(b"x" * 1000)
    with pytest.raises(ValueError):
        chunks.decompress(blob[:-3] + b"\0\0\0", 1000)
    with pytest.raises(ValueError):
        chunks.decompress(blob, 999)


ENTRY = Entry(
    key="ab" * 16,
    action="cd" * 32,
    created=1700000000,
    outputs={
        "disk.raw": Output("ef" * 16, 8 << 30, (Chunk(0, 5, "00" * 32, "sha256:" + "11" * 32, 9),))
    },
)


def test_an_entry_round_trips_and_a_bad_one_is_an_entry_error():
    assert decode(ENTRY.encode()) == ENTRY
    for bad in (
        b"{",
        b"[]",
        b'{"format": 2}',
        ENTRY.encode().replace(b'"size":8589934592', b'"size":-1'),
    ):
        with pytest.raises(EntryError):
            decode(bad)


def test_a_signature_binds_repository_key_and_entry():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    writer, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    trusted = {key_id(writer.public_key()): writer.public_key()}
    signature = sign(writer, "reg/repo", "k1", "a" * 64)
    verify(trusted, signature, "reg/repo", "k1", "a" * 64)
    for repo, key, sha in (("reg/other", "k1", "a" * 64), ("reg/repo", "k2", "a" * 64),
                           ("reg/repo", "k1", "b" * 64)):  # fmt: skip
        with pytest.raises(EntryError, match="bad signature"):
            verify(trusted, signature, repo, key, sha)
    with pytest.raises(EntryError, match="not trusted"):
        verify(trusted, sign(stranger, "reg/repo", "k1", "a" * 64), "reg/repo", "k1", "a" * 64)
    with pytest.raises(EntryError, match="unsigned"):
        verify(trusted, "", "reg/repo", "k1", "a" * 64)
