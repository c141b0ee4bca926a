"""Schematics as the public Image Factory reads and writes them: the same body, the same ID.

The IDs pinned here are the public factory's own: the seeds the brief gives, and the table of
siderolabs/image-factory ``pkg/schematic/schematic_test.go``. The canonical bytes follow
go-yaml v4 rc.6's ``Marshal`` (``yaml/go-yaml`` ``internal/libyaml``: the representer's
``stringv``, the desolver, the emitter's ``analyzeScalar`` and ``selectScalarStyle``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from buildgraph.factory.schematic import EMPTY, Overlay, Schematic, SchematicError, parse

EMPTY_ID = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
SEED = b"""customization:
  extraKernelArgs:
    - net.ifnames=0
  systemExtensions:
    officialExtensions:
      - siderolabs/gvisor
      - siderolabs/intel-ucode
"""
GVISOR = b"""customization:
  systemExtensions:
    officialExtensions:
      - siderolabs/gvisor
"""


def kernel_args_yaml(*args: str) -> str:
    """The canonical YAML of a schematic with just these kernel arguments."""
    return Schematic(extra_kernel_args=args).marshal().decode()


def one_arg(arg: str) -> str:
    """How the canonical YAML writes one kernel argument: its item's text after "- "."""
    text = kernel_args_yaml(arg)
    return text.removeprefix("customization:\n    extraKernelArgs:\n        - ").removesuffix("\n")


# --- IDs the public factory gives -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "schematic_id"),
    [
        (SEED, "b8e8fbbe1b520989e6c52c8dc8303070cb42095997e76e812fa8892393e1d176"),
        (GVISOR, "d9ff89777e246792e7642abd3220a616afb4e49822382e4213a2e528ab826fe5"),
        (b"customization: {}", EMPTY_ID),
        (b"{}", EMPTY_ID),
        (b"---\n", EMPTY_ID),
        (b"~", EMPTY_ID),
        (b'customization: {"extraKernelArgs": []}', EMPTY_ID),
        (b"customization:\n  systemExtensions: {}\n  meta: []\n", EMPTY_ID),
        # siderolabs/image-factory pkg/schematic/schematic_test.go, TestUnmarshalID:
        (
            b'{"customization": {"extraKernelArgs": ["noapic", "nolapic"]}}',
            "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
        ),
        (
            b'{"customization": {"extraKernelArgs": ["noapic", "nolapic"],'
            b' "systemExtensions": {}}}',
            "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
        ),
        (
            b'{"customization": {"meta": [{"key": 10, "value": "foo"}], "extraKernelArgs": [],'
            b' "systemExtensions": {}}}',
            "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f",
        ),
        (
            b'{"overlay": {"name": "rpi_generic", "image": "siderolabs/sbc-raspberrypi"}}',
            "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9",
        ),
        (
            b'{"overlay": {"name": "rpi_generic", "image": "siderolabs/sbc-raspberrypi"},'
            b'"customization":{}}',
            "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9",
        ),
        (
            b'{"customization":{"secureboot": {"includeWellKnownCertificates": true}}}',
            "fa8e05f142a851d3ee568eb0a8e5841eaf6b0ebc8df9a63df16ac5ed2c04f3e6",
        ),
    ],
)
def test_a_body_gets_the_public_factory_s_id(body: bytes, schematic_id: str) -> None:
    assert parse(body).id == schematic_id


def test_the_empty_schematic_is_customization_braces() -> None:
    assert EMPTY == Schematic() == parse(b"{}")
    assert EMPTY.marshal() == b"customization: {}\n"
    assert EMPTY.id == EMPTY_ID


def test_the_seed_marshals_with_four_spaces_and_items_under_their_key() -> None:
    assert parse(SEED).marshal() == (
        b"customization:\n"
        b"    extraKernelArgs:\n"
        b"        - net.ifnames=0\n"
        b"    systemExtensions:\n"
        b"        officialExtensions:\n"
        b"            - siderolabs/gvisor\n"
        b"            - siderolabs/intel-ucode\n"
    )


def test_json_is_read_as_the_yaml_it_is() -> None:
    compact = b'{"customization":{"extraKernelArgs":["net.ifnames=0"],"systemExtensions":'
    compact += b'{"officialExtensions":["siderolabs/gvisor","siderolabs/intel-ucode"]}}}'
    assert parse(compact) == parse(SEED)


def test_every_field_in_go_struct_order() -> None:
    schematic = Schematic(
        overlay=Overlay("siderolabs/sbc-raspberrypi", "rpi_generic", {"configTxt": "gpu_mem=64"}),
        embedded_machine_configuration="version: v1alpha1\nmachine:\n  type: worker\n",
        extra_kernel_args=("console=ttyS0", "net.ifnames=0"),
        meta=((0xA, "a: b"), (12, "")),
        official_extensions=("siderolabs/iscsi-tools",),
        bootloader="sd-boot",
        enroll_keys="x",
        include_well_known_certificates=True,
        sector_size=4096,
    )
    assert schematic.marshal().decode() == (
        "overlay:\n"
        "    image: siderolabs/sbc-raspberrypi\n"
        "    name: rpi_generic\n"
        "    options:\n"
        "        configTxt: gpu_mem=64\n"
        "customization:\n"
        "    embeddedMachineConfiguration: |\n"
        "        version: v1alpha1\n"
        "        machine:\n"
        "          type: worker\n"
        "    extraKernelArgs:\n"
        "        - console=ttyS0\n"
        "        - net.ifnames=0\n"
        "    meta:\n"
        "        - key: 10\n"
        "          value: 'a: b'\n"
        "        - key: 12\n"
        '          value: ""\n'
        "    systemExtensions:\n"
        "        officialExtensions:\n"
        "            - siderolabs/iscsi-tools\n"
        "    bootloader: sd-boot\n"
        "    secureboot:\n"
        "        enrollKeys: x\n"
        "        includeWellKnownCertificates: true\n"
        "    diskImage:\n"
        "        sectorSize: 4096\n"
    )
    assert parse(schematic.marshal()) == schematic


def test_an_overlay_keeps_its_empty_name_but_an_empty_overlay_goes() -> None:
    assert parse(b"overlay: {image: x}").marshal() == (
        b'overlay:\n    image: x\n    name: ""\ncustomization: {}\n'
    )
    assert parse(b"overlay: {image: '', options: {}}").overlay is None
    assert parse(b"overlay: {image: '', options: {}}").id == EMPTY_ID


def test_order_is_kept_not_sorted() -> None:
    schematic = parse(b"customization: {extraKernelArgs: [b, a, b], meta: [{key: 2}, {key: 1}]}")
    assert schematic.extra_kernel_args == ("b", "a", "b")
    assert [key for key, _ in schematic.meta] == [2, 1]
    swapped = parse(b"customization: {systemExtensions: {officialExtensions: [z/b, z/a]}}")
    assert swapped.official_extensions == ("z/b", "z/a")
    assert (
        swapped.id
        != parse(b"customization: {systemExtensions: {officialExtensions: [z/a, z/b]}}").id
    )


# --- Reading as go-yaml's Decoder reads -------------------------------------------------------


def test_an_empty_body_is_eof_as_upstream_says() -> None:
    for body in (b"", b"\n  \n", b"# just a comment\n"):
        with pytest.raises(SchematicError) as err:
            parse(body)
        assert str(err.value) == "EOF"


def test_only_the_first_document_is_read() -> None:
    assert parse(b"customization: {}\n---\ncustomization: {extraKernelArgs: [a]}\n") == EMPTY
    assert parse(b"customization: {}\n--- [[[ not: yaml\n") == EMPTY
    assert parse(b"customization: {}\n---\nowner: me\n") == EMPTY


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"foo: 1", "schematic: unknown field 'foo'"),
        (
            b"customization:\n  extraKernelArg: [a]\n",
            "customization: unknown field 'extraKernelArg'",
        ),
        (b"overlay: {image: x, opts: {}}", "overlay: unknown field 'opts'"),
        (
            b"customization: {meta: [{key: 1, val: x}]}",
            "customization.meta[0]: unknown field 'val'",
        ),
        (
            b"customization: {systemExtensions: {extensions: [a]}}",
            "customization.systemExtensions: unknown field 'extensions'",
        ),
        (
            b"customization: {secureboot: {enrollKey: x}}",
            "customization.secureboot: unknown field 'enrollKey'",
        ),
        (b"customization: {diskImage: {size: 1}}", "customization.diskImage: unknown field 'size'"),
    ],
)
def test_an_unknown_field_is_refused_at_every_level(body: bytes, says: str) -> None:
    with pytest.raises(SchematicError, match=f"^{re.escape(says)}$"):
        parse(body)


def test_overlay_options_take_any_yaml() -> None:
    body = b"""overlay:
  image: siderolabs/sbc-raspberrypi
  name: rpi_generic
  options:
    configTxtAppend: |
      dtoverlay=vc4-kms-v3d
    anything: {nested: [1, 2.5, true, null, "x", {deep: [[]]}]}
    "10": ten
    "9": nine
"""
    schematic = parse(body)
    assert schematic.overlay is not None
    assert schematic.overlay.options == {
        "configTxtAppend": "dtoverlay=vc4-kms-v3d\n",
        "anything": {"nested": [1, 2.5, True, None, "x", {"deep": [[]]}]},
        "10": "ten",
        "9": "nine",
    }
    assert schematic.marshal().decode() == (
        "overlay:\n"
        "    image: siderolabs/sbc-raspberrypi\n"
        "    name: rpi_generic\n"
        "    options:\n"
        '        "9": nine\n'  # go-yaml sorts keys in natural order: 9 before 10
        '        "10": ten\n'
        "        anything:\n"
        "            nested:\n"
        "                - 1\n"
        "                - 2.5\n"
        "                - true\n"
        "                - null\n"
        "                - x\n"
        "                - deep:\n"
        "                    - []\n"
        "        configTxtAppend: |\n"
        "            dtoverlay=vc4-kms-v3d\n"
        "customization: {}\n"
    )
    assert parse(schematic.marshal()) == schematic


def test_option_values_are_the_go_values_go_yaml_decodes() -> None:
    body = b"overlay: {options: {k: [0x1F, 012, 1_000, 1e6, 0.0001, 1e20, -0, 2001-12-14, ~]}}"
    schematic = parse(body)
    assert schematic.overlay is not None
    when = datetime(2001, 12, 14, tzinfo=UTC)
    assert schematic.overlay.options["k"] == [31, 10, 1000, 1e6, 0.0001, 1e20, -0.0, when, None]
    assert schematic.marshal().decode().splitlines()[5:] == [
        "            - 31",
        "            - 10",
        "            - 1000",
        "            - 1e+06",  # strconv.FormatFloat(f, 'g', -1, 64)
        "            - 0.0001",
        "            - 1e+20",
        "            - -0",
        "            - 2001-12-14T00:00:00Z",  # a time.Time, written RFC3339Nano
        "            - null",
        "customization: {}",
    ]


def test_option_keys_sort_as_go_yaml_sorts_them() -> None:
    options = {"b": 1, "a10": 1, "a9": 1, "A": 1, "9": 1, "a": 1, "x09": 1, "x1": 1}
    keys = [
        line.split(":")[0]
        for line in Schematic(overlay=Overlay(options=options))
        .marshal()
        .decode()
        .splitlines()[4:-1]
    ]
    assert keys == [
        '        "9"',
        "        A",
        "        a",
        "        a9",
        "        a10",
        "        b",
        "        x1",
        "        x09",
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"customization: {}\ncustomization: {}\n",
        b"customization: {extraKernelArgs: [a], extraKernelArgs: [b]}",
        b"customization: {extraKernelArgs: [a], 'extraKernelArgs': [b]}",
        b"customization: {meta: [{key: 1, key: 2}]}",
        b"overlay: {options: {a: 1, a: 2}}",
        b"overlay: {options: {a: {b: 1, b: 1}}}",
        b"overlay: {options: {'1': x, 1: y}}",
    ],
)
def test_a_duplicate_key_is_an_error(body: bytes) -> None:
    with pytest.raises(SchematicError, match="is given twice"):
        parse(body)


def test_null_items_are_dropped_and_null_fields_stay_unset() -> None:
    schematic = parse(b"customization: {extraKernelArgs: [a, null, ~, '', b], meta: [~, {key: 1}]}")
    assert schematic.extra_kernel_args == ("a", "", "b")
    assert schematic.meta == ((1, ""),)
    assert (
        parse(b"customization:\n  bootloader:\n  secureboot: ~\n  extraKernelArgs: null\n") == EMPTY
    )


def test_numbers_and_bools_in_string_fields_keep_their_text() -> None:
    body = b"customization: {extraKernelArgs: [1, 0x10, true, 1.0, 012, 1e3, yes, off]}"
    schematic = parse(body)
    assert schematic.extra_kernel_args == ("1", "0x10", "true", "1.0", "012", "1e3", "yes", "off")
    assert schematic.marshal().decode() == (
        "customization:\n"
        "    extraKernelArgs:\n"
        '        - "1"\n'
        '        - "0x10"\n'
        '        - "true"\n'
        '        - "1.0"\n'
        '        - "012"\n'
        '        - "1e3"\n'
        "        - 'yes'\n"
        "        - 'off'\n"
    )
    assert parse(b"overlay: {image: 42, name: 1.5}").overlay == Overlay("42", "1.5")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("10", 10),
        ("0xa", 10),
        ("0XA", 10),
        # 012 is 10, not 12: go-yaml v4 resolves a plain scalar with strconv.ParseInt(s, 0, 64)
        # (yaml/go-yaml internal/libyaml/resolver.go, resolve), Go's literal syntax, where a
        # leading 0 means octal; YAML 1.2's core schema would say 12.
        ("012", 10),
        ("0o12", 10),
        ("0b1010", 10),
        ("1_0", 10),
        ("+10", 10),
        ("10.9", 10),  # a float into a Go uint: uint64(f) truncates
        ("0", 0),
        ("255", 255),
    ],
)
def test_a_meta_key_is_a_uint8_read_as_go_yaml_reads_it(key: str, value: int) -> None:
    schematic = parse(f"customization: {{meta: [{{key: {key}, value: v}}]}}".encode())
    assert schematic.meta == ((value, "v"),)


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("300", "customization.meta[0].key: 300 is out of range 0..255"),
        ("256", "customization.meta[0].key: 256 is out of range 0..255"),
        ("-1", "customization.meta[0].key: -1 is out of range 0..255"),
        ("x", "customization.meta[0].key: expected an integer 0..255, got 'x'"),
        ("'10'", "customization.meta[0].key: expected an integer 0..255, got '10'"),
        ("true", "customization.meta[0].key: expected an integer 0..255, got 'true'"),
        ("[1]", "customization.meta[0].key: expected a single value, got a list"),
    ],
)
def test_a_bad_meta_key_is_refused_naming_it(key: str, says: str) -> None:
    with pytest.raises(SchematicError) as err:
        parse(f"customization: {{meta: [{{key: {key}, value: v}}]}}".encode())
    assert str(err.value) == says


def test_the_meta_value_is_a_string() -> None:
    assert parse(b"customization: {meta: [{key: 1, value: 2}]}").meta == ((1, "2"),)
    with pytest.raises(
        SchematicError, match=r"^customization\.meta\[0\]\.value: expected a single"
    ):
        parse(b"customization: {meta: [{key: 1, value: {a: b}}]}")


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("grub", "grub"),
        ("GRUB", "grub"),
        ("Sd-Boot", "sd-boot"),
        ("dual-boot", "dual-boot"),
        ("none", ""),
        ("NONE", ""),
    ],
)
def test_the_bootloader_is_upstream_s_enum(given: str, kept: str) -> None:
    # Upstream's field is imageropts.BootloaderKind (siderolabs/talos
    # pkg/machinery/imager/imageropts): enumer's UnmarshalText takes a name in any case, its
    # MarshalText writes the lower-case name, and none is the zero value omitempty drops.
    schematic = parse(f"customization: {{bootloader: {given}}}".encode())
    assert schematic.bootloader == kept
    expected = f"customization:\n    bootloader: {kept}\n" if kept else "customization: {}\n"
    assert schematic.marshal().decode() == expected


def test_an_unknown_bootloader_is_refused() -> None:
    with pytest.raises(SchematicError, match=r"^customization\.bootloader: 'lilo' is not one of"):
        parse(b"customization: {bootloader: lilo}")
    with pytest.raises(SchematicError):
        Schematic(bootloader="GRUB")


def test_an_owner_is_refused() -> None:
    with pytest.raises(SchematicError, match=r"^owner is set: schematic owners are an Enterprise"):
        parse(b"owner: me\n")
    assert parse(b"owner: ''\n") == EMPTY


def test_a_bool_field_takes_yaml_1_1_words_as_go_yaml_does() -> None:
    for word, value in (("true", True), ("yes", True), ("On", True), ("'y'", True), ("off", False)):
        body = f"customization: {{secureboot: {{includeWellKnownCertificates: {word}}}}}"
        assert parse(body.encode()).include_well_known_certificates is value
    with pytest.raises(SchematicError, match="expected true or false, got 'true'"):
        parse(b"customization: {secureboot: {includeWellKnownCertificates: 'true'}}")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"customization: [", "schematic is not valid yaml"),
        (b"- a", "schematic: expected a mapping, got a list"),
        (b"customization: 5", "customization: expected a mapping, got '5'"),
        (
            b"customization: {extraKernelArgs: a}",
            "customization.extraKernelArgs: expected a list, got 'a'",
        ),
        (
            b"customization: {extraKernelArgs: [a, {b: c}]}",
            "customization.extraKernelArgs[1]: expected a single value, got a mapping",
        ),
        (b"overlay: {options: [1]}", "overlay.options: expected a mapping, got a list"),
        (
            b"customization: {diskImage: {sectorSize: -512}}",
            "customization.diskImage.sectorSize: -512 is out of range",
        ),
        (b"overlay: {options: {a: &x [*x]}}", "overlay.options.a[0]: an alias contains itself"),
        (b"customization: {extraKernelArgs: [!!int x]}", "cannot construct !!str `x` as a !!int"),
        (b"\x00", "schematic is not valid yaml"),
        (b"[" * 5000, "nested too deeply"),
    ],
)
def test_a_bad_body_gets_one_line_naming_what_is_wrong(body: bytes, says: str) -> None:
    with pytest.raises(SchematicError) as err:
        parse(body)
    assert says in str(err.value)
    assert "\n" not in str(err.value)


def test_an_alias_bomb_is_refused() -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for previous, name in zip("abcdefg", "bcdefgh", strict=False):
        levels.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 10)}]")
    body = "overlay:\n  options:\n" + "".join(f"    {line}\n" for line in levels)
    with pytest.raises(SchematicError, match="excessive aliasing"):
        parse(body.encode())


def test_merge_keys_and_aliases_read_as_go_yaml_reads_them() -> None:
    body = b"""overlay:
  options:
    base: &base {a: 1, b: 2}
    merged: {<<: *base, b: 3}
customization:
  extraKernelArgs: &args [x, y]
"""
    schematic = parse(body)
    assert schematic.overlay is not None
    assert schematic.overlay.options["merged"] == {"b": 3, "a": 1}
    assert schematic.extra_kernel_args == ("x", "y")


# --- Writing as go-yaml rc.6 writes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "written"),
    [
        ("net.ifnames=0", "net.ifnames=0"),
        ("console=ttyS0,115200n8", "console=ttyS0,115200n8"),
        ("=", "="),
        # YAML 1.1 bools go-yaml quotes, single-quoted in rc.6 (its representer's isOldBool):
        ("off", "'off'"),
        ("On", "'On'"),
        ("y", "'y'"),
        ("N", "'N'"),
        ("oFF", "oFF"),  # no YAML reads this as a bool
        ("1:20", "'1:20'"),  # a YAML 1.1 base 60 float
        ("<<", "'<<'"),  # the merge key
        # What would read back as another type: double-quoted (the QuoteLegacy desolver):
        ("", '""'),
        ("1", '"1"'),
        ("-1", '"-1"'),
        ("012", '"012"'),
        ("0x1F", '"0x1F"'),
        ("1_000", '"1_000"'),
        ("1e3", '"1e3"'),
        (".5", '".5"'),
        ("true", '"true"'),
        ("FALSE", '"FALSE"'),
        ("tRUE", "tRUE"),
        ("~", '"~"'),
        ("null", '"null"'),
        (".inf", '".inf"'),
        ("2024-01-02", '"2024-01-02"'),
        ("2024-1-2T3:4:5Z", '"2024-1-2T3:4:5Z"'),
        ("2024-13-02", "2024-13-02"),  # not a date time.Parse takes
        # What the emitter cannot write plain: single-quoted where it can be:
        ("a: b", "'a: b'"),
        ("a:b", "a:b"),
        ("a:", "'a:'"),
        ("- a", "'- a'"),
        ("-a", "-a"),
        ("#a", "'#a'"),
        ("a #b", "'a #b'"),
        ("a#b", "a#b"),
        (" a", "' a'"),
        ("a ", "'a '"),
        ("---a", "'---a'"),
        ("@a", "'@a'"),
        ("? a", "'? a'"),
        ("?a", "?a"),
        ("[a]", "'[a]'"),
        ("a,b", "a,b"),
        ("'a'", "'''a'''"),
        ("it's", "it's"),
        ('say "hi"', 'say "hi"'),
        # ...and double-quoted, escaped, where it cannot:
        ("a\tb", '"a\\tb"'),
        ("\x00\x7f\x85", '"\\0\\x7F\\N"'),
        ("é日本", "é日本"),
        ("😀", '"\\U0001F600"'),  # libyaml's is_printable stops at the BMP
        ("\ufeffa", '"\\uFEFF\\x61"'),  # after a BOM libyaml escapes every character
    ],
)
def test_a_string_is_quoted_as_go_yaml_quotes_it(arg: str, written: str) -> None:
    assert one_arg(arg) == written
    assert parse(kernel_args_yaml(arg).encode()).extra_kernel_args == (arg,)


@pytest.mark.parametrize(
    ("config", "written"),
    [
        ("a\nb", "|-\n        a\n        b"),
        ("a\n", "|\n        a"),
        ("a\n\n", "|+\n        a\n"),
        (" a\nb\n", "|4\n         a\n        b"),
        ("\na", "|4-\n\n        a"),
        ("a\n\nb", "|-\n        a\n\n        b"),
        ("a \nb", '"a \\nb"'),  # a space before a break: no block
        ("a\nb ", '"a\\nb "'),  # a trailing space: no block
        ("\n", '"\\n"'),  # nothing but white space: go-yaml's shouldUseLiteralStyle says no
        ("a\tb\nc", "|-\n        a\tb\n        c"),  # a tab is fine in a block
    ],
)
def test_a_multi_line_string_is_a_literal_block_where_go_yaml_makes_one(
    config: str, written: str
) -> None:
    schematic = Schematic(embedded_machine_configuration=config)
    assert (
        schematic.marshal().decode()
        == f"customization:\n    embeddedMachineConfiguration: {written}\n"
    )
    assert parse(schematic.marshal()) == schematic


def test_a_block_in_a_list_item_is_indented_past_the_dash() -> None:
    assert (
        kernel_args_yaml("a\nb")
        == "customization:\n    extraKernelArgs:\n        - |-\n          a\n          b\n"
    )
    schematic = Schematic(meta=((1, "x\ny"),))
    assert schematic.marshal().decode() == (
        "customization:\n"
        "    meta:\n"
        "        - key: 1\n"
        "          value: |-\n"
        "            x\n"
        "            y\n"
    )
    assert parse(schematic.marshal()) == schematic


def test_an_option_key_longer_than_128_bytes_is_written_as_an_explicit_key() -> None:
    key = "k" * 129
    schematic = Schematic(overlay=Overlay(options={key: "v"}))
    assert schematic.marshal().decode().splitlines()[3:6] == [
        "    options:",
        f"        ? {key}",
        "        : v",
    ]
    assert parse(schematic.marshal()) == schematic


# --- Properties -------------------------------------------------------------------------------

TRICKY = [
    "", " ", "  a", "a  ", "off", "On", "y", "NO", "true", "False", "null", "~", "1", "-1", "012",
    "0x1f", "1e3", ".5", "1:20", "<<", "-", "- a", "-a", "a: b", "a:b", "a:", "#c", "a #c", "a#c",
    "'q'", '"q"', "it's", "?", "? a", ":", "---", "...", "@x", "`x", "%x", "!x", "&x", "*x", "|x",
    ">x", "[a]", "{a}", "a,b", "é", "日本", "😀", "\t", "a\tb", "\x00", "\x7f", "\x85", "\r",
    "\ufeff", "\xa0", "a\nb", "a\n", "a\n\n", "a \nb", "x\n y", "net.ifnames=0",
    "console=ttyS0,115200n8", "--foo=bar baz", "a'b c",
]  # fmt: skip
# U+2028 and U+2029: libyaml writes them raw as line breaks, which YAML 1.2 readers do not fold
TEXT = st.text(st.characters(blacklist_categories=("Cs", "Zl", "Zp")), max_size=12)


def readable_back(s: str) -> bool:
    """Leave out what no reader gets back, or what only YAML 1.1 reads as another type.

    go-yaml writes a block scalar that starts with a space or a break with the indentation
    indicator counted from the wrong column when it is a list item, so nothing reads it back;
    and what YAML 1.1 (PyYAML) alone reads as a value, a date, a number with only
    underscores, go-yaml (YAML 1.2) rightly writes plain."""
    if "\n" in s and s[:1] in (" ", "\n", "\r", "\x85"):
        return False
    yaml11_only = r"=|[-+]?0[bxBX]_+|[-+]?\.[0-9_]*_[0-9_]*(?:[eE][-+][0-9]+)?|[0-9]{4}-[0-9].*"
    return not re.fullmatch(yaml11_only, s, flags=re.DOTALL)


STRINGS = st.one_of(
    st.sampled_from(TRICKY), TEXT, st.builds("".join, st.lists(st.sampled_from(TRICKY), max_size=3))
).filter(readable_back)
SCHEMATICS = st.builds(
    Schematic,
    embedded_machine_configuration=st.one_of(st.just(""), STRINGS),
    extra_kernel_args=st.lists(STRINGS, max_size=6).map(tuple),
    meta=st.lists(st.tuples(st.integers(0, 255), STRINGS), max_size=3).map(tuple),
    official_extensions=st.lists(STRINGS, max_size=3).map(tuple),
    bootloader=st.sampled_from(["", "dual-boot", "sd-boot", "grub"]),
    include_well_known_certificates=st.booleans(),
    sector_size=st.sampled_from([0, 512, 4096, 2**64 - 1]),
)


@given(SCHEMATICS)
def test_marshal_parse_marshal_is_the_same_bytes_and_the_same_id(schematic: Schematic) -> None:
    canonical = schematic.marshal()
    again = parse(canonical)
    assert again == schematic
    assert again.marshal() == canonical
    assert again.id == schematic.id  # posting the canonical YAML gives the same schematic


@given(SCHEMATICS)
def test_an_independent_reader_gets_the_same_strings(schematic: Schematic) -> None:
    read = yaml.safe_load(schematic.marshal())
    customization = read["customization"]
    assert customization.get("extraKernelArgs", []) == list(schematic.extra_kernel_args)
    assert (
        customization.get("embeddedMachineConfiguration", "")
        == schematic.embedded_machine_configuration
    )
    assert [(m["key"], m["value"]) for m in customization.get("meta", [])] == list(schematic.meta)
    extensions = customization.get("systemExtensions", {}).get("officialExtensions", [])
    assert extensions == list(schematic.official_extensions)
