"""META: a small key/value store of the booted system, on a partition or the command line.

Keys are numbers 0..255 (written ``0xa`` by convention), values UTF-8 strings of at most
65534 bytes. The init (``init/meta.go``) reads them; this module writes (and reads) them.

Entries (TLV), sorted by key, each key at most once::

    key u8 | length u16 big-endian | value bytes

Partition (``size`` bytes, 1 MiB by default): two identical copies, one per half, so a
write torn in one half or a damaged sector leaves the other. A copy is ``size // 2`` bytes::

    0   magic     b"BGMETA"
    6   version   u16 big-endian, 1
    8   checksum  sha256 of the whole copy with these 32 bytes zeroed
    40  entries   as above
    ..  end       ff ff ff (key 255, length 0xffff: a length no entry may have)
    ..  zeros to the end of the copy

A copy is valid when magic, version and checksum match and its entries parse with keys
increasing up to the end marker; the reader takes the first valid copy. The same values
always give the same bytes.

Command line (ISO and PXE boots, no partition): ``buildgraph.meta=<entries>``, the entries
without the end marker, base64url without padding.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterable, Mapping

MAGIC = b"BGMETA"
VERSION = 1
HEADER = struct.Struct(">6sH32s")
ENTRY = struct.Struct(">BH")
END = b"\xff\xff\xff"
MAX_VALUE = 0xFFFE
DEFAULT_SIZE = 1 << 20
CMDLINE_KEY = "buildgraph.meta"
_CHECKSUM = slice(8, 40)


def parse_assignment(text: str) -> tuple[int, str]:
    """``KEY=VALUE`` (key 0..255 in any base ``int(x, 0)`` reads) as ``(key, value)``."""
    key_text, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"META value {text!r} is not KEY=VALUE (no '=')")
    try:
        key = int(key_text.strip(), 0)
    except ValueError:
        raise ValueError(
            f"META value {text!r}: key {key_text!r} is not a number (e.g. 0xa or 10)"
        ) from None
    _check_key(key, text)
    _check_value(value, text)
    return key, value


def parse_words(words: Iterable[str]) -> dict[int, str]:
    """``KEY=VALUE`` words as values; a later word wins for its key."""
    return dict(map(parse_assignment, words))


def key_name(key: int) -> str:
    """The canonical spelling of a key: ``0x%x``."""
    return f"0x{key:x}"


def encode_entries(values: Mapping[int, str]) -> bytes:
    """The TLV entries of ``values``, sorted by key."""
    out = bytearray()
    for key in sorted(values):
        value = values[key]
        _check_key(key, f"{key}={value}")
        _check_value(value, f"{key_name(key)}={value}")
        data = value.encode()
        out += ENTRY.pack(key, len(data)) + data
    return bytes(out)


def decode_entries(data: bytes, *, terminated: bool) -> dict[int, str]:
    """Entries back to values; ``terminated``: they end with the end marker (the rest of
    ``data`` is ignored), else they fill ``data`` exactly."""
    values: dict[int, str] = {}
    pos, last = 0, -1
    while True:
        if terminated and data[pos : pos + len(END)] == END:
            return values
        if not terminated and pos == len(data):
            return values
        if pos + ENTRY.size > len(data):
            raise ValueError(f"META entries are cut short at byte {pos}")
        key, length = ENTRY.unpack_from(data, pos)
        pos += ENTRY.size
        if length > MAX_VALUE or pos + length > len(data):
            raise ValueError(f"META entry {key_name(key)} runs past the end")
        if key <= last:
            raise ValueError(f"META key {key_name(key)} is out of order or repeated")
        last = key
        try:
            values[key] = data[pos : pos + length].decode()
        except UnicodeDecodeError:
            raise ValueError(f"META value of {key_name(key)} is not UTF-8") from None
        pos += length


def partition_body(values: Mapping[int, str], size: int = DEFAULT_SIZE) -> bytes:
    """The entries and end marker of a copy; ValueError when they do not fit one."""
    if size % 2:
        raise ValueError(f"META partition size {size} is odd; it holds two equal copies")
    half = size // 2
    body = encode_entries(values) + END
    if HEADER.size + len(body) > half:
        raise ValueError(
            f"META values take {HEADER.size + len(body)} bytes; a copy has room for {half}"
        )
    return body


def encode_partition(values: Mapping[int, str], size: int = DEFAULT_SIZE) -> bytes:
    """A META partition of ``size`` bytes (even) holding ``values`` twice."""
    body = partition_body(values, size)
    half = size // 2
    copy = bytearray(half)
    copy[: HEADER.size] = HEADER.pack(MAGIC, VERSION, bytes(32))
    copy[HEADER.size : HEADER.size + len(body)] = body
    copy[_CHECKSUM] = hashlib.sha256(copy).digest()
    return bytes(copy) * 2


def decode_partition(data: bytes) -> dict[int, str]:
    """The values of the first valid copy; ValueError when neither copy is valid."""
    half = len(data) // 2
    problems = []
    for n in range(2):
        try:
            return _decode_copy(data[n * half : (n + 1) * half])
        except ValueError as err:
            problems.append(f"copy {n}: {err}")
    raise ValueError("no valid META copy (" + "; ".join(problems) + ")")


def cmdline_param(values: Mapping[int, str]) -> str:
    """``buildgraph.meta=<base64url>`` for a kernel command line; "" for no values."""
    if not values:
        return ""
    encoded = base64.urlsafe_b64encode(encode_entries(values)).rstrip(b"=").decode()
    return f"{CMDLINE_KEY}={encoded}"


def decode_cmdline_value(value: str) -> dict[int, str]:
    """The values of a ``buildgraph.meta=`` parameter's value."""
    try:
        data = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        raise ValueError(f"{CMDLINE_KEY}={value!r} is not base64url") from None
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode() != value:
        raise ValueError(f"{CMDLINE_KEY}={value!r} is not base64url without padding")
    return decode_entries(data, terminated=False)


def _decode_copy(copy: bytes) -> dict[int, str]:
    if len(copy) < HEADER.size + len(END):
        raise ValueError(f"{len(copy)} bytes is too short")
    magic, version, checksum = HEADER.unpack_from(copy)
    if magic != MAGIC:
        raise ValueError(f"bad magic {magic!r}")
    if version != VERSION:
        raise ValueError(f"version {version} is not {VERSION}")
    zeroed = bytearray(copy)
    zeroed[_CHECKSUM] = bytes(32)
    if hashlib.sha256(zeroed).digest() != checksum:
        raise ValueError("checksum mismatch")
    return decode_entries(copy[HEADER.size :], terminated=True)


def _check_key(key: object, text: object) -> None:
    if not isinstance(key, int) or isinstance(key, bool) or not 0 <= key <= 255:
        raise ValueError(f"META value {text!r}: key {key!r} is not in 0..255")


def _check_value(value: object, text: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"META value {text!r}: value is not a string")
    if len(value.encode()) > MAX_VALUE:
        raise ValueError(
            f"META value {text[:40]!r}...: value is longer than {MAX_VALUE} bytes of UTF-8"
        )
