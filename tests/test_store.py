"""The CAS and action cache: dedupe, read-only objects, LRU garbage collection."""

import json
import os
import time

import pytest

from buildgraph.engine.store import Store, parse_size


def _put(store, tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return store.put_file(path)


def test_equal_bytes_are_stored_once_and_read_only(tmp_path):
    store = Store(tmp_path / "cache")
    first = _put(store, tmp_path, "a", b"same")
    second = _put(store, tmp_path, "b", b"same")
    assert first == second
    assert store.stats().objects == 1
    assert not os.access(store.object_path(first[0]), os.W_OK) or os.geteuid() == 0
    assert store.object_path(first[0]).stat().st_mode & 0o777 == 0o444


def test_an_action_naming_a_lost_object_is_no_hit(tmp_path):
    store = Store(tmp_path / "cache")
    digest, size = _put(store, tmp_path, "a", b"data")
    store.put_action("k" * 32, {"a": (digest, size)}, [])
    assert store.get_action("k" * 32)["outputs"] == {"a": [digest, size]}
    store.object_path(digest).unlink()
    assert store.get_action("k" * 32) is None


def test_gc_drops_least_recently_used_first(tmp_path):
    store = Store(tmp_path / "cache")
    keys = []
    for index in range(3):
        digest, size = _put(store, tmp_path, f"f{index}", bytes([index]) * 10000)
        key = f"{index:032x}"
        store.put_action(key, {"out": (digest, size)}, [])
        store.touch_action(key, time.time_ns() - (1000 - index * 100) * 10**9)
        keys.append(key)
    store.get_action(keys[0])  # a hit makes the oldest the most recent
    per_object = store.object_path(store.get_action(keys[0])["outputs"]["out"][0]).stat()
    removed, freed = store.gc(2 * per_object.st_blocks * 512)
    assert removed == 1 and freed > 0
    assert store.get_action(keys[1]) is None
    assert store.get_action(keys[0]) is not None and store.get_action(keys[2]) is not None


def test_materialize_is_a_hard_link_replaced_atomically(tmp_path):
    store = Store(tmp_path / "cache")
    digest, _size = _put(store, tmp_path, "a", b"payload")
    dest = tmp_path / "_out" / "x.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"old")
    st = store.materialize(digest, dest)
    assert dest.read_bytes() == b"payload"
    assert st.st_ino == store.object_path(digest).stat().st_ino
    assert sorted(p.name for p in dest.parent.iterdir()) == ["x.bin"]


def test_scratch_of_a_dead_process_is_reaped(tmp_path):
    store = Store(tmp_path / "cache")
    with store.scratch() as mine:
        dead = store.tmp / "999999999-0"
        dead.mkdir()
        store.reap_scratch()
        assert mine.exists() and not dead.exists()


def test_scratch_is_reused_empty_and_dropped_at_the_end(tmp_path):
    store = Store(tmp_path / "cache")
    with store.scratch() as first:
        (first / "out" / "sub").mkdir()
        (first / "out" / "sub" / "partial").write_bytes(b"x")
        (first / "in" / "linked").write_bytes(b"y")
        (first / "work.tmp").write_bytes(b"z")
    with store.scratch() as second:
        assert second == first
        assert sorted(p.name for p in second.iterdir()) == ["in", "out"]
        assert list((second / "in").iterdir()) == list((second / "out").iterdir()) == []
    store.drop_scratch()
    assert not first.exists()
    assert list(store.tmp.iterdir()) == []


def test_a_scratch_that_cannot_be_emptied_is_not_reused(tmp_path):
    store = Store(tmp_path / "cache")
    with store.scratch() as first:
        (first / "out").rmdir()
        (first / "out").write_bytes(b"a file where out/ was")
    with store.scratch() as second:
        assert second != first and not first.exists()
        assert (second / "out").is_dir()


@pytest.mark.parametrize(
    ("text", "size"), [("5G", 5 << 30), ("500M", 500 << 20), ("10k", 10 << 10), ("123", 123)]
)
def test_sizes_parse(text, size):
    assert parse_size(text) == size


def test_a_bad_size_says_what_is_accepted():
    with pytest.raises(ValueError, match="k, M, G or T"):
        parse_size("lots")


def test_a_cache_from_before_the_action_database_keeps_its_entries(tmp_path):
    store = Store(tmp_path / "cache")
    digest, size = _put(store, tmp_path, "a", b"payload")
    key = "ab" * 16
    old = tmp_path / "cache" / "ac" / key[:2] / key
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({"outputs": {"a": [digest, size]}, "components": []}))
    assert store.get_action(key)["outputs"] == {"a": [digest, size]}
    assert not (tmp_path / "cache" / "ac").exists()
    assert Store(tmp_path / "cache").get_action(key) is not None


def test_materializing_over_the_same_object_leaves_no_temporary_file(tmp_path):
    store = Store(tmp_path / "cache")
    digest, _size = _put(store, tmp_path, "a", b"payload")
    dest = tmp_path / "_out" / "x.bin"
    store.materialize(digest, dest)
    Store(tmp_path / "cache").materialize(digest, dest)  # a second instance, same pid
    store.materialize(digest, dest)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["x.bin"]
