"""Image Factory schematics, byte for byte as the public factory reads and writes them.

A schematic's ID is the SHA-256 of its canonical YAML, which the public factory makes by
decoding a body into its Go struct and marshalling that with go-yaml v4 (rc.6). Any other
rendering gives the same customizations another ID, and an image built here would name a
schematic the public factory does not know. So :func:`parse` reads a body as go-yaml's
``Decoder`` does (the first document only, known fields, unique keys, Go's scalar
resolution) and :meth:`Schematic.marshal` writes it as go-yaml's representer, desolver and
emitter do (4-space indent, no wrapping, quotes exactly where go-yaml puts them).
:data:`_FIELDS`, the upstream struct, drives both directions.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import math
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, NamedTuple

import yaml

from ..engine.errors import BuildgraphError


class SchematicError(BuildgraphError):
    """A schematic body that does not parse, or that this factory refuses."""


_STR, _BOOL, _U8, _UINT, _BOOT, _ANY = "string", "bool", "uint8", "uint", "bootloader", "any"
# struct -> [(key, kind, omitempty)] in Go field order. A kind is one of the scalar kinds
# above, a struct's name, or (kind,) for a list of it.
_FIELDS: dict[str, list[tuple[str, Any, bool]]] = {
    "Schematic": [("owner", _STR, True), ("overlay", "Overlay", True),
                  ("customization", "Customization", False)],
    "Overlay": [("image", _STR, False), ("name", _STR, False), ("options", _ANY, True)],
    "Customization": [
        ("embeddedMachineConfiguration", _STR, True), ("extraKernelArgs", (_STR,), True),
        ("meta", ("MetaValue",), True), ("systemExtensions", "SystemExtensions", True),
        ("bootloader", _BOOT, True), ("secureboot", "SecureBoot", True),
        ("diskImage", "DiskImage", True)],
    "MetaValue": [("key", _U8, False), ("value", _STR, False)],
    "SystemExtensions": [("officialExtensions", (_STR,), True)],
    "SecureBoot": [("enrollKeys", _STR, True), ("includeWellKnownCertificates", _BOOL, True)],
    "DiskImage": [("sectorSize", _UINT, True)],
}  # fmt: skip
BOOTLOADERS = ("dual-boot", "sd-boot", "grub")
"""Upstream's ``imageropts.BootloaderKind`` names. Its zero value ``none`` is read in any
case and written as nothing; the others are read in any case and written lower case."""


@dataclass(frozen=True)
class Overlay:
    image: str = ""
    name: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Schematic:
    overlay: Overlay | None = None
    embedded_machine_configuration: str = ""
    extra_kernel_args: tuple[str, ...] = ()
    meta: tuple[tuple[int, str], ...] = ()
    official_extensions: tuple[str, ...] = ()
    bootloader: str = ""
    enroll_keys: str = ""
    include_well_known_certificates: bool = False
    sector_size: int = 0

    def __post_init__(self) -> None:
        if self.bootloader not in ("", *BOOTLOADERS):
            raise SchematicError(f"bootloader {self.bootloader!r} is not one of {BOOTLOADERS}")
        if not all(0 <= key <= 255 for key, _ in self.meta):
            raise SchematicError("a meta key is out of range 0..255")

    def marshal(self) -> bytes:
        """The canonical YAML: go-yaml's ``Marshal`` of the upstream struct."""
        o = self.overlay or Overlay()
        c = {
            "embeddedMachineConfiguration": self.embedded_machine_configuration,
            "extraKernelArgs": list(self.extra_kernel_args),
            "meta": [{"key": key, "value": value} for key, value in self.meta],
            "systemExtensions": {"officialExtensions": list(self.official_extensions)},
            "bootloader": self.bootloader,
            "secureboot": {
                "enrollKeys": self.enroll_keys,
                "includeWellKnownCertificates": self.include_well_known_certificates,
            },
            "diskImage": {"sectorSize": self.sector_size},
        }
        overlay = {"image": o.image, "name": o.name, "options": o.options}
        writer = _Writer()
        writer.node(_represent("Schematic", {"owner": "", "overlay": overlay, "customization": c}))
        writer.write_indent()  # the document's end
        return "".join(writer.parts).encode()

    @property
    def id(self) -> str:
        return hashlib.sha256(self.marshal()).hexdigest()


EMPTY = Schematic()


def parse(body: bytes) -> Schematic:
    """The schematic a body says, read as the public factory reads it; SchematicError if not."""
    try:
        loader = _Loader(io.BytesIO(body))  # read as far as needed, as go-yaml reads
        try:
            if not loader.check_node():
                raise SchematicError("EOF")  # go-yaml's io.EOF: no document at all
            root = loader.get_node()  # the first document: what follows is never read
        finally:
            loader.dispose()
        go = _Decoder().decode(root, "Schematic", "") or _zero("Schematic")  # null: all unset
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SchematicError(f"schematic is not valid yaml: {err.problem}{where}") from None
    except yaml.YAMLError as err:
        raise SchematicError(f"schematic is not valid yaml: {' '.join(str(err).split())}") from None
    except RecursionError:
        raise SchematicError("schematic: nested too deeply") from None
    if go["owner"]:
        raise SchematicError(
            "owner is set: schematic owners are an Enterprise feature this factory does not have"
        )
    o, c = go["overlay"], go["customization"]
    return Schematic(
        overlay=None if _is_zero("Overlay", o) else Overlay(o["image"], o["name"], o["options"]),
        embedded_machine_configuration=c["embeddedMachineConfiguration"],
        extra_kernel_args=tuple(c["extraKernelArgs"]),
        meta=tuple((m["key"], m["value"]) for m in c["meta"]),
        official_extensions=tuple(c["systemExtensions"]["officialExtensions"]),
        bootloader=c["bootloader"],
        enroll_keys=c["secureboot"]["enrollKeys"],
        include_well_known_certificates=c["secureboot"]["includeWellKnownCertificates"],
        sector_size=c["diskImage"]["sectorSize"],
    )


def _zero(kind: Any) -> Any:
    if kind in _FIELDS:
        return {key: _zero(sub) for key, sub, _ in _FIELDS[kind]}
    if isinstance(kind, tuple):
        return []
    return {_ANY: {}, _BOOL: False, _U8: 0, _UINT: 0}.get(kind, "")


def _is_zero(kind: Any, value: Any) -> bool:
    if kind in _FIELDS:
        return all(_is_zero(sub, value[key]) for key, sub, _ in _FIELDS[kind])
    return not value


# --- Reading: go-yaml's resolver and decoder ------------------------------------------------

_TAG_PLAIN, _TAG_QUOTED, _YAML = "?plain", "?quoted", "tag:yaml.org,2002:"
_BREAKS = "\r\n\x85\u2028\u2029"


class _Loader(yaml.SafeLoader):
    """Composes nodes only: an untagged scalar is marked plain or quoted, resolved by us."""

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode:
            return _TAG_PLAIN if implicit[0] else _TAG_QUOTED
        return super().resolve(kind, value, implicit)


_MAPPED: dict[str, tuple[str, Any]] = {"": ("!!null", None)}
for _tag, _value, _words in (
    ("!!bool", True, "true True TRUE"), ("!!bool", False, "false False FALSE"),
    ("!!null", None, "~ null Null NULL"), ("!!float", math.nan, ".nan .NaN .NAN"),
    ("!!float", math.inf, ".inf .Inf .INF +.inf +.Inf +.INF"),
    ("!!float", -math.inf, "-.inf -.Inf -.INF"), ("!!float", -0.0, "-0 -0.0"),
    ("!!merge", "<<", "<<"),
):  # fmt: skip
    _MAPPED.update(dict.fromkeys(_words.split(), (_tag, _value)))
_INT = re.compile(r"([+-]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_DOT_FLOAT = re.compile(r"\.[0-9]+(?:[eE][-+]?[0-9]+)?")  # what strconv.ParseFloat takes
_DATE = r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{1,2})-(?P<d>[0-9]{1,2})"
_CLOCK = r"(?P<h>[0-9]{1,2}):(?P<mi>[0-9]{1,2}):(?P<s>[0-9]{1,2})(?:[.,](?P<frac>[0-9]+))?"
_TIMESTAMPS = [  # go-yaml's layouts, as time.Parse reads them
    re.compile(_DATE),
    re.compile(_DATE + "[Tt]" + _CLOCK + r"(?P<zone>Z|[-+][0-9]{2}:[0-9]{2})"),
    re.compile(_DATE + " +" + _CLOCK),
]
_BASE60 = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")
_YES = frozenset(["y", "Y", "yes", "Yes", "YES", "on", "On", "ON"])
_OLD_BOOLS = _YES | frozenset(["n", "N", "no", "No", "NO", "off", "Off", "OFF"])  # YAML 1.1


def _timestamp(s: str) -> tuple | None:
    """The fields of a timestamp go-yaml's ``parseTimestamp`` accepts, or None."""
    for pattern in _TIMESTAMPS:
        if m := pattern.fullmatch(s):
            g = m.groupdict()
            y, mo, d, h, mi, sec = (int(g.get(k) or 0) for k in ("y", "mo", "d", "h", "mi", "s"))
            zone = g.get("zone") or "Z"
            leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
            days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
            zone_ok = zone == "Z" or (int(zone[1:3]) <= 24 and int(zone[4:]) <= 60)
            if 1 <= mo <= 12 and 1 <= d <= days[mo - 1] and h < 24 and mi < 60 and sec < 60:
                return (y, mo, d, h, mi, sec, g.get("frac") or "", zone) if zone_ok else None
    return None


def _go_int(s: str) -> int | None:
    """``strconv.ParseInt(s, 0, 64)``, else ``ParseUint``: Go's literal syntax, so 012 is 10."""
    if not (m := _INT.fullmatch(s)):
        return None
    sign, digits = m[1], m[2]
    if len(digits) > 1 and digits[1] in "xXoObB":
        n = int(digits[2:], {"x": 16, "o": 8, "b": 2}[digits[1].lower()])
    else:
        n = int(digits, 8 if digits[0] == "0" else 10)
    n = -n if sign == "-" else n
    return n if -(2**63) <= n < 2**63 or (not sign and n < 2**64) else None


def _resolve(s: str, timestamps: bool = True) -> tuple[str, Any]:
    """go-yaml's ``resolve`` of a plain scalar: its tag and its Go value."""
    if s in _MAPPED:
        return _MAPPED[s]
    if s[0] == ".":
        if _DOT_FLOAT.fullmatch(s) and not math.isinf(f := float(s)):
            return "!!float", f
    elif s[0] in "+-0123456789":
        if timestamps and (ts := _timestamp(s)):
            return "!!timestamp", ts
        plain = s.replace("_", "")
        if (n := _go_int(plain)) is not None:
            return "!!int", n
        if _FLOAT.fullmatch(plain) and not math.isinf(f := float(plain)):
            return "!!float", f
    return "!!str", s


def _got(node: yaml.Node) -> str:
    kinds = {yaml.MappingNode: "a mapping", yaml.SequenceNode: "a list"}
    return kinds.get(type(node)) or repr(node.value)


class _Decoder:
    """go-yaml's decoder into the upstream struct with the factory's options (known fields,
    unique keys) and go-yaml's alias limit. The first error, naming its field, ends it."""

    def __init__(self) -> None:
        self.count = self.aliased = 0
        self.seen: set[int] = set()
        self.active: list[int] = []

    def fail(self, path: str, message: str) -> SchematicError:
        return SchematicError(f"{path or 'schematic'}: {message}")

    def scalar(self, node: yaml.Node, path: str) -> tuple[str, Any]:
        """The tag and value go-yaml resolves a scalar to (``Constructor.scalar``)."""
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(path, f"expected a single value, got {_got(node)}")
        tag, raw = node.tag, node.value
        if tag == _TAG_QUOTED or (tag == _TAG_PLAIN and node.style) or tag == _YAML + "str":
            return "!!str", raw
        if tag == _TAG_PLAIN:
            return _resolve(raw)
        short = "!!" + tag.removeprefix(_YAML) if tag.startswith(_YAML) else tag
        if short == "!!binary":
            try:
                return short, base64.b64decode(re.sub("[\r\n]", "", raw), validate=True).decode()
            except ValueError:
                raise self.fail(path, "!!binary value is not base64 of UTF-8 text") from None
        if short not in ("!!bool", "!!int", "!!float", "!!null", "!!timestamp"):
            return short, raw  # a tag go-yaml does not resolve: the text as written
        rtag, value = _resolve(raw, timestamps=short == "!!timestamp")
        if rtag == short or (short == "!!float" and rtag == "!!int"):
            return short, float(value) if short != rtag else value
        raise self.fail(path, f"cannot construct {rtag} `{raw}` as a {short}")

    def text(self, node: yaml.Node, path: str) -> str | None:
        """A scalar decoded into a Go string: the text as written; None for a null."""
        tag, value = self.scalar(node, path)
        return None if value is None else value if tag == "!!binary" else node.value

    def pairs(self, node: yaml.Node, path: str) -> list[tuple[yaml.Node, yaml.Node]]:
        """A mapping's keys and values: each key once, then what ``<<`` merges in."""
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(path, f"expected a mapping, got {_got(node)}")

        def raw(key: yaml.Node) -> str:  # go-yaml compares keys by kind and text as written
            return key.value if isinstance(key, yaml.ScalarNode) else ""

        lines: dict[tuple[type, str], int] = {}
        own, merged = [], []
        for key, value in node.value:
            if (type(key), raw(key)) in lines:
                line, again = lines[(type(key), raw(key))], key.start_mark.line + 1
                raise self.fail(path, f"key {raw(key)!r} is given twice (lines {line} and {again})")
            lines[(type(key), raw(key))] = key.start_mark.line + 1
            if isinstance(key, yaml.ScalarNode) and self.scalar(key, path)[0] == "!!merge":
                for source in value.value if isinstance(value, yaml.SequenceNode) else [value]:
                    if not isinstance(source, yaml.MappingNode):
                        raise self.fail(path, "a << merge takes a mapping or a list of mappings")
                    merged.extend(self.pairs(source, path))
            else:
                own.append((key, value))
        taken = {raw(key) for key, _ in own}
        for key, value in merged:  # a key the mapping has, or an earlier merge gave, wins
            if raw(key) not in taken:
                own.append((key, value))
                taken.add(raw(key))
        return own

    def count_node(self, node: yaml.Node, path: str) -> None:
        """go-yaml's alias limit: a document made mostly of alias expansions is refused."""
        self.count += 1
        self.aliased += id(node) in self.seen  # met before: an alias's expansion
        self.seen.add(id(node))
        low, high = 400_000, 4_000_000
        ratio = 0.99 - 0.89 * (min(max(self.count, low), high) - low) / (high - low)
        if self.aliased > 100 and self.count > 1000 and self.aliased / self.count > ratio:
            raise self.fail(path, "document contains excessive aliasing")

    def decode(self, node: yaml.Node, kind: Any, path: str) -> Any:
        """A node decoded into ``kind``; None where go-yaml leaves the target unset."""
        self.count_node(node, path)
        null = isinstance(node, yaml.ScalarNode) and self.scalar(node, path)[0] == "!!null"
        if null and kind not in (_STR, _BOOT):  # a null empties a list or a map, sets nothing else
            return [] if isinstance(kind, tuple) else {} if kind == _ANY else None
        if isinstance(kind, tuple):
            if not isinstance(node, yaml.SequenceNode):
                raise self.fail(path, f"expected a list, got {_got(node)}")
            items = (
                self.decode(item, kind[0], f"{path}[{i}]") for i, item in enumerate(node.value)
            )
            return [item for item in items if item is not None]  # go-yaml drops a null item
        if kind in _FIELDS:
            fields = {key: sub for key, sub, _ in _FIELDS[kind]}
            out = _zero(kind)
            for key, value in self.pairs(node, path):
                if (name := self.text(key, path)) is None:
                    continue  # go-yaml skips a null key
                if name not in fields:
                    raise self.fail(path, f"unknown field {name!r}")
                decoded = self.decode(value, fields[name], f"{path}.{name}".lstrip("."))
                out[name] = out[name] if decoded is None else decoded
            return out
        if kind == _ANY:
            pairs = ((self.text(key, path), value) for key, value in self.pairs(node, path))
            return {
                name: self.any(value, f"{path}.{name}") for name, value in pairs if name is not None
            }
        if kind in (_STR, _BOOT):
            text = self.text(node, path)
            if kind == _STR or text is None:
                return text
            if (name := text.lower()) in ("none", *BOOTLOADERS):  # enumer: exact, then lower
                return "" if name == "none" else name
            raise self.fail(path, f"{text!r} is not one of none, {', '.join(BOOTLOADERS)}")
        value = self.scalar(node, path)[1]
        if kind == _BOOL:
            if isinstance(value, bool) or (isinstance(value, str) and value in _OLD_BOOLS):
                return value in _YES if isinstance(value, str) else value  # YAML 1.1 words too
            raise self.fail(path, f"expected true or false, got {node.value!r}")
        top = 255 if kind == _U8 else 2**64 - 1
        if isinstance(value, float) and math.isfinite(value):
            value = math.trunc(value)  # go-yaml takes a float for an uint: uint64(f)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected an integer 0..{top}, got {node.value!r}")
        if not 0 <= value <= top:
            raise self.fail(path, f"{node.value} is out of range 0..{top}")
        return value

    def any(self, node: yaml.Node, path: str) -> Any:
        """A node decoded into a Go ``any``, as the overlay's ``map[string]any`` holds it."""
        self.count_node(node, path)
        if id(node) in self.active:
            raise self.fail(path, "an alias contains itself")
        if isinstance(node, yaml.ScalarNode):
            tag, value = self.scalar(node, path)
            if tag != "!!timestamp":
                return value
            y, mo, d, h, mi, sec, frac, zone = value
            try:
                offset = (
                    timedelta(hours=int(zone[1:3]), minutes=int(zone[4:])) if zone != "Z" else 0
                )
                tz = timezone(-offset if zone[0] == "-" else offset) if offset else UTC
                return datetime(y, mo, d, h, mi, sec, int(frac[:6].ljust(6, "0")), tz)
            except ValueError:
                raise self.fail(path, f"timestamp {node.value!r} is out of range here") from None
        self.active.append(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.any(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
            pairs = self.pairs(node, path)
            strings = all(
                isinstance(key, yaml.ScalarNode) and self.scalar(key, path)[0] == "!!str"
                for key, _ in pairs
            )  # go-yaml makes a map[string]any of these keys, else a map[any]any
            out: dict[Any, Any] = {}
            for key, value in pairs:
                name = self.text(key, path) if strings else self.any(key, path)
                if isinstance(name, list | dict):
                    raise self.fail(path, "a list or mapping cannot be a key")
                out[name] = self.any(value, f"{path}.{name}")
            return out
        finally:
            self.active.pop()


# --- Writing: go-yaml's representer, desolver and emitter -----------------------------------

_PLAIN, _SINGLE, _DOUBLE, _LITERAL = "plain", "'", '"', "|"


class _Scalar(NamedTuple):
    text: str
    style: str  # what go-yaml asks the emitter for; the emitter may still quote more


class _Map(list):
    """A mapping's (key, value) nodes, in order."""


class _Seq(list):
    """A sequence's nodes."""


_GO_SPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000")
_GO_SPACE |= frozenset(map(chr, range(0x2000, 0x200B)))  # unicode.IsSpace


def _string(s: str) -> _Scalar:
    """A string as go-yaml's representer and desolver style it."""
    if "\n" in s:
        literal = s != "\n" and any(c not in _GO_SPACE for c in s)
        return _Scalar(s, _LITERAL if literal else _DOUBLE)
    if _BASE60.fullmatch(s) or s in _OLD_BOOLS or s == "<<":
        return _Scalar(s, _SINGLE)  # what YAML 1.1 reads otherwise: single-quoted in rc.6
    return _Scalar(s, _PLAIN if _resolve(s)[0] == "!!str" else _DOUBLE)  # QuoteLegacy: double


def _go_float(f: float) -> str:
    """``strconv.FormatFloat(f, 'g', -1, 64)``, with go-yaml's names for the specials."""
    if math.isnan(f) or math.isinf(f):
        return ".nan" if math.isnan(f) else ".inf" if f > 0 else "-.inf"
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 else "0"
    _, digits, exp = Decimal(repr(abs(f))).as_tuple()  # repr: the shortest digits, as Go's
    point, ds = len(digits) + int(exp), "".join(map(str, digits)).rstrip("0")
    sign = "-" if f < 0 else ""
    if not -4 <= point - 1 < 6:  # shortest 'g' takes %e outside 1e-4..1e6
        e = point - 1
        mantissa = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{sign}{mantissa}e{'-' if e < 0 else '+'}{abs(e):02d}"
    whole = ds[:point].ljust(point, "0") if point > 0 else "0"
    frac = "".join(ds[j] if j >= 0 else "0" for j in range(point, len(ds)))
    return f"{sign}{whole}{'.' + frac if frac else ''}"


def _go_time(t: datetime) -> str:
    """``time.RFC3339Nano``, as go-yaml writes a ``time.Time``."""
    s = t.strftime("%m-%dT%H:%M:%S")
    s = f"{t.year:04d}-{s}" + ("." + f"{t.microsecond:06d}".rstrip("0") if t.microsecond else "")
    minutes = int((t.utcoffset() or timedelta()).total_seconds()) // 60
    zone = f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return s + (zone if minutes else "Z")


def _go_kind(v: Any) -> int:
    """The ``reflect.Kind`` of the Go value go-yaml decodes ``v`` to, as it sorts map keys."""
    for kind, number in ((bool, 1), (int, 2), (float, 14), (str, 24), (datetime, 25)):
        if isinstance(v, kind):
            return 11 if kind is int and not -(2**63) <= v < 2**63 else number  # uint64
    return 20  # nil: an interface


def _key_less(a: Any, b: Any) -> bool:
    """go-yaml's ``keyList.Less``: numbers by value, strings in natural order, else by kind."""
    ak, bk = _go_kind(a), _go_kind(b)
    if ak in (1, 2, 11, 14) and bk in (1, 2, 11, 14):
        return float(a) < float(b) if float(a) != float(b) else ak < bk if ak != bk else a < b
    if ak != 24 or bk != 24:
        return ak < bk

    def digit(c: str) -> bool:
        return unicodedata.category(c) == "Nd"

    def number(s: str, i: int, n: int) -> tuple[int, int]:
        while i < len(s) and digit(s[i]):
            n, i = (n * 10 + ord(s[i]) - 48 + 2**63) % 2**64 - 2**63, i + 1  # an int64
        return n, i

    after_digit = False
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x == y:
            after_digit = digit(x)
            continue
        x_letter, y_letter = unicodedata.category(x)[0] == "L", unicodedata.category(y)[0] == "L"
        if x_letter and y_letter:
            return x < y
        if x_letter or y_letter:
            return x_letter if after_digit else y_letter
        start = 0  # 1 mid-number, after a non-zero digit, as go-yaml counts there
        if "0" in (x, y):
            run = a[:i][::-1]
            start = int(
                run[: next((k for k, c in enumerate(run) if not digit(c)), i)].strip("0") != ""
            )
        (an, ai), (bn, bi) = number(a, i, start), number(b, i, start)
        return an < bn if an != bn else ai < bi if ai != bi else x < y
    return len(a) < len(b)


def _any(v: Any) -> Any:
    """An overlay option as go-yaml represents the Go value it was decoded to."""
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, dict):
        order = functools.cmp_to_key(lambda a, b: -1 if _key_less(a, b) else int(_key_less(b, a)))
        return _Map((_any(key), _any(v[key])) for key in sorted(v, key=order))
    if isinstance(v, list | tuple):
        return _Seq(map(_any, v))
    if isinstance(v, bool) or v is None:
        return _Scalar({True: "true", False: "false", None: "null"}[v], _PLAIN)
    if isinstance(v, int | float):
        return _Scalar(str(v) if isinstance(v, int) else _go_float(v), _PLAIN)
    if isinstance(v, datetime):
        return _Scalar(_go_time(v if v.tzinfo else v.replace(tzinfo=UTC)), _PLAIN)
    raise SchematicError(f"overlay options cannot hold a {type(v).__name__}")


def _represent(kind: Any, value: Any) -> Any:
    """The node go-yaml represents a struct's value as, leaving out empty omitempty fields."""
    if kind in _FIELDS:
        fields = [
            (key, sub)
            for key, sub, omit in _FIELDS[kind]
            if not omit or not _is_zero(sub, value[key])
        ]
        return _Map((_Scalar(key, _PLAIN), _represent(sub, value[key])) for key, sub in fields)
    if isinstance(kind, tuple):
        return _Seq(_represent(kind[0], item) for item in value)
    if kind == _ANY:
        return _any(dict(value))
    if kind in (_STR, _BOOT):
        return _string(value)
    return _Scalar(("true" if value else "false") if kind == _BOOL else str(value), _PLAIN)


def _printable(c: str) -> bool:
    """libyaml's ``is_printable``: no control but LF, no BOM, nothing beyond the BMP."""
    o = ord(c)
    return (
        o == 0x0A
        or 0x20 <= o <= 0x7E
        or 0xA0 <= o <= 0xD7FF
        or (0xE000 <= o <= 0xFFFD and o != 0xFEFF)
    )


def _analyze(v: str) -> tuple[bool, bool, bool, bool]:
    """libyaml's ``analyze_scalar`` in block context: is the value multi-line, and may it be
    plain, single-quoted, a literal block?"""
    if not v:
        return False, True, True, False
    indicator = v.startswith(("---", "..."))
    breaks = special = tabs = space_break = break_space = after_space = after_break = False
    after_blank = True
    for i, c in enumerate(v):
        before_blank = i + 1 == len(v) or v[i + 1] in " \t"
        if i == 0:
            indicator |= c in "#,[]{}&*!|>'\"%@`" or (c in "?:-" and before_blank)
        else:
            indicator |= (c == ":" and before_blank) or (c == "#" and after_blank)
        tabs |= c == "\t"
        special |= c != "\t" and not _printable(c)
        break_space |= c == " " and after_break
        space_break |= c in _BREAKS and after_space
        breaks |= c in _BREAKS
        after_space, after_break = c == " ", c in _BREAKS
        after_blank = c in " \t\0" + _BREAKS
    edges = v[0] in " " + _BREAKS or v[-1] in " " + _BREAKS
    plain = not (edges or break_space or space_break or tabs or special or breaks or indicator)
    single = not (break_space or space_break or tabs or special)
    return breaks, plain, single, not (v[-1] == " " or space_break or special)


_ESCAPES = {0: "0", 7: "a", 8: "b", 9: "t", 10: "n", 11: "v", 12: "f", 13: "r", 27: "e", 34: '"',
            92: "\\", 0x85: "N", 0xA0: "_", 0x2028: "L", 0x2029: "P"}  # fmt: skip


def _escape(c: str) -> str:
    o = ord(c)
    default = f"x{o:02X}" if o <= 0xFF else f"u{o:04X}" if o <= 0xFFFF else f"U{o:08X}"
    return "\\" + _ESCAPES.get(o, default)


class _Writer:
    """libyaml's block emitter as go-yaml sets it up: best indent 4, sequences indented under
    their key, no width. It keeps the emitter's column and its whitespace and indention
    flags, which decide every space and line break written."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.column, self.indent, self.whitespace, self.indention = 0, -1, True, True

    def put(self, text: str) -> None:
        self.parts.append(text)
        self.column += len(text)

    def newline(self, char: str = "\n") -> None:
        self.parts.append(char)
        self.column, self.indention = 0, True

    def write_indent(self) -> None:
        indent = max(self.indent, 0)
        if (
            not self.indention
            or self.column > indent
            or (self.column == indent and not self.whitespace)
        ):
            self.newline()
        self.put(" " * (indent - self.column))
        self.whitespace = True

    def indicator(
        self, text: str, need_space: bool, space: bool = False, indent: bool = False
    ) -> None:
        if need_space and not self.whitespace:
            self.put(" ")
        self.put(text)
        self.whitespace, self.indention = space, self.indention and indent

    def deeper(self, in_item: bool) -> int:
        """``increase_indent``: 2 more right after a "- ", else up to the next multiple of 4."""
        previous = self.indent
        self.indent = 0 if previous < 0 else previous + 2 if in_item else 4 * (previous // 4 + 1)
        return previous

    def node(self, node: Any, in_item: bool = False) -> None:
        if isinstance(node, _Scalar):
            return self.scalar(node, in_item, simple_key=False)
        if not node:  # an empty collection is written in flow style
            self.indicator("{" if isinstance(node, _Map) else "[", True, True)
            return self.indicator("}" if isinstance(node, _Map) else "]", False)
        previous = self.deeper(in_item)
        for entry in node:
            self.write_indent()
            if isinstance(node, _Seq):
                self.indicator("-", True, False, True)
                self.node(entry, in_item=True)
                continue
            key, value = entry
            if not _analyze(key.text)[0] and len(key.text.encode()) <= 128:
                self.scalar(key, False, simple_key=True)
                self.indicator(":", False)
            else:  # a key too long or multi-line for "key: value": "? key" then ": value"
                self.indicator("?", True, False, True)
                self.scalar(key, False, simple_key=False)
                self.write_indent()
                self.indicator(":", True, False, True)
            self.node(value)
        self.indent = previous

    def scalar(self, node: _Scalar, in_item: bool, simple_key: bool) -> None:
        """``select_scalar_style``, then the writer of the style chosen."""
        text, style = node
        multiline, plain_ok, single_ok, literal_ok = _analyze(text)
        if simple_key and multiline:
            style = _DOUBLE
        if style == _PLAIN and (not plain_ok or (simple_key and not text)):
            style = _SINGLE  # the QuoteLegacy emitter's quotes
        if (style == _SINGLE and not single_ok) or (
            style == _LITERAL and (not literal_ok or simple_key)
        ):
            style = _DOUBLE
        previous = self.deeper(in_item)
        if style == _PLAIN:
            self.put(" " + text if text and not self.whitespace else text)
            self.whitespace = self.indention = False
        elif style == _DOUBLE:
            self.indicator('"', True)
            bom = text.startswith("\ufeff")  # libyaml then escapes every character
            for c in text:
                escape = bom or not _printable(c) or c in _BREAKS or c in '"\\'
                self.put(_escape(c) if escape else c)
            self.indicator('"', False)
        else:
            self.block_or_single(text, style)
        self.indent = previous

    def block_or_single(self, text: str, style: str) -> None:
        self.indicator(style, True)
        if style == _LITERAL:
            if text[0] in " " + _BREAKS:
                self.indicator("4", False)  # the indentation indicator: the best indent
            if text[-1] not in _BREAKS:
                self.indicator("-", False)
            elif len(text) == 1 or text[-2] in _BREAKS:
                self.indicator("+", False)
            self.newline()
            self.whitespace = True
        after_break = style == _LITERAL
        for c in text:
            if c in _BREAKS:
                if style == _SINGLE and not after_break and c == "\n":
                    self.newline()
                self.newline(c)
                after_break = True
                continue
            if after_break:
                self.write_indent()
            self.put("''" if c == "'" and style == _SINGLE else c)
            self.indention = after_break = False
        if style == _SINGLE:
            if after_break:
                self.write_indent()
            self.indicator("'", False)
