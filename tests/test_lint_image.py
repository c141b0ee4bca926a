"""``buildgraph lint-image`` and the offline image reader under it (buildgraph/diskimage).

The slow tests lint the Flatcar-like nine-partition disk of tests/flatcar.py (made as a
user could without root), each rule with its problem planted; sgdisk, qemu-img,
xz/zstd/bzip2/gzip and strace are the independent tools that make and check the inputs.
The last test lints our own metal disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import uuid
import zlib
from pathlib import Path

import pytest
from flatcar import FLATCAR, MIB, MTOOLS_ENV, SHADOW, Spec, flatcar_disk, run, with_files

from buildgraph import cli
from buildgraph.diskimage import gpt, layouts
from buildgraph.diskimage.filesystems import Entry
from buildgraph.diskimage.lint import _matches, lint
from buildgraph.diskimage.rules import RULES, SEVERITIES


def _lint(disk: Path, capfd, *flags: str) -> tuple[int, str, str]:
    code = cli.main(["lint-image", str(disk), *flags])
    out, err = capfd.readouterr()
    return code, out, err


def _findings(disk: Path) -> list[tuple]:
    report = lint(disk)
    return [(f.rule, f.severity, f.partition, f.label, f.path) for f in report.findings]


# --- the rules table, pure -------------------------------------------------------------


def test_the_rules_table_is_well_formed() -> None:
    ids = [rule.id for rule in RULES]
    assert len(ids) == len(set(ids))
    names = {layout.name for layout in layouts.LAYOUTS}
    for rule in RULES:
        assert rule.severity in SEVERITIES
        assert rule.check or rule.message, rule.id
        assert rule.layouts is None or rule.layouts <= names, rule.id
        assert all(path.startswith("/") for path in rule.paths), rule.id
        assert not rule.missing or rule.paths, rule.id


def test_globs_stay_within_a_segment_and_fold_case_on_fat() -> None:
    keys = ("/home/*/.ssh/authorized_keys",)
    assert _matches(keys, "/home/core/.ssh/authorized_keys", True)
    assert not _matches(keys, "/home/a/b/.ssh/authorized_keys", True)
    flag = ("/boot/flatcar/first_boot",)
    assert not _matches(flag, "/boot/FLATCAR/FIRST_BOOT", True)
    assert _matches(flag, "/boot/FLATCAR/FIRST_BOOT", False)


@pytest.mark.parametrize(("secret", "flagged"), [
    ("*", False), ("!", False), ("!!", False), ("!*", False), ("!$6$s$h", False),
    ("*LK*", False), ("$6$salt$hash", True), ("$y$j9T$x$y", True), ("", True), ("x", True),
])  # fmt: skip
def test_shadow_fields_that_let_an_account_log_in(secret: str, flagged: bool) -> None:
    (rule,) = [rule for rule in RULES if rule.id == "shadow-password"]
    entry = Entry("/etc/shadow", "file", 0o640, 0, 0, 1, "<12>")
    line = f"root:*:1::::::\nuser:{secret}:19000:0:99999:7:::\n".encode()
    assert rule.check is not None
    message = rule.check(entry, lambda: line)
    assert (message is not None) == flagged
    if flagged:
        assert "user" in message and "root" not in message


def test_layouts_are_told_by_their_labels() -> None:
    assert layouts.detect([label for label, _, _ in FLATCAR]).name == "flatcar"
    assert layouts.detect(["EFI", "BIOS", "BOOT", "META"]).name == "talos"
    assert layouts.detect(["root"]).name == "generic"
    assert layouts.detect(["EFI-SYSTEM", "USR-A"]).mount("EFI-SYSTEM") == "/boot"


# --- the reader -------------------------------------------------------------------------


@pytest.mark.slow
def test_the_gpt_reader_agrees_with_sgdisk(tmp_path: Path) -> None:
    disk = flatcar_disk(tmp_path)
    verify = run("sgdisk", "-v", disk)
    assert "No problems found" in verify
    printed = run("sgdisk", "-p", disk)
    rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+.+?\s{2}(\S+)$", printed, re.MULTILINE)
    table = gpt.read(disk)
    assert table.sector_size == 512
    assert [(str(p.number), str(p.first_lba), str(p.last_lba), p.name)
            for p in table.partitions] == [tuple(row) for row in rows]  # fmt: skip
    for part in table.partitions:
        info = run("sgdisk", "-i", str(part.number), disk)
        code = re.search(r"Partition GUID code: (\S+)", info).group(1)
        unique = re.search(r"Partition unique GUID: (\S+)", info).group(1)
        assert (part.type_guid, part.unique_guid) == (uuid.UUID(code), uuid.UUID(unique))
        assert part.offset == part.first_lba * 512
        sectors = int(re.search(r"Partition size: (\d+) sectors", info).group(1))
        assert part.size == sectors * 512
    assert [p.size // MIB for p in table.partitions][:8] == [s for _, _, s in FLATCAR][:8]


def _as_4k(disk: Path, dest: Path) -> Path:
    """``disk``'s GPT laid out again for 4096-byte sectors (no tool here writes one)."""
    data = disk.read_bytes()
    header = bytearray(data[512:604])
    count, size = struct.unpack_from("<II", header, 80)
    entries = bytearray(data[1024 : 1024 + count * size])
    for index in range(count):
        first, last = struct.unpack_from("<QQ", entries, index * size + 32)
        if first:
            struct.pack_into("<QQ", entries, index * size + 32, first // 8, (last + 1) // 8 - 1)
    total = len(data) // 4096
    struct.pack_into("<QQQQ", header, 24, 1, total - 1, 6, total - 6)
    struct.pack_into("<Q", header, 72, 2)
    struct.pack_into("<I", header, 88, zlib.crc32(entries))
    struct.pack_into("<I", header, 16, 0)
    struct.pack_into("<I", header, 16, zlib.crc32(header))
    out = bytearray(data)
    out[512 : 4096 * 3] = bytes(4096 * 3 - 512)
    out[4096 : 4096 + len(header)] = header
    out[8192 : 8192 + len(entries)] = entries
    dest.write_bytes(out)
    return dest


@pytest.mark.slow
def test_a_4k_sector_disk_is_read_with_the_same_offsets(tmp_path: Path) -> None:
    disk = flatcar_disk(tmp_path / "a")
    wide = gpt.read(_as_4k(disk, tmp_path / "4k.raw"))
    assert wide.sector_size == 4096
    narrow = gpt.read(disk)
    assert [(p.number, p.name, p.offset) for p in wide.partitions] == [
        (p.number, p.name, p.offset) for p in narrow.partitions
    ]
    # ROOT, the last, ends at the last whole 4 KiB sector before the backup table
    assert [p.size for p in wide.partitions][:-1] == [p.size for p in narrow.partitions][:-1]
    assert 0 < narrow.partitions[-1].size - wide.partitions[-1].size < 4096
    assert _findings(tmp_path / "4k.raw") == []


# --- the rules, one planted problem each ------------------------------------------------

PLANTED = [
    ("machine-id", "error", "ROOT", "/etc/machine-id",
     with_files(root={"etc/machine-id": "0123456789abcdef0123456789abcdef\n"})),
    ("machine-id", "error", "ROOT", "/etc/machine-id", with_files(root={"etc/machine-id": ""})),
    ("ssh-host-key", "error", "ROOT", "/etc/ssh/ssh_host_ed25519_key",
     with_files(root={"etc/ssh/ssh_host_ed25519_key": ("KEY", 0o600)})),
    ("first-boot-flag", "error", "EFI-SYSTEM", "/boot/flatcar/first_boot",
     Spec(esp={"EFI/boot/bootx64.efi": "MZ"})),
    ("oem-config-ign", "warning", "OEM", "/oem/config.ign",
     with_files(oem={"config.ign": "{}"})),
    ("authorized-keys", "warning", "ROOT", "/home/core/.ssh/authorized_keys",
     with_files(root={"home/core/.ssh/authorized_keys": "ssh-ed25519 AAAA vagrant"})),
    ("authorized-keys", "warning", "ROOT", "/home/core/.ssh/authorized_keys.d/packer",
     with_files(root={"home/core/.ssh/authorized_keys.d/packer": "ssh-ed25519 AAAA"})),
    ("authorized-keys", "warning", "ROOT", "/root/.ssh/authorized_keys",
     with_files(root={"root/.ssh/authorized_keys": "ssh-ed25519 AAAA"})),
    ("shadow-password", "error", "ROOT", "/etc/shadow",
     with_files(root={"etc/shadow": (SHADOW + "dummy:$6$salt$hash:19000:0:99999:7:::\n",
                                     0o640)})),
    ("random-seed", "error", "ROOT", "/var/lib/systemd/random-seed",
     with_files(root={"var/lib/systemd/random-seed": ("seed", 0o600)})),
    ("dhcp-lease", "warning", "ROOT", "/var/lib/dhcp/dhclient.eth0.leases",
     with_files(root={"var/lib/dhcp/dhclient.eth0.leases": "lease {}"})),
    ("dhcp-lease", "warning", "ROOT", "/var/lib/NetworkManager/internal-eth0.lease",
     with_files(root={"var/lib/NetworkManager/internal-eth0.lease": "ADDRESS=10.0.0.2"})),
    ("dhcp-lease", "warning", "ROOT", "/var/lib/systemd/network/eth0.lease",
     with_files(root={"var/lib/systemd/network/eth0.lease": "ADDRESS=10.0.0.2"})),
    ("dhcp-lease", "warning", "ROOT", "/var/lib/dhclient/dhclient.leases",
     with_files(root={"var/lib/dhclient/dhclient.leases": "lease {}"})),
    ("shell-history", "warning", "ROOT", "/root/.bash_history",
     with_files(root={"root/.bash_history": "passwd core\n"})),
    ("shell-history", "warning", "ROOT", "/home/core/.zsh_history",
     with_files(root={"home/core/.zsh_history": "ls\n"})),
    ("shell-history", "warning", "ROOT", "/home/core/.ash_history",
     with_files(root={"home/core/.ash_history": "ls\n"})),
    ("world-writable", "error", "ROOT", "/opt/bin/tool",
     with_files(root={"opt/bin/tool": ("#!/bin/sh\n", 0o666)})),
    ("world-writable", "error", "OEM", "/oem/grub.cfg",
     with_files(oem={"grub.cfg": ("set oem_id=qemu\n", 0o646)})),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("rule", "severity", "label", "path", "spec"), PLANTED,
                         ids=[f"{case[0]}:{case[3]}" for case in PLANTED])  # fmt: skip
def test_each_rule_finds_its_planted_problem(
    tmp_path: Path, capfd, rule: str, severity: str, label: str, path: str, spec: Spec
) -> None:
    disk = flatcar_disk(tmp_path, spec)
    number = next(n for n, (name, _, _) in enumerate(FLATCAR, 1) if name == label)
    assert _findings(disk) == [(rule, severity, number, label, path)]
    code, out, _ = _lint(disk, capfd)
    assert code == (1 if severity == "error" else 0)
    assert f"{severity.upper()} p{number} {label} {path}: " in out


@pytest.mark.slow
def test_a_clean_disk_has_no_findings_and_says_what_it_did_not_read(tmp_path: Path, capfd) -> None:
    disk = flatcar_disk(tmp_path)  # a sticky /tmp, a symlink, locked accounts: all fine
    code, out, err = _lint(disk, capfd)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:-1] == [
        "INFO p2 BIOS-BOOT: no filesystem (zeros), not read",
        "INFO p3 USR-A: squashfs, not read",
        "INFO p4 USR-B: no filesystem (zeros), not read",
        "INFO p5 ROOT-C: no filesystem (zeros), not read",
        "INFO p7 OEM-CONFIG: no filesystem (zeros), not read",
        "INFO p8 coreos-reserved: no filesystem (zeros), not read",
    ]
    assert lines[-1] == f"{disk}: flatcar layout, 9 partitions, 3 read: no findings"


@pytest.mark.slow
def test_the_machine_id_message_says_an_empty_one_is_still_present(tmp_path: Path) -> None:
    (finding,) = lint(flatcar_disk(tmp_path, with_files(root={"etc/machine-id": ""}))).findings
    assert "though empty" in finding.message and "do not truncate" in finding.message


@pytest.mark.slow
def test_shadow_names_the_accounts_with_passwords(tmp_path: Path) -> None:
    shadow = SHADOW + "dummy:$6$s$h:1::::::\nopen::1::::::\n"
    spec = with_files(root={"etc/shadow": (shadow, 0o640)})
    (finding,) = lint(flatcar_disk(tmp_path, spec)).findings
    assert "dummy, open (empty: logs in without one)" in finding.message
    assert "core" not in finding.message and "locked" not in finding.message


@pytest.mark.slow
def test_what_another_partition_mounts_over_is_not_the_os_files(tmp_path: Path) -> None:
    """ROOT's own /boot and /oem are hidden by EFI-SYSTEM and OEM: a flag or a config.ign
    there counts for nothing."""
    spec = with_files(root={"boot/flatcar/first_boot": "", "oem/config.ign": "{}"})
    spec.esp = {"EFI/boot/bootx64.efi": "MZ"}
    assert _findings(flatcar_disk(tmp_path, spec)) == [
        ("first-boot-flag", "error", 1, "EFI-SYSTEM", "/boot/flatcar/first_boot"),
    ]


@pytest.mark.slow
def test_fat_names_match_without_case(tmp_path: Path) -> None:
    spec = Spec(esp={"FLATCAR/FIRST_BOOT": "", "EFI/BOOT/BOOTX64.EFI": "MZ"})
    disk = flatcar_disk(tmp_path, spec)
    listing = run("mdir", "-i", f"{disk}@@{MIB}", "-b", "::/", env=MTOOLS_ENV)
    assert "::/FLATCAR/" in listing  # a short name only: no lower-case long name
    assert _findings(disk) == []


@pytest.mark.slow
def test_json_names_image_findings_and_partitions(tmp_path: Path, capfd) -> None:
    spec = with_files(root={"etc/machine-id": "x\n", "root/.bash_history": "ls\n"})
    disk = flatcar_disk(tmp_path, spec)
    code, out, _ = _lint(disk, capfd, "--json")
    assert code == 1
    report = json.loads(out)
    assert report["image"] == str(disk) and report["layout"] == "flatcar"
    assert report["findings"] == [
        {"partition": 9, "label": "ROOT", "path": "/etc/machine-id",
         "partition_path": "/etc/machine-id", "rule": "machine-id", "severity": "error",
         "message": report["findings"][0]["message"]},
        {"partition": 9, "label": "ROOT", "path": "/root/.bash_history",
         "partition_path": "/root/.bash_history", "rule": "shell-history",
         "severity": "warning", "message": report["findings"][1]["message"]},
    ]  # fmt: skip
    assert [(p["number"], p["label"], p["filesystem"], p["mount"], p["read"])
            for p in report["partitions"]][:3] == [
        (1, "EFI-SYSTEM", "vfat", "/boot", True), (2, "BIOS-BOOT", "none", "/", False),
        (3, "USR-A", "squashfs", "/usr", False)]  # fmt: skip
    assert report["partitions"][8] == {"number": 9, "label": "ROOT", "filesystem": "ext4",
                                       "mount": "/", "read": True}  # fmt: skip
    assert len(report["notes"]) == 6


# --- inputs of other formats ------------------------------------------------------------

CONVERSIONS = {
    "qcow2": [["qemu-img", "convert", "-O", "qcow2", "{src}", "{dst}"]],
    "vmdk": [["qemu-img", "convert", "-O", "vmdk", "{src}", "{dst}"]],
    "vhd": [["qemu-img", "convert", "-O", "vpc", "-o", "force_size=on", "{src}", "{dst}"]],
    "xz": [["sh", "-c", "xz -T1 -c {src} > {dst}"]],
    "zst": [["sh", "-c", "zstd -q -c {src} > {dst}"]],
    "bz2": [["sh", "-c", "bzip2 -c {src} > {dst}"]],
    "gz": [["sh", "-c", "gzip -c {src} > {dst}"]],
    "qcow2.zst": [["qemu-img", "convert", "-O", "qcow2", "{src}", "{mid}"],
                  ["sh", "-c", "zstd -q -c {mid} > {dst}"]],
}  # fmt: skip


LAYERS = {"vhd": ("vpc",), "qcow2.zst": ("zst", "qcow2")}  # qemu-img calls VHD vpc


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A disk with problems on three partitions, for the format tests."""
    spec = with_files(root={"etc/machine-id": "x\n", "etc/ssh/ssh_host_rsa_key": "K"},
                      oem={"config.ign": "{}"})  # fmt: skip
    spec.esp = {}
    return flatcar_disk(tmp_path_factory.mktemp("planted"), spec)


@pytest.mark.slow
@pytest.mark.parametrize("form", list(CONVERSIONS))
def test_other_formats_give_the_findings_of_the_raw_disk(
    planted: Path, tmp_path: Path, form: str
) -> None:
    if form == "bz2" and shutil.which("bzip2") is None:
        pytest.skip("needs bzip2 (Debian's bzip2) to make the input")
    # The name says nothing of the format: it is told by the bytes alone.
    dst, mid = tmp_path / "image", tmp_path / "mid"
    for argv in CONVERSIONS[form]:
        run(*(arg.format(src=planted, dst=dst, mid=mid) for arg in argv))
    before = sorted(os.listdir(tmp_path))
    expected = _findings(planted)
    assert {rule for rule, *_ in expected} == {"machine-id", "ssh-host-key", "oem-config-ign",
                                               "first-boot-flag"}  # fmt: skip
    report = lint(dst)
    assert [(f.rule, f.severity, f.partition, f.label, f.path) for f in report.findings] == (
        expected
    )
    assert report.layers == LAYERS.get(form, (form,))
    assert sorted(os.listdir(tmp_path)) == before  # nothing written next to the input


# --- what it refuses --------------------------------------------------------------------


def _refused(capfd, path: Path, *expected: str) -> str:
    code, out, err = _lint(path, capfd)
    assert code == 2 and out == "", (code, out, err)
    assert err.startswith("buildgraph: error: ") and err.count("\n") <= 2, err
    for text in expected:
        assert text in err, err
    return err


@pytest.mark.slow
@pytest.mark.parametrize(("offset", "what", "sgdisk_says"), [
    (512 + 56, "the header's CRC32 is", "Main header: ERROR"),  # a byte of the disk GUID
    (1024 + 56, "the partition entry array's CRC32 is", "Main partition table: ERROR"),
])  # fmt: skip
def test_a_damaged_table_is_refused(
    tmp_path: Path, capfd, offset: int, what: str, sgdisk_says: str
) -> None:
    disk = flatcar_disk(tmp_path)
    with open(disk, "r+b") as file:
        file.seek(offset)
        byte = file.read(1)[0]
        file.seek(offset)
        file.write(bytes([byte ^ 0x01]))
    verify = subprocess.run(["sgdisk", "-v", str(disk)], capture_output=True, text=True)
    assert (
        sgdisk_says in verify.stdout + verify.stderr
    )  # sgdisk sees the damage too (and reads the backup)
    _refused(capfd, disk, f"{disk}: the GPT is damaged: {what}", "sgdisk -v")


@pytest.mark.slow
def test_what_is_not_a_gpt_disk_is_refused(tmp_path: Path, capfd) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 1000)
    _refused(capfd, text, f"{text} is not a GPT disk image: no 'EFI PART' header")
    fs = tmp_path / "root.ext4"
    run("mke2fs", "-q", "-t", "ext4", fs, "4M")
    _refused(capfd, fs, "it holds a filesystem (ext4), not a partitioned disk")
    _refused(capfd, tmp_path / "absent.raw", "absent.raw: no such file")
    _refused(capfd, tmp_path, "is not a file")


@pytest.mark.slow
@pytest.mark.parametrize(("tool", "said"), [
    ("xz -T1", "its xz data does not decompress"), ("zstd -q", "premature end"),
])  # fmt: skip
def test_truncated_compressed_input_is_refused(tmp_path: Path, capfd, tool: str, said: str):
    disk = flatcar_disk(tmp_path / "d")
    packed = tmp_path / "disk.packed"
    run("sh", "-c", f"{tool} -c {disk} > {packed}")
    os.truncate(packed, packed.stat().st_size // 2)
    _refused(capfd, packed, said, "damaged or truncated")


@pytest.mark.slow
def test_a_missing_tool_is_named_with_its_package(
    tmp_path: Path, capfd, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = flatcar_disk(tmp_path / "d")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("qemu-img", "mdir", "mcopy"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", str(bin_dir))
    _refused(capfd, disk, "tool 'debugfs' is not installed", "apt-get install e2fsprogs")


# --- read-only, really ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_the_image_is_only_ever_opened_read_only(tmp_path: Path) -> None:
    disk = flatcar_disk(tmp_path / "d", with_files(root={"etc/machine-id": "x\n"}))
    digest, mtime = hashlib.sha256(disk.read_bytes()).hexdigest(), disk.stat().st_mtime_ns
    listing = sorted(os.listdir(disk.parent))
    trace = tmp_path / "trace"
    done = subprocess.run(
        ["strace", "-ff", "-qq", "-e", "trace=execve,open,openat,creat,truncate", "-o",
         str(trace), sys.executable, "-m", "buildgraph.cli", "lint-image", str(disk)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    openers = set()
    for per_process in tmp_path.glob("trace.*"):  # -ff: one file a process, no interleaving
        program = "?"
        for call in per_process.read_text().splitlines():
            if call.startswith("execve(") and call.endswith("= 0"):
                program = Path(call.split('"')[1]).name
            elif f'"{disk}' in call:
                assert "O_RDONLY" in call and "O_RDWR" not in call, call
                assert "O_WRONLY" not in call, call
                openers.add(program)
    assert {"qemu-img", "mdir", "debugfs"} <= openers, openers
    assert hashlib.sha256(disk.read_bytes()).hexdigest() == digest
    assert disk.stat().st_mtime_ns == mtime
    assert sorted(os.listdir(disk.parent)) == listing


# --- our own disk -----------------------------------------------------------------------


@pytest.mark.slow
def test_our_metal_disk_passes(tmp_path: Path, capfd) -> None:
    from realgraph import build, clone

    root = clone(tmp_path / "repo")
    build(root, tmp_path / "cache", "image-metal", "PLATFORM=linux/amd64")
    image = root / "_out" / "metal-amd64.raw.zst"
    code, out, err = _lint(image, capfd, "--json")
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report["findings"] == [] and report["layout"] == "talos"
    assert report["layers"] == ["zst"]
    read = {p["label"]: (p["filesystem"], p["read"]) for p in report["partitions"]}
    assert read == {"EFI": ("vfat", True), "BIOS": ("unknown", False),
                    "BOOT": ("ext4", True), "META": ("unknown", False)}  # fmt: skip
