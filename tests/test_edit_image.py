"""``buildgraph edit-image`` and diskimage.edit: files changed in partitions, offline.

The slow tests edit the Flatcar-like disk of tests/flatcar.py as the seed customizes
Flatcar: OEM's grub.cfg and base/base.ign, files, a tar and a pre-enabled unit in ROOT, a
file on EFI-SYSTEM; then read the result with tools of their own (debugfs, e2fsck -fn,
mtype, mdir, fsck.vfat, sgdisk -v, qemu-img check and convert, xz), compare every
partition not edited and the GPT byte for byte with the input's, and lint the output.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import shutil
import tarfile
from pathlib import Path

import pytest
from flatcar import FLATCAR, MIB, MTOOLS_ENV, Spec, flatcar_disk, run
from hypothesis import given, settings
from hypothesis import strategies as st

from buildgraph import cli
from buildgraph.diskimage import edits, gpt
from buildgraph.diskimage.edit import DEFAULT_EPOCH, edit
from buildgraph.diskimage.edit_command import add_parser
from buildgraph.diskimage.ext_write import script
from buildgraph.diskimage.lint import lint
from buildgraph.diskimage.plan import Step
from buildgraph.engine.errors import BuildgraphError

GRUB = 'set oem_id="qemu"\nset linux_append="flatcar.autologin console=ttyS0"\n'
UNIT = "[Service]\nExecStart=/opt/bin/x\n[Install]\nWantedBy=multi-user.target\n"
WANTS = "/etc/systemd/system/multi-user.target.wants"
NUMBER = {label: number for number, (label, _, _) in enumerate(FLATCAR, 1)}


# --- the edit records, pure -------------------------------------------------------------


def test_flags_and_data_give_the_same_records(tmp_path: Path) -> None:
    flags = edits.from_flags([
        ("OEM", [("add", "grub.cfg:grub.cfg"), ("mkdir", "base"), ("mode", "0700")]),
        ("9", [("add", "x:/etc/x"), ("mode", "600"), ("owner", "500:500"),
               ("remove", "/etc/os-release"), ("symlink", "/etc/l:/etc/x"),
               ("tar", "t.tar:/var")]),
    ])  # fmt: skip
    data = edits.from_data([
        {"partition": "OEM", "add": {"src": "grub.cfg", "dest": "grub.cfg"},
         "mkdir": [{"path": "/base", "mode": "0700"}]},
        {"partition": 9, "add": [{"src": "x", "dest": "/etc/x", "mode": 0o600, "owner": "500:500"}],
         "remove": "/etc/os-release", "symlink": "/etc/l:/etc/x",
         "tar": {"archive": "t.tar", "dest": "/var"}},
    ])  # fmt: skip
    assert flags == data
    assert flags[0].add == (edits.Add(Path("grub.cfg"), "/grub.cfg"),)
    assert flags[0].mkdir == (edits.Mkdir("/base", 0o700),)
    assert flags[1].add == (edits.Add(Path("x"), "/etc/x", 0o600, (500, 500)),)


def test_every_operation_is_a_flag_of_the_command() -> None:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    words = [word for row in edits.OPERATIONS for word in (row.flag, f"w-{row.field}")]
    args = parser.parse_args(["edit-image", "in", "--partition", "A", *words, "--mode", "1",
                              "--partition", "B", "--owner", "2", "-o", "out"])  # fmt: skip
    assert args.groups == [
        ("A", [(row.field, f"w-{row.field}") for row in edits.OPERATIONS] + [("mode", "1")]),
        ("B", [("owner", "2")]),
    ]
    assert [row.field for row in edits.OPERATIONS] == [
        "remove", "mkdir", "tar", "add", "symlink"]  # fmt: skip


@pytest.mark.parametrize(("records", "said"), [
    ([{"add": "a:b"}], "give a mapping with a partition"),
    ([{"partition": "OEM", "copy": "a:b"}], "unknown field copy"),
    ([{"partition": "OEM", "add": {"src": "a"}}], "does not fit"),
    ([{"partition": "OEM", "remove": {"path": "/a"}}], "give PATH as a string"),
    ([{"partition": "OEM", "add": "a"}], "--add 'a': give SRC:DEST"),
    ([{"partition": "OEM", "add": "a:../b"}], "it has a '..'"),
    ([{"partition": "OEM", "add": {"src": "a", "dest": "/b", "mode": "999"}}], "bad mode"),
    ([{"partition": "OEM", "add": {"src": "a", "dest": "/b", "owner": "root"}}], "bad owner"),
])  # fmt: skip
def test_bad_records_are_refused(records: list, said: str) -> None:
    with pytest.raises(BuildgraphError, match=re.escape(said)):
        edits.from_data(records)


def test_paths_are_absolute_and_normal() -> None:
    assert edits.path("grub.cfg") == "/grub.cfg"
    assert edits.path("//etc/./x/") == "/etc/x"
    for bad in ("", "a/../b", "a\nb"):
        with pytest.raises(BuildgraphError):
            edits.path(bad)


def test_the_debugfs_script_quotes_paths_and_sets_modes() -> None:
    steps = [
        Step("rm", '/etc/a "b"'),
        Step("write", "/etc/x y", src=Path("/tmp/s"), mode=0o640, owner=(1, 2)),
        Step("mkdir", "/opt", mode=0o755, owner=(0, 0)),
        Step("symlink", "/etc/l", target="/etc/x y", owner=(0, 0)),
    ]
    assert script(steps).splitlines() == [
        'rm "/etc/a ""b"""',
        'write "/tmp/s" "/etc/x y"', 'sif "/etc/x y" mode 0100640',
        'sif "/etc/x y" uid 1', 'sif "/etc/x y" gid 2',
        'mkdir "/opt"', 'sif "/opt" mode 040755', 'sif "/opt" uid 0', 'sif "/opt" gid 0',
        'symlink "/etc/l" "/etc/x y"', 'sif "/etc/l" uid 0', 'sif "/etc/l" gid 0',
    ]  # fmt: skip


# --- helpers for the slow tests ---------------------------------------------------------


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Flatcar-like disk; OEM holds only grub.cfg (no base/ yet)."""
    spec = Spec()
    spec.oem = {"grub.cfg": "set oem_id=qemu\n"}
    return flatcar_disk(tmp_path_factory.mktemp("flatcar"), spec)


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "grub.cfg").write_text(GRUB)
    (src / "base.ign").write_text('{"ignition": {"version": "3.3.0"}}\n')
    (src / "x.service").write_text(UNIT)
    (src / "tool").write_text("#!/bin/sh\necho tool\n")
    os.chmod(src / "tool", 0o750)
    (src / "loader.efi").write_bytes(b"MZ" + bytes(range(256)) * 64)
    with tarfile.open(src / "docker.tar", "w") as tar:
        for name, kind, data in (("lib/docker", "dir", b""),
                                 ("lib/docker/image.json", "file", b'{"id": 1}\n'),
                                 ("lib/docker/current", "link", b"image.json")):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.uid, info.gid, info.mtime = 0, 0, 1_700_000_000
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o710
            elif kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, data.decode()
            else:
                info.size, info.mode, info.uid = len(data), 0o640, 233
            tar.addfile(info, io.BytesIO(data) if kind == "file" else None)
    return src


def flatcar_edit(src: Path) -> list[str]:
    """The seed's customizations, as flags of edit-image."""
    return [
        "--partition", "OEM", "--add", f"{src}/grub.cfg:/grub.cfg", "--mkdir", "/base",
        "--add", f"{src}/base.ign:/base/base.ign",
        "--partition", "ROOT",
        "--add", f"{src}/x.service:/etc/systemd/system/x.service", "--mode", "0644",
        "--owner", "0:0",
        "--mkdir", WANTS,
        "--symlink", f"{WANTS}/x.service:/etc/systemd/system/x.service",
        "--mkdir", "/opt/bin", "--add", f"{src}/tool:/opt/bin/x", "--owner", "500:500",
        "--remove", "/etc/os-release", "--tar", f"{src}/docker.tar:/var",
        "--partition", "1", "--add", f"{src}/loader.efi:/EFI/boot/grubx64.efi",
    ]  # fmt: skip


def _edit_image(capfd, *argv: str | Path) -> tuple[int, str, str]:
    code = cli.main(["edit-image", *map(str, argv)])
    out, err = capfd.readouterr()
    return code, out, err


def as_raw(image: Path, form: str, where: Path) -> Path:
    """``image`` as a raw disk, undone by qemu-img or xz rather than by buildgraph."""
    raw = where / "check.raw"
    if form == "xz":
        run("sh", "-c", f"xz -dc {image} > {raw}")
    elif form != "raw":  # a fixed VHD is a raw disk and a footer: qemu-img must be told
        run("qemu-img", "convert", *(["-f", "vpc"] if form == "vhd" else []), "-O", "raw",
            image, raw)  # fmt: skip
    else:
        return image
    return raw


def pieces(raw: Path) -> dict[str, str]:
    """sha256 of each partition's bytes, of the GPT's two copies, and of the gaps."""
    data = raw.read_bytes()
    table = gpt.read(raw)
    found = {p.name: hashlib.sha256(data[p.offset : p.offset + p.size]).hexdigest()
             for p in table.partitions}  # fmt: skip
    first = table.partitions[0].offset
    end = table.partitions[-1].offset + table.partitions[-1].size
    found["head"] = hashlib.sha256(data[:first]).hexdigest()
    found["tail"] = hashlib.sha256(data[end:]).hexdigest()
    return found


def extent(raw: Path, label: str) -> tuple[int, int]:
    """(first sector, sectors) of the partition ``label``, as sgdisk reads them."""
    info = run("sgdisk", "-i", str(NUMBER[label]), raw)
    first = re.search(r"First sector: (\d+)", info).group(1)
    return int(first), int(re.search(r"Partition size: (\d+) sectors", info).group(1))


def gpt_offset(raw: Path, label: str) -> int:
    return extent(raw, label)[0] * 512


def debugfs(raw: Path, label: str, request: str) -> str:
    return run("debugfs", "-R", request, f"{raw}?offset={gpt_offset(raw, label)}")


def fsck(raw: Path, label: str, where: Path, *argv: str) -> str:
    """``argv`` (a fsck) run on a copy of the partition ``label``, which must pass it."""
    first, sectors = extent(raw, label)
    piece = where / f"{label}.fsck"
    run("dd", f"if={raw}", f"of={piece}", "bs=512", f"skip={first}", f"count={sectors}",
        "status=none")  # fmt: skip
    return run(*argv, piece)


# --- the seed's customizations, in each format ------------------------------------------

FORMS = {
    "raw": [],
    "qcow2": [["qemu-img", "convert", "-O", "qcow2", "{src}", "{dst}"]],
    "xz": [["sh", "-c", "xz -T1 -c {src} > {dst}"]],
}


@pytest.mark.slow
@pytest.mark.parametrize("form", list(FORMS))
def test_flatcar_customizations_read_back_with_other_tools(
    disk: Path, sources: Path, tmp_path: Path, capfd, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    image = tmp_path / "in"
    shutil.copy(disk, image)
    for argv in FORMS[form]:
        run(*(arg.format(src=disk, dst=image) for arg in argv))
    out = tmp_path / "out" / "flatcar.img"
    out.parent.mkdir()
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr("tempfile.tempdir", None)
    digest, mtime = hashlib.sha256(image.read_bytes()).hexdigest(), image.stat().st_mtime_ns
    code, said, err = _edit_image(capfd, image, *flatcar_edit(sources), "-o", out)
    assert os.listdir(scratch) == []
    assert hashlib.sha256(image.read_bytes()).hexdigest() == digest  # the input as it was
    assert image.stat().st_mtime_ns == mtime
    assert (code, err) == (0, ""), err
    assert (
        said == f"{out}: p6 OEM, p9 ROOT, p1 EFI-SYSTEM edited ({form.replace('xz', 'raw, xz')})\n"
    )
    assert os.listdir(out.parent) == ["flatcar.img"]
    if form == "qcow2":
        assert "No errors were found" in run("qemu-img", "check", out)
        assert '"format": "qcow2"' in run("qemu-img", "info", "--output=json", out)
    raw = as_raw(out, form, tmp_path)
    assert "No problems found" in run("sgdisk", "-v", raw)

    # OEM: the kernel arguments and the base config
    assert debugfs(raw, "OEM", "cat /grub.cfg") == GRUB
    assert debugfs(raw, "OEM", "cat /base/base.ign") == (sources / "base.ign").read_text()
    # ROOT: a unit, pre-enabled; a tool with its mode and the owner given; a file gone; a tar
    assert debugfs(raw, "ROOT", "cat /etc/systemd/system/x.service") == UNIT
    link = debugfs(raw, "ROOT", f"stat {WANTS}/x.service")
    assert 'Fast link dest: "/etc/systemd/system/x.service"' in link
    tool = debugfs(raw, "ROOT", "stat /opt/bin/x")
    assert "Mode:  0750" in tool and re.search(r"User:\s+500\s+Group:\s+500", tool)
    assert "mtime: 0x12cea600" in tool  # 1980-01-01, the default epoch
    assert "os-release" not in debugfs(raw, "ROOT", "ls /etc")
    assert debugfs(raw, "ROOT", "cat /var/lib/docker/image.json") == '{"id": 1}\n'
    listing = debugfs(raw, "ROOT", "ls -p /var/lib/docker")
    assert "/100640/233/0/image.json/10/" in listing and "/120777/0/0/current/10/" in listing
    assert "Mode:  0710" in debugfs(raw, "ROOT", "stat /var/lib/docker")
    # EFI-SYSTEM: a loader beside the first-boot flag, read by mtools
    drive = f"{raw}@@{gpt_offset(raw, 'EFI-SYSTEM')}"
    loader = tmp_path / "loader"
    run("mcopy", "-n", "-i", drive, "::/EFI/boot/grubx64.efi", loader, env=MTOOLS_ENV)
    assert loader.read_bytes() == (sources / "loader.efi").read_bytes()
    assert "first_boot" in run("mdir", "-i", drive, "-b", "-/", "::/", env=MTOOLS_ENV)

    # every partition not edited, and the GPT, as they were
    before, after = pieces(disk), pieces(raw)
    edited = {"EFI-SYSTEM", "OEM", "ROOT"}
    assert {k for k in before if before[k] != after[k]} == edited
    assert lint(raw).findings == ()


@pytest.mark.slow
def test_e2fsck_and_fsck_vfat_find_the_edited_filesystems_clean(
    disk: Path, sources: Path, tmp_path: Path, capfd
) -> None:
    out = tmp_path / "out.raw"
    assert _edit_image(capfd, disk, *flatcar_edit(sources), "-o", out)[0] == 0
    for label in ("OEM", "ROOT"):
        assert "Pass 5" in fsck(out, label, tmp_path, "e2fsck", "-fn")
    assert "clusters" in fsck(out, "EFI-SYSTEM", tmp_path, "fsck.vfat", "-n")


@pytest.mark.slow
def test_a_tar_unpacks_onto_fat_and_a_directory_goes_whole(
    disk: Path, tmp_path: Path, capfd
) -> None:
    firmware = tmp_path / "firmware.tar"
    with tarfile.open(firmware, "w:gz") as tar:
        for name, data in (("rpi/config.txt", b"arm_64bit=1\n"), ("rpi/fixup4.dat", b"\1" * 999)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = tmp_path / "out.raw"
    code, _, err = _edit_image(capfd, disk, "--partition", "EFI-SYSTEM", "--remove", "/flatcar",
                               "--tar", f"{firmware}:/", "-o", out)  # fmt: skip
    assert code == 0, err
    drive = f"{out}@@{gpt_offset(out, 'EFI-SYSTEM')}"
    listing = run("mdir", "-i", drive, "-b", "-/", "::/", env=MTOOLS_ENV).split()
    assert "::/rpi/config.txt" in listing and not any("flatcar" in line for line in listing)
    assert run("mtype", "-i", drive, "::/rpi/config.txt", env=MTOOLS_ENV) == "arm_64bit=1\n"
    assert "clusters" in fsck(out, "EFI-SYSTEM", tmp_path, "fsck.vfat", "-n")


# --- reproducible -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "compression"), [
    ("raw", "none"), ("qcow2", "none"), ("vhd", "none"), ("vmdk", "none"), ("raw", "xz"),
    ("qcow2", "zst"),
])  # fmt: skip
def test_two_runs_give_the_same_bytes(
    disk: Path, sources: Path, tmp_path: Path, capfd, fmt: str, compression: str
) -> None:
    digests = []
    for run_dir in ("a", "b"):
        out = tmp_path / run_dir / "out.img"
        out.parent.mkdir()
        flags = ["--format", fmt, "--compression", compression]
        code, _, err = _edit_image(capfd, disk, *flatcar_edit(sources), *flags, "-o", out)
        assert code == 0, err
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    raw = tmp_path / "raw.img"
    assert _edit_image(capfd, disk, *flatcar_edit(sources), "--format", "raw", "-o", raw)[0] == 0
    packed = as_raw(out, compression if compression == "xz" else fmt, tmp_path)
    if compression == "zst":
        packed = tmp_path / "unpacked"
        run("sh", "-c", f"zstd -q -d -c {out} > {tmp_path / 'z'}")
        run("qemu-img", "convert", "-O", "raw", tmp_path / "z", packed)
    assert pieces(packed) == pieces(raw)  # the same disk, whatever the format


@pytest.mark.slow
def test_source_date_epoch_sets_every_time(
    disk: Path, sources: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = edits.from_flags([("ROOT", [("add", f"{sources}/tool:/etc/tool")]),
                               ("1", [("add", f"{sources}/grub.cfg:/grub.cfg")])])  # fmt: skip
    plain = edit(disk, record, tmp_path / "plain.raw")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    dated = edit(disk, record, tmp_path / "dated.raw")
    assert plain.output.read_bytes() != dated.output.read_bytes()
    assert f"mtime: {DEFAULT_EPOCH:#010x}" in debugfs(plain.output, "ROOT", "stat /etc/tool")
    stat = debugfs(dated.output, "ROOT", "stat /etc/tool")
    assert all(f"{when}: 0x6553f100" in stat for when in ("ctime", "atime", "mtime", "crtime"))
    drive = f"{dated.output}@@{gpt_offset(dated.output, 'EFI-SYSTEM')}"
    assert "2023-11-14  22:13" in run("mdir", "-i", drive, "::/", env={**MTOOLS_ENV, "TZ": "UTC"})


# --- what does not fit, what is refused, what is wrong ----------------------------------


def _refused(capfd, monkeypatch, tmp_path: Path, *argv: str | Path) -> str:
    """Run edit-image expecting one message and exit 2; nothing left in the output's
    directory nor in TMPDIR."""
    scratch = tmp_path / "tmpdir"
    scratch.mkdir(exist_ok=True)
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr("tempfile.tempdir", None)
    outdir = tmp_path / "outdir"
    outdir.mkdir(exist_ok=True)
    code, out, err = _edit_image(capfd, *argv, "-o", outdir / "out.raw")
    assert (code, out) == (2, ""), (code, out, err)
    assert err.startswith("buildgraph: error: ") and err.count("\n") <= 2, err
    assert os.listdir(outdir) == [] and os.listdir(scratch) == []
    return err


@pytest.mark.slow
@pytest.mark.parametrize(("label", "size"), [("OEM", 9 * MIB), ("EFI-SYSTEM", 9 * MIB)])
def test_an_edit_that_does_not_fit_says_the_sizes(
    disk: Path, tmp_path: Path, capfd, monkeypatch: pytest.MonkeyPatch, label: str, size: int
) -> None:
    big = tmp_path / "big"
    big.write_bytes(os.urandom(size))
    err = _refused(capfd, monkeypatch, tmp_path, disk, "--partition", label,
                   "--add", f"{big}:/big")  # fmt: skip
    match = re.search(r"too small for this edit: the files it writes need (\d+) bytes and its"
                      r" filesystem has (\d+) bytes free", err)  # fmt: skip
    assert match, err
    assert int(match.group(1)) == size and 0 < int(match.group(2)) < 8 * MIB


@pytest.mark.slow
@pytest.mark.parametrize(("target", "said"), [
    ("USR-A", "p3 USR-A cannot be edited: its type (5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6)"
              " makes it a Container Linux (Flatcar) /usr partition"),
    ("4", "p4 USR-B cannot be edited: its type"),
    ("BIOS-BOOT", "p2 BIOS-BOOT cannot be edited: it holds no filesystem (zeros)"),
])  # fmt: skip
def test_usr_and_what_holds_no_filesystem_are_refused(
    disk: Path, sources: Path, tmp_path: Path, capfd, monkeypatch, target: str, said: str
) -> None:
    err = _refused(capfd, monkeypatch, tmp_path, disk, "--partition", target,
                   "--add", f"{sources}/tool:/bin/tool")  # fmt: skip
    assert said in err
    assert "never modify /usr" in err or "USR" not in target


@pytest.mark.slow
@pytest.mark.parametrize(("change", "target", "said"), [
    (["-t", "3:8300"], "USR-A", "p3 USR-A cannot be edited: it holds squashfs, a read-only"
                                " filesystem"),  # whatever its type says
    (["-A", "9:set:60"], "ROOT", "p9 ROOT cannot be edited: its GPT attributes mark it"
                                 " read-only (bit 60)"),
])  # fmt: skip
def test_a_squashfs_and_the_gpt_read_only_bit_are_refused(
    disk: Path, tmp_path: Path, capfd, monkeypatch, change: list[str], target: str, said: str
) -> None:
    changed = tmp_path / "changed.raw"
    shutil.copy(disk, changed)
    run("sgdisk", *change, changed)
    err = _refused(capfd, monkeypatch, tmp_path, changed, "--partition", target,
                   "--remove", "/etc/os-release")  # fmt: skip
    assert said in err


BAD = [
    (["--partition", "STATE", "--remove", "/x"], "has no partition 'STATE'",
     "give a number or label of: p1 EFI-SYSTEM, p2 BIOS-BOOT"),
    (["--partition", "12", "--remove", "/x"], "has no partition '12'", ""),
    (["--partition", "OEM", "--add", "{src}/absent:/x"], "absent: no such file", ""),
    (["--partition", "OEM", "--add", "{src}:/x"], "not a regular file", ""),
    (["--partition", "OEM", "--add", "{src}/tool:/base/x"],
     "p6 OEM: --add {src}/tool:/base/x: its directory /base does not exist",
     "make it first with --mkdir /base"),
    (["--partition", "ROOT", "--add", "{src}/tool:/etc"], "/etc is a directory", ""),
    (["--partition", "ROOT", "--add", "{src}/tool:/etc/os-release/x"],
     "/etc/os-release is a file, not a directory", ""),
    (["--partition", "ROOT", "--remove", "/etc/absent"],
     "p9 ROOT: --remove /etc/absent: no such file or directory", "grub.cfg is /grub.cfg"),
    (["--partition", "1", "--add", "{src}/tool:/t", "--mode", "0755"],
     "p1 EFI-SYSTEM: --add {src}/tool:/t: FAT keeps no modes or owners", ""),
    (["--partition", "1", "--symlink", "/l:/t"], "FAT keeps no symbolic links", ""),
    (["--partition", "1", "--add", "{src}/tool:/a:b"], "FAT cannot hold that name", ""),
    (["--partition", "ROOT", "--mode", "0755"], "--mode must follow an --add or a --mkdir", ""),
    (["--partition", "ROOT", "--mkdir", "/x", "--owner", "core"], "bad owner 'core'", ""),
    (["--partition", "OEM", "--remove", "/grub.cfg", "--partition", "6", "--remove", "/x"],
     "p6 OEM is named by more than one --partition", ""),
    (["--partition", "OEM"], "nothing to edit in partition 'OEM'", ""),
    (["--partition", "ROOT", "--tar", "{src}/evil.tar:/var"], "it would unpack outside /var", ""),
    (["--partition", "ROOT", "--tar", "{src}/tool:/var"], "is not a tar archive", ""),
    (["--partition", "1", "--tar", "{src}/docker.tar:/"],
     "member 'lib/docker/current': only directories, regular files and (not on FAT)", ""),
    (["--partition", "ROOT", "--tar", "{src}/docker.tar:/nowhere"],
     "/nowhere is not a directory", ""),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("flags", "said", "hint"), BAD, ids=[case[1][:40] for case in BAD])
def test_each_bad_input_is_one_message(
    disk: Path, sources: Path, tmp_path: Path, capfd, monkeypatch, flags, said, hint
) -> None:
    with tarfile.open(sources / "evil.tar", "w") as tar:
        tar.addfile(tarfile.TarInfo("../escape"), io.BytesIO(b""))
    argv = [flag.format(src=sources) for flag in flags]
    err = _refused(capfd, monkeypatch, tmp_path, disk, *argv)
    assert said.format(src=sources) in err
    assert hint in err


def test_an_operation_before_any_partition_is_a_usage_error(capfd, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["edit-image", "x.raw", "--remove", "/x", "-o", str(tmp_path / "o")])
    assert stopped.value.code == 2
    assert "--remove must follow a --partition" in capfd.readouterr().err


@pytest.mark.slow
def test_a_missing_input_and_a_missing_output_directory(disk: Path, tmp_path: Path, capfd) -> None:
    code, _, err = _edit_image(capfd, tmp_path / "absent.raw", "--partition", "OEM",
                               "--remove", "/grub.cfg", "-o", tmp_path / "o.raw")  # fmt: skip
    assert code == 2 and "absent.raw: no such file" in err
    code, _, err = _edit_image(capfd, disk, "--partition", "OEM", "--remove", "/grub.cfg",
                               "-o", tmp_path / "nodir" / "o.raw")  # fmt: skip
    assert code == 2 and "its directory does not exist" in err


# --- a property: whatever files are added read back ------------------------------------

_NAME = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)


@pytest.mark.slow
@settings(max_examples=6, deadline=None)
@given(files=st.dictionaries(st.lists(_NAME, min_size=1, max_size=3).map("/".join),
                             st.binary(max_size=3000), min_size=1, max_size=5),
       mode=st.integers(0, 0o777))  # fmt: skip
def test_added_files_read_back(disk: Path, tmp_path_factory, files: dict, mode: int) -> None:
    paths = sorted(files)
    if any(other.startswith(path + "/") for path in paths for other in paths):
        return  # a file where another needs a directory: the planner's refusal, tested above
    where = tmp_path_factory.mktemp("property")
    operations: dict[str, list[tuple[str, str]]] = {"ROOT": [], "1": []}
    for index, (path, data) in enumerate(sorted(files.items())):
        src = where / f"f{index}"
        src.write_bytes(data)
        for part, dest in (("ROOT", f"/srv/{path}"), ("1", f"/data/{path}")):
            parent = dest.rsplit("/", 1)[0]
            operations[part] += [("mkdir", parent), ("add", f"{src}:{dest}")]
        operations["ROOT"].append(("mode", f"{mode:o}"))
    out = edit(disk, edits.from_flags(list(operations.items())), where / "out.raw").output
    drive = f"{out}@@{gpt_offset(out, 'EFI-SYSTEM')}"
    for path, data in files.items():
        got = where / "got"
        run("debugfs", "-R", f"dump /srv/{path} {got}", f"{out}?offset={gpt_offset(out, 'ROOT')}")
        assert got.read_bytes() == data
        assert f"Mode:  {mode:04o}" in debugfs(out, "ROOT", f"stat /srv/{path}")
        run("mcopy", "-n", "-i", drive, f"::/data/{path}", got, env=MTOOLS_ENV)
        assert got.read_bytes() == data
