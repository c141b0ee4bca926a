"""The META format: fixed bytes the Go init also checks, round trips, torn copies, bad input."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buildgraph.formats import meta

# The same vectors are in init/meta_test.go: both sides agree byte for byte.
VALUES = {0x0: "", 0xA: "hello world", 0xFF: "é"}
ENTRIES_HEX = "0000000a000b68656c6c6f20776f726c64ff0002c3a9"
CMDLINE = "buildgraph.meta=AAAACgALaGVsbG8gd29ybGT_AALDqQ"
COPY_HEX = (
    "42474d4554410001"
    "f1ddf0fe0a6e5fa97fadf1ef916763d2ca008ad43418b020b3ef9c5eaac5f7a0"
    "0000000a000b68656c6c6f20776f726c64ff0002c3a9ffffff"
)
PARTITION_256 = bytes.fromhex(COPY_HEX).ljust(128, b"\0") * 2

values_strategy = st.dictionaries(st.integers(0, 255), st.text(max_size=40), max_size=12)


def test_fixed_vectors() -> None:
    assert meta.encode_entries(VALUES).hex() == ENTRIES_HEX
    assert meta.cmdline_param(VALUES) == CMDLINE
    assert meta.encode_partition(VALUES, size=256) == PARTITION_256
    assert meta.decode_partition(PARTITION_256) == VALUES
    assert meta.decode_cmdline_value(CMDLINE.split("=", 1)[1]) == VALUES


def test_default_partition_is_one_mib_of_two_equal_copies() -> None:
    data = meta.encode_partition({0xA: "hello"})
    assert len(data) == 1 << 20
    assert data[: 1 << 19] == data[1 << 19 :]
    copy = bytearray(data[: 1 << 19])
    checksum = bytes(copy[8:40])
    copy[8:40] = bytes(32)
    assert hashlib.sha256(copy).digest() == checksum


def test_same_values_give_the_same_bytes_whatever_the_order() -> None:
    a = meta.encode_partition({0xB: "x", 0xA: "hello"})
    b = meta.encode_partition({0xA: "hello", 0xB: "x"})
    assert a == b
    assert meta.encode_partition({}) != a


@given(values_strategy)
def test_partition_round_trip(values: dict[int, str]) -> None:
    assert meta.decode_partition(meta.encode_partition(values, size=4096)) == values


@given(values_strategy)
def test_cmdline_round_trip(values: dict[int, str]) -> None:
    param = meta.cmdline_param(values)
    if not values:
        assert param == ""
        return
    key, _, value = param.partition("=")
    assert key == "buildgraph.meta"
    assert "=" not in value and "+" not in value and "/" not in value
    assert meta.decode_cmdline_value(value) == values


@pytest.mark.parametrize("where", [0, 3, 7, 20, 45, 127])
def test_a_corrupt_first_copy_falls_back_to_the_second(where: int) -> None:
    data = bytearray(meta.encode_partition({0xA: "first"}, size=256))
    data[where] ^= 0x40
    assert meta.decode_partition(bytes(data)) == {0xA: "first"}


def test_a_torn_write_keeps_the_old_values() -> None:
    old = meta.encode_partition({0xA: "old"}, size=256)
    new = meta.encode_partition({0xA: "new", 0xB: "more"}, size=256)
    torn = new[:45] + old[45:]  # the first copy half written
    assert meta.decode_partition(torn) == {0xA: "old"}


def test_both_copies_corrupt_is_an_error() -> None:
    data = bytearray(meta.encode_partition({0xA: "x"}, size=256))
    data[50] ^= 1
    data[128 + 50] ^= 1
    with pytest.raises(ValueError, match=r"no valid META copy.*checksum"):
        meta.decode_partition(bytes(data))
    with pytest.raises(ValueError, match="bad magic"):
        meta.decode_partition(bytes(1 << 20))


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("0xa=hello", (10, "hello")),
        ("10=hello", (10, "hello")),
        ("0o12=a=b", (10, "a=b")),
        ("0XFF=", (255, "")),
        ("0=with space", (0, "with space")),
    ],
)
def test_parse_assignment(text: str, want: tuple[int, str]) -> None:
    assert meta.parse_assignment(text) == want


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0xa", "no '='"),
        ("zz=1", "'zz' is not a number"),
        ("=1", "is not a number"),
        ("256=x", r"not in 0\.\.255"),
        ("-1=x", r"not in 0\.\.255"),
        ("1=" + "x" * 65535, "longer than 65534"),
    ],
)
def test_parse_assignment_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        meta.parse_assignment(text)
    assert text[:20] in str(err.value)


def test_key_name() -> None:
    assert meta.key_name(10) == "0xa"
    assert meta.key_name(0) == "0x0"
    assert meta.key_name(255) == "0xff"


def test_encode_rejects_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match=r"not in 0\.\.255"):
        meta.encode_partition({256: "x"})
    with pytest.raises(ValueError, match="room for 64"):
        meta.encode_partition({1: "x" * 100}, size=128)
    with pytest.raises(ValueError, match="odd"):
        meta.encode_partition({}, size=257)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("CgAFaGVsbG8LAA", "cut short"),  # the last entry cut
        ("CgAFaGVsbG8LAAF4=", "without padding"),
        ("CgAF+GVsbG8LAAF4", "base64url"),
        ("CwABeAoABWhlbGxv", "out of order"),  # 0xb before 0xa
        ("CgAB_w", "not UTF-8"),
    ],
)
def test_decode_cmdline_value_rejects(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        meta.decode_cmdline_value(value)
