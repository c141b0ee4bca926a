"""System extension validation (buildgraph.formats.sysext): what passes, and one distinct
message for each way an extension can be malformed."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from buildgraph.formats import sysext
from buildgraph.oci.layout import tar_from_directory

REPO = Path(__file__).resolve().parent.parent
GOOD_MANIFEST = b"""\
version: v1alpha1
metadata:
  name: hello
  version: 1.0.0
  author: someone
  description: says hello
"""


def _entry(name: str, kind: str = "file", data: bytes = b"", mode: int | None = None,
           link: str = "") -> tuple:  # fmt: skip
    return (name, kind, data, mode, link)


GOOD = [
    _entry("manifest.yaml", data=GOOD_MANIFEST),
    _entry("rootfs", "dir"),
    _entry("rootfs/usr", "dir"),
    _entry("rootfs/usr/local", "dir"),
    _entry("rootfs/usr/local/bin", "dir"),
    _entry("rootfs/usr/local/bin/hello", data=b"#!/bin/sh\necho hi\n", mode=0o755),
]


def _tar(path: Path, entries: list[tuple]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data, mode, link in entries:
            info = tarfile.TarInfo(name)
            info.type = {
                "file": tarfile.REGTYPE,
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "chr": tarfile.CHRTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[kind]
            info.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
            info.linkname = link
            if kind == "file":
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if kind == "file" else None)
    return path


def _check(tmp_path: Path, entries: list[tuple], source: str = "ext.tar") -> sysext.Extension:
    return sysext.check_tar(_tar(tmp_path / "ext.tar", entries), source)


def _replace(name: str, *entries: tuple) -> list[tuple]:
    """GOOD with the entry ``name`` dropped and ``entries`` added."""
    return [e for e in GOOD if e[0] != name] + list(entries)


def _manifest(text: str) -> list[tuple]:
    return _replace("manifest.yaml", _entry("manifest.yaml", data=text.encode()))


MALFORMED = {
    "extra top-level file": (
        [*GOOD, _entry("README", data=b"hi")],
        "README: unexpected at the top of the extension: only manifest.yaml and rootfs/",
    ),
    "no manifest": (
        _replace("manifest.yaml"),
        "manifest.yaml: missing: an extension has a manifest at its top",
    ),
    "no rootfs": (
        [GOOD[0]],
        "rootfs/: missing: an extension has its files under rootfs/",
    ),
    "wrong manifest version": (
        _manifest(GOOD_MANIFEST.decode().replace("v1alpha1", "v1")),
        "manifest.yaml: version 'v1' is not supported; the accepted one is v1alpha1",
    ),
    "path outside the allowed set": (
        [*GOOD, _entry("rootfs/etc", "dir"), _entry("rootfs/etc/passwd", data=b"root::0:0")],
        "rootfs/etc/passwd: /etc/passwd is outside the paths an extension may add to",
    ),
    "../ entry": (
        [*GOOD, _entry("rootfs/usr/local/../../../evil", data=b"x")],
        "rootfs/usr/local/../../../evil: a '..' component would leave the extension",
    ),
    "absolute member name": (
        [*GOOD, _entry("/rootfs/usr/local/bin/x", data=b"x")],
        "/rootfs/usr/local/bin/x: absolute member name",
    ),
    "symlink out of the tree": (
        [*GOOD, _entry("rootfs/usr/local/bin/shadow", "symlink", link="../../../../etc/shadow")],
        "rootfs/usr/local/bin/shadow: symlink to ../../../../etc/shadow leaves the extension's"
        " rootfs",
    ),
    "entry below a symlink": (
        [
            *GOOD,
            _entry("rootfs/usr/local/etc", "symlink", link="/etc"),
            _entry("rootfs/usr/local/etc/passwd", data=b"x"),
        ],
        "rootfs/usr/local/etc/passwd: lies below the symlink rootfs/usr/local/etc",
    ),
    "hard link out of the rootfs": (
        [*GOOD, _entry("rootfs/usr/local/bin/m", "hardlink", link="manifest.yaml")],
        "rootfs/usr/local/bin/m: hard link to manifest.yaml points outside the extension's"
        " rootfs files",
    ),
    "device node": (
        [*GOOD, _entry("rootfs/usr/local/bin/mem", "chr")],
        "rootfs/usr/local/bin/mem: a device node",
    ),
    "fifo": (
        [*GOOD, _entry("rootfs/usr/local/bin/pipe", "fifo")],
        "rootfs/usr/local/bin/pipe: a fifo",
    ),
    "world-writable file": (
        [*GOOD, _entry("rootfs/usr/local/bin/open", data=b"x", mode=0o666)],
        "rootfs/usr/local/bin/open: world-writable (mode 0666)",
    ),
    "world-writable directory": (
        [*GOOD, _entry("rootfs/usr/share", "dir", mode=0o1777)],
        "rootfs/usr/share: world-writable (mode 1777)",
    ),
    "oversized manifest": (
        _manifest(GOOD_MANIFEST.decode() + "#" * (64 << 10) + "\n"),
        "manifest.yaml: oversized manifest: 65640 bytes, at most 65536",
    ),
    "unknown manifest field": (
        _manifest(GOOD_MANIFEST.decode() + "extra: 1\n"),
        "manifest.yaml: unknown field 'extra'",
    ),
    "unknown metadata field": (
        _manifest(GOOD_MANIFEST.decode() + "  colour: blue\n"),
        "manifest.yaml: unknown field metadata.colour",
    ),
    "missing author": (
        _manifest(GOOD_MANIFEST.decode().replace("  author: someone\n", "")),
        "manifest.yaml: metadata.author must be given as text",
    ),
    "name that is no plain word": (
        _manifest(GOOD_MANIFEST.decode().replace("name: hello", "name: 'he llo'")),
        "manifest.yaml: metadata.name 'he llo' must match [A-Za-z0-9][A-Za-z0-9._+-]*",
    ),
    "version given as a number": (
        _manifest(GOOD_MANIFEST.decode().replace("version: 1.0.0", "version: 1.0")),
        "manifest.yaml: metadata.version must be given as text (quote it: version: '1.0')",
    ),
    "manifest that is not a mapping": (
        _manifest("- a list\n"),
        "manifest.yaml: must be a mapping with version and metadata",
    ),
    "entry listed twice": (
        [*GOOD, _entry("rootfs/usr/local/bin/hello", data=b"again")],
        "rootfs/usr/local/bin/hello: listed twice",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_extension_is_refused_with_its_own_message(tmp_path: Path, case: str) -> None:
    entries, message = MALFORMED[case]
    with pytest.raises(sysext.ExtensionError) as raised:
        _check(tmp_path, entries, source="local/me/bad:v1")
    assert raised.value.message.startswith("system extension local/me/bad:v1: ")
    assert message in raised.value.message


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from checkout import copy_checkout

    return copy_checkout(tmp_path_factory.mktemp("sysext") / "repo")


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_the_imager_refuses_a_malformed_extension_and_writes_nothing(
    checkout: Path, tmp_path: Path, case: str
) -> None:
    """Through the front end: one error line with the reason, before anything runs."""
    from project import imager

    entries, message = MALFORMED[case]
    root = checkout
    bad = _tar(tmp_path / "bad.tar", entries)
    done = imager(root, tmp_path / "cache", "iso", "--arch=amd64",
                  f"--system-extension-image={bad}")  # fmt: skip
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("buildgraph: error:")]
    assert len(errors) == 1, done.stderr
    assert f"system extension {bad}: " in errors[0] and message in errors[0]
    assert not (root / "_out").exists()


def test_the_malformed_messages_are_distinct(tmp_path: Path) -> None:
    messages = set()
    for number, (entries, _message) in enumerate(MALFORMED.values()):
        (tmp_path / str(number)).mkdir()
        with pytest.raises(sysext.ExtensionError) as raised:
            _check(tmp_path / str(number), entries)
        messages.add(raised.value.message)
    assert len(messages) == len(MALFORMED)


def test_limits_on_entries_and_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sysext, "MAX_ENTRIES", 5)
    with pytest.raises(sysext.ExtensionError, match="more than 5 entries"):
        _check(tmp_path, GOOD)
    monkeypatch.setattr(sysext, "MAX_ENTRIES", 100)
    monkeypatch.setattr(sysext, "MAX_TOTAL", 10)
    with pytest.raises(sysext.ExtensionError, match="the extension's files exceed"):
        _check(tmp_path, GOOD)


def test_a_good_extension_gives_its_metadata_in_order(tmp_path: Path) -> None:
    text = GOOD_MANIFEST.decode().replace(
        "metadata:\n", "metadata:\n  compatibility:\n    talos:\n      version: '>= v1.0.0'\n"
    )
    found = _check(tmp_path, _manifest(text.replace("version: 1.0.0", "version: '1.0'")))
    assert found.metadata["version"] == "1.0"
    assert list(found.metadata) == ["name", "version", "author", "description", "compatibility"]
    assert found.name == "hello" and found.source == "ext.tar"


def test_what_an_extension_may_hold(tmp_path: Path) -> None:
    entries = [
        _entry("./", "dir"),
        *[(f"./{name}", *rest) for name, *rest in GOOD],
        _entry("./rootfs/usr/local/bin/sh", "symlink", link="/bin/busybox"),
        _entry("./rootfs/usr/local/bin/hi", "symlink", link="hello"),
        _entry("./rootfs/usr/local/bin/again", "hardlink", link="./rootfs/usr/local/bin/hello"),
        _entry("./rootfs/usr/lib", "dir"),
        _entry("./rootfs/usr/lib/firmware", "dir"),
        _entry("./rootfs/usr/lib/firmware/x/fw.bin", data=b"\0"),
        _entry("./rootfs/lib/firmware/fw2.bin", data=b"\0"),
        _entry("./rootfs/usr/lib/modules/6.1/extra/m.ko", data=b"\0"),
        _entry("./rootfs/usr/share/doc/hello", data=b"doc"),
        _entry("./rootfs/etc", "dir"),
        _entry("./rootfs/etc/cri/conf.d/20-runtime.part", data=b"[plugins]"),
        _entry("./rootfs/usr/lib/udev/rules.d/99-x.rules", data=b"#"),
        _entry("./rootfs/tmp", "dir"),  # a directory outside is refused
    ]
    with pytest.raises(sysext.ExtensionError, match="/tmp is outside"):
        _check(tmp_path, entries)
    assert _check(tmp_path, entries[:-1]).name == "hello"


@pytest.mark.parametrize("name", ["hello", "firmware"])
def test_the_example_extensions_pass(tmp_path: Path, name: str) -> None:
    tar = tmp_path / f"{name}.tar"
    tar_from_directory(REPO / "targets" / "extensions" / name, tar, 0)
    assert sysext.check_tar(tar, str(tar)).name == name
