"""Secure Boot: the UKI writer, the key set and its .auth variables, and the assets that
boot under firmware enforcing our keys.

Fast: .auth files verify with openssl (an independent PKCS#7 reader); a broken key
directory is one message naming the file. Slow: one build of both arches (module
fixture) of secureboot-iso, image-metal SECUREBOOT=true and the secure boot installer,
booted on OVMF/AAVMF with the test's PK, KEK and db enrolled (virt-fw-vars); tampered,
unsigned and foreign-signed UKIs refused by that firmware; sbverify; two clones' bytes.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from project import doit, imager, node_events, statuses
from qemu import (
    REFUSED,
    TEST_ARGS,
    banner,
    blank_vars,
    enrolled_vars,
    secure_disk,
    secure_iso,
)
from realgraph import build, built, clone, sha256

from buildgraph import secureboot
from buildgraph.formats import efivar, uki

ARGS = f"IMAGER_ARGS={TEST_ARGS}"
BOTH = "PLATFORM=linux/amd64,linux/arm64"
ESP_OFFSET = 1 << 20  # the disk's first partition
STUB = "usr/lib/systemd/boot/efi/linux{}.efi.stub"
EFI = {"amd64": "x64", "arm64": "aa64"}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("keys") / "set"
    secureboot.generate(directory)
    return directory


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("other") / "set"
    secureboot.generate(directory, "other")
    return directory


# -- the key set ----------------------------------------------------------------------


@pytest.mark.parametrize("name", secureboot.VARIABLES)
def test_each_auth_file_is_signed_by_its_signer_as_openssl_reads_it(keys, name, tmp_path):
    parsed = efivar.parse((keys / f"{name}.auth").read_bytes())
    (tmp_path / "sig.der").write_bytes(efivar.content_info(parsed.signature))
    (tmp_path / "content").write_bytes(parsed.signed_bytes(name))
    signer = keys / f"{secureboot.SIGNER[name]}.crt"
    done = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "sig.der"),
         "-content", str(tmp_path / "content"), "-CAfile", str(signer), "-purpose", "any",
         "-out", "/dev/null"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (cert,) = parsed.certificates()
    own = (keys / f"{name}.crt").read_bytes()
    from cryptography import x509

    assert cert == x509.load_pem_x509_certificate(own)
    assert struct.unpack_from("<H", parsed.timestamp)[0] >= 2026


def test_a_changed_variable_no_longer_verifies(keys, tmp_path):
    data = bytearray((keys / "db.auth").read_bytes())
    data[-40] ^= 1  # inside the certificate of the value
    parsed = efivar.parse(bytes(data))
    (tmp_path / "sig.der").write_bytes(efivar.content_info(parsed.signature))
    (tmp_path / "content").write_bytes(parsed.signed_bytes("db"))
    done = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "sig.der"),
         "-content", str(tmp_path / "content"), "-CAfile", str(keys / "KEK.crt"),
         "-purpose", "any", "-out", "/dev/null"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode != 0


def test_keys_are_private_to_their_owner_and_a_set_is_never_overwritten(keys):
    for file in secureboot.FILES:
        mode = (keys / file.name).stat().st_mode & 0o777
        assert mode == (0o600 if file.private else 0o644), file.name
    with pytest.raises(secureboot.BuildgraphError, match="already holds"):
        secureboot.generate(keys)


def _broken(keys: Path, tmp_path: Path, name: str, how: str) -> Path:
    broken = shutil.copytree(keys, tmp_path / "broken")
    path = broken / name
    if how == "missing":
        path.unlink()
    elif how == "unreadable":
        path.unlink()
        path.mkdir()  # unreadable even for root, as a test runs
    else:
        path.write_bytes(b"-----BEGIN NONSENSE-----\n" + path.read_bytes()[40:])
    return broken


@pytest.mark.parametrize("how", ["missing", "unreadable", "garbled"])
@pytest.mark.parametrize("name", [f.name for f in secureboot.FILES if f.built_with])
def test_a_broken_key_directory_is_one_message_naming_the_file(keys, tmp_path, name, how):
    broken = _broken(keys, tmp_path, name, how)
    with pytest.raises(secureboot.KeysError) as raised:
        secureboot.check(broken)
    message = raised.value.message
    assert str(broken / name) in message
    assert {"missing": "is missing", "unreadable": "cannot be read", "garbled": "is not"}[how] in (
        message
    )
    assert "PRIVATE KEY" not in message and "MII" not in message


def test_a_signing_key_of_another_certificate_is_refused(keys, other_keys, tmp_path):
    mixed = shutil.copytree(keys, tmp_path / "mixed")
    shutil.copyfile(other_keys / secureboot.SIGNING_KEY, mixed / secureboot.SIGNING_KEY)
    with pytest.raises(secureboot.KeysError, match="is not the key of"):
        secureboot.check(mixed)


def test_files_no_build_reads_do_not_enter_the_identity(keys, tmp_path):
    copy = shutil.copytree(keys, tmp_path / "copy")
    before = secureboot.identity(copy)
    (copy / "PK.key").write_bytes(b"kept offline")
    assert secureboot.identity(copy) == before
    shutil.copyfile(keys / "KEK.auth", copy / "db.auth")
    assert secureboot.identity(copy) != before
    assert "PRIVATE" not in before and (keys / secureboot.SIGNING_KEY).read_text()[40:80] not in (
        before
    )


# -- the UKI writer, on the real stubs ---------------------------------------------------


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The systemd-stub of each arch, from the sdboot package image the graph builds."""
    base = tmp_path_factory.mktemp("stubs")
    repo = clone(base / "repo")
    build(repo, base / "cache", "pkg-sdboot", BOTH)
    found = {}
    for arch, name in EFI.items():
        tree = base / arch
        tree.mkdir()
        subprocess.run(["tar", "-xf", str(repo / f"_out/pkgs/sdboot-{arch}.tar"), "-C",
                        str(tree)], check=True)  # fmt: skip
        found[arch] = (tree / STUB.format(name)).read_bytes()
    return found


parts = st.lists(st.binary(max_size=9000), min_size=4, max_size=4)


@pytest.mark.slow
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(contents=parts, arch=st.sampled_from(sorted(EFI)))
def test_added_sections_read_back_page_aligned_after_the_stub_s(stubs, contents, arch):
    stub = stubs[arch]
    added = list(zip(uki.SECTIONS, contents, strict=True))
    image = uki.assemble(stub, added)
    assert uki.assemble(stub, added) == image
    own = uki.sections(stub)
    found = uki.sections(image)
    assert found[: len(own)] == own
    end = max(s.virtual_address + s.virtual_size for s in own)
    for section, (name, data) in zip(found[len(own) :], added, strict=True):
        assert section.name == name
        assert uki.section_data(image, name) == data
        assert section.virtual_address % 4096 == 0 and section.virtual_address >= end
        assert section.raw_offset % 512 == 0 and section.raw_size % 512 == 0
        end = section.virtual_address + section.virtual_size
    assert len(image) == found[-1].raw_offset + found[-1].raw_size
    headers = uki._headers(image)
    (size_of_image,) = struct.unpack_from("<I", image, headers.optional + 56)
    assert size_of_image >= end and size_of_image % headers.section_alignment == 0
    (stored,) = struct.unpack_from("<I", image, headers.optional + 64)
    zeroed = bytearray(image)
    struct.pack_into("<I", zeroed, headers.optional + 64, 0)
    assert stored == uki.checksum(zeroed)


@pytest.mark.slow
def test_objdump_reads_the_sections_the_writer_placed(stubs, tmp_path):
    image = uki.build(stubs["amd64"], b'NAME="x"\n', "console=ttyS0\n", b"initrd", b"kernel")
    (tmp_path / "uki.efi").write_bytes(image)
    listing = subprocess.run(["objdump", "-h", str(tmp_path / "uki.efi")], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    for section in uki.sections(image)[-4:]:
        row = next(line.split() for line in listing.splitlines() if f" {section.name} " in line)
        assert int(row[2], 16) == section.virtual_size
        assert int(row[3], 16) == section.virtual_address
        assert int(row[5], 16) == section.raw_offset
    assert uki.section_data(image, ".cmdline") == b"console=ttyS0"


# -- the build --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory, keys: Path) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("secureboot")
    repo = clone(base / "repo")
    cache = base / "cache"
    build(repo, cache, "secureboot-iso", "image-metal", BOTH, "SECUREBOOT=true",
          f"SECUREBOOT_KEYS={keys}", ARGS)  # fmt: skip
    build(repo, cache, "secureboot-installer-image", "PLATFORM=linux/amd64",
          f"SECUREBOOT_KEYS={keys}", ARGS)  # fmt: skip
    return repo, cache


def _vars(keys: Path, arch: str, tmp_path: Path) -> Path:
    return enrolled_vars(keys, arch, tmp_path / f"enrolled-{arch}.fd")


def _secure_banner(console: str) -> dict[str, str]:
    fields = banner(console)
    assert fields["secureboot"] == "1", fields
    assert "secureboot: Secure boot enabled" in console
    return fields


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_the_secure_boot_iso_boots_with_our_keys_enforced(tree, keys, arch, tmp_path):
    iso = tree[0] / "_out" / f"metal-{arch}-secureboot.iso"
    fields = _secure_banner(secure_iso(iso, arch, _vars(keys, arch, tmp_path), tmp_path))
    assert fields["arch"] == arch


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_the_secure_boot_disk_boots_with_our_keys_enforced(tree, keys, arch, tmp_path):
    disk = tree[0] / "_out" / "disks" / f"metal-{arch}-secureboot.raw"
    fields = _secure_banner(secure_disk(disk, arch, _vars(keys, arch, tmp_path), tmp_path))
    assert "buildgraph.poweroff=1" in fields["cmdline"]


def _uki(tree: tuple[Path, Path], arch: str) -> Path:
    return tree[0] / "_out" / f"metal-{arch}-secureboot-uki.efi"


def _unsigned(signed: Path, dest: Path, _keys: Path) -> None:
    subprocess.run(["sbattach", "--remove", str(dest)], check=True, capture_output=True)


def _foreign(signed: Path, dest: Path, other: Path) -> None:
    _unsigned(signed, dest, other)
    subprocess.run(["sbsign", "--key", str(other / secureboot.SIGNING_KEY), "--cert",
                    str(other / secureboot.SIGNING_CERT), "--output", str(dest), str(dest)],
                   check=True, capture_output=True)  # fmt: skip


def _flipped(signed: Path, dest: Path, _keys: Path) -> None:
    data = bytearray(dest.read_bytes())
    linux = next(s for s in uki.sections(data) if s.name == ".linux")
    data[linux.raw_offset + linux.virtual_size // 2] ^= 0x01
    dest.write_bytes(bytes(data))


def _with_loader(disk: Path, arch: str, loader: Path, dest: Path) -> Path:
    """A copy of ``disk`` whose ESP holds ``loader`` as the firmware's boot loader."""
    shutil.copyfile(disk, dest)
    name = f"::/EFI/BOOT/BOOT{EFI[arch].upper()}.EFI"
    subprocess.run(["mcopy", "-o", "-i", f"{dest}@@{ESP_OFFSET}", str(loader), name],
                   check=True, capture_output=True)  # fmt: skip
    return dest


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arch", "spoil"),
    [("amd64", _unsigned), ("amd64", _foreign), ("amd64", _flipped), ("arm64", _flipped)],
    ids=["amd64-unsigned", "amd64-other-key", "amd64-byte-flipped", "arm64-byte-flipped"],
)
def test_the_firmware_refuses_a_uki_it_cannot_trust(tree, keys, other_keys, arch, spoil,
                                                    tmp_path):  # fmt: skip
    bad = shutil.copyfile(_uki(tree, arch), tmp_path / "bad.efi")
    spoil(_uki(tree, arch), bad, other_keys)
    disk = _with_loader(tree[0] / "_out" / "disks" / f"metal-{arch}-secureboot.raw", arch, bad,
                        tmp_path / "disk.raw")  # fmt: skip
    console = secure_disk(disk, arch, _vars(keys, arch, tmp_path), tmp_path)
    assert REFUSED.search(console), console[-3000:]
    assert "booted " not in console


@pytest.mark.slow
def test_sbverify_accepts_the_uki_with_our_certificate_only(tree, keys, other_keys):
    for arch in EFI:
        signed = str(_uki(tree, arch))
        ours = subprocess.run(["sbverify", "--cert", str(keys / secureboot.SIGNING_CERT), signed],
                              capture_output=True, text=True, check=False)  # fmt: skip
        assert ours.returncode == 0, ours.stderr
        theirs = subprocess.run(["sbverify", "--cert", str(other_keys / "db.crt"), signed],
                                capture_output=True, text=True, check=False)  # fmt: skip
        assert theirs.returncode != 0


@pytest.mark.slow
def test_the_media_carry_the_enrollment_files(tree, keys, tmp_path):
    disk = tree[0] / "_out" / "disks" / "metal-amd64-secureboot.raw"
    listing = subprocess.run(["mdir", "-b", "-i", f"{disk}@@{ESP_OFFSET}", "::/loader/keys/auto"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    names = sorted(Path(line).name for line in listing.split())
    assert names == sorted(f"{v}.{ext}" for v in secureboot.VARIABLES for ext in ("auth", "cer"))
    subprocess.run(["mcopy", "-i", f"{disk}@@{ESP_OFFSET}", "::/loader/keys/auto/db.auth",
                    str(tmp_path / "db.auth")], check=True)  # fmt: skip
    assert (tmp_path / "db.auth").read_bytes() == (keys / "db.auth").read_bytes()


@pytest.mark.slow
def test_systemd_boot_enrolls_the_auth_files_and_the_disk_then_boots_secure(tree, tmp_path):
    """The .auth files, as the firmware itself takes them: systemd-boot in place of the
    UKI, told to enroll, writes PK, KEK and db from the disk's loader/keys/auto/ into a
    firmware in Setup Mode; the untouched disk then boots under Secure Boot."""
    repo, _cache = tree
    disk = repo / "_out" / "disks" / "metal-amd64-secureboot.raw"
    loader = tmp_path / "systemd-boot.efi"
    with loader.open("wb") as out:
        subprocess.run(["tar", "-xOf", str(repo / "_out/pkgs/sdboot-amd64.tar"),
                        "usr/lib/systemd/boot/efi/systemd-bootx64.efi"], stdout=out, check=True)
    enroller = _with_loader(disk, "amd64", loader, tmp_path / "enroll.raw")
    (tmp_path / "loader.conf").write_text("timeout 0\nsecure-boot-enroll force\n")
    subprocess.run(["mcopy", "-i", f"{enroller}@@{ESP_OFFSET}", str(tmp_path / "loader.conf"),
                    "::/loader/loader.conf"], check=True)  # fmt: skip
    first = secure_disk(enroller, "amd64", blank_vars("amd64"), tmp_path)
    assert "Enrolling secure boot keys from directory: \\loader\\keys\\auto" in first
    assert "Failed to write" not in first, first[-2000:]
    enrolled = shutil.copyfile(tmp_path / "vars-amd64.fd", tmp_path / "enrolled.fd")
    _secure_banner(secure_disk(disk, "amd64", enrolled, tmp_path))


def _secret_fragments(keys: Path) -> list[bytes]:
    """Pieces of the private keys that no output, cache file or log may hold: the
    private exponent and primes as bytes, and PEM lines past the public modulus."""
    from cryptography.hazmat.primitives import serialization

    pieces = []
    for file in secureboot.FILES:
        if file.private:
            data = (keys / file.name).read_bytes()
            lines = data.splitlines()[1:-1]
            pieces += [lines[len(lines) // 2], lines[-3]]
            numbers = serialization.load_pem_private_key(data, None).private_numbers()
            for secret in (numbers.d, numbers.p, numbers.q):
                pieces.append(secret.to_bytes(secret.bit_length() // 8 + 1, "big")[8:40])
    return pieces


@pytest.mark.slow
def test_no_private_key_byte_reaches_an_output_the_cache_or_the_log(tree, keys):
    repo, cache = tree
    args = ("uki-metal", "PLATFORM=linux/amd64", f"SECUREBOOT_KEYS={keys}", ARGS)
    assert doit(repo, cache, "forget", *args).returncode == 0
    again = doit(repo, cache, *args)
    assert again.returncode == 0, again.stderr
    events = [e for e in node_events(again.stderr) if e.get("node") == "uki-metal:amd64"]
    assert events and events[0]["status"] == "built"
    pieces = _secret_fragments(keys)
    texts = [again.stdout.encode(), again.stderr.encode()]
    for top in (repo / "_out", cache):
        for path in top.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                leaked = [p for p in pieces if p in data]
                assert not leaked, path
    for text in texts:
        assert not [p for p in pieces if p in text]


@pytest.mark.slow
def test_new_keys_re_sign_and_an_unread_file_changes_nothing(tree, keys, tmp_path):
    repo, cache = tree
    moved = shutil.copytree(keys, tmp_path / "same")
    args = ("uki-metal", "PLATFORM=linux/amd64", ARGS)
    (moved / "PK.key").write_bytes(b"kept offline")
    first = build(repo, cache, *args, f"SECUREBOOT_KEYS={moved}")
    assert built(first) == {"uki-metal:amd64"}  # the keys' path is an input, as all paths are
    assert built(build(repo, cache, *args, f"SECUREBOOT_KEYS={moved}")) == set()
    fresh = tmp_path / "fresh"
    secureboot.generate(fresh)
    assert built(build(repo, cache, *args, f"SECUREBOOT_KEYS={fresh}")) == {"uki-metal:amd64"}
    assert built(build(repo, cache, *args, f"SECUREBOOT_KEYS={keys}")) == set()  # as it was


@pytest.mark.slow
def test_a_missing_key_stops_the_build_before_anything_runs(tree, keys, tmp_path):
    repo, cache = tree
    broken = _broken(keys, tmp_path, secureboot.SIGNING_KEY, "missing")
    before = sorted(p.name for p in (repo / "_out").iterdir())
    done = doit(repo, cache, "-a", "secureboot-iso", "PLATFORM=linux/amd64",
                f"SECUREBOOT_KEYS={broken}", json_log=False)  # fmt: skip
    assert done.returncode != 0
    assert done.stderr.count("buildgraph: error:") == 1
    assert f"{broken / secureboot.SIGNING_KEY} is missing" in done.stderr
    assert "built " not in done.stderr
    assert sorted(p.name for p in (repo / "_out").iterdir()) == before
    unset = doit(repo, cache, "secureboot-iso", "PLATFORM=linux/amd64", "SECUREBOOT_KEYS=",
                 json_log=False)  # fmt: skip
    assert unset.returncode != 0 and "SECUREBOOT_KEYS is not set" in unset.stderr


@pytest.mark.slow
def test_the_secure_boot_installer_writes_the_secure_boot_disk(tree, tmp_path):
    repo, _cache = tree
    image = tmp_path / "dir"
    archive = repo / "_out" / "installer-amd64-secureboot.tar"
    subprocess.run(["skopeo", "copy", "-q", f"oci-archive:{archive}", f"dir:{image}"], check=True)
    root = tmp_path / "root"
    root.mkdir()
    for layer in json.loads((image / "manifest.json").read_text())["layers"]:
        blob = image / layer["digest"].removeprefix("sha256:")
        subprocess.run(["tar", "-xf", str(blob), "-C", str(root)], check=True)
    disk = tmp_path / "disk.raw"
    done = subprocess.run(
        ["python3", str(root / "usr/bin/installer"), "--root", str(root), "--arch", "amd64",
         "--disk", str(disk)], capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sha256(disk) == sha256(repo / "_out/disks/metal-amd64-secureboot.raw")


@pytest.mark.slow
def test_two_clones_sign_the_same_bytes(tree, keys, tmp_path):
    other = clone(tmp_path / "repo")
    build(other, tmp_path / "cache", "secureboot-iso", "image-metal", "secureboot-installer-image",
          "PLATFORM=linux/amd64", "SECUREBOOT=true", f"SECUREBOOT_KEYS={keys}", ARGS)  # fmt: skip
    for name in ("metal-amd64-secureboot-uki.efi", "metal-amd64-secureboot.iso",
                 "metal-amd64-secureboot.raw.zst", "disks/metal-amd64-secureboot.raw",
                 "installer-amd64-secureboot.tar"):  # fmt: skip
        assert sha256(other / "_out" / name) == sha256(tree[0] / "_out" / name), name


@pytest.mark.slow
@pytest.mark.parametrize(
    ("profile", "asset"),
    [("secureboot-iso", "metal-amd64-secureboot.iso"),
     ("secureboot-metal", "metal-amd64-secureboot.raw.zst"),
     ("secureboot-installer", "installer-amd64-secureboot.tar")],
)  # fmt: skip
def test_the_imager_s_secureboot_profiles_are_the_doit_builds(tree, keys, profile, asset):
    repo, cache = tree
    done = imager(repo, cache, profile, "--arch=amd64", "--secureboot-keys", str(keys),
                  *TEST_ARGS.split())  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert set(statuses(done.stderr).values()) == {"cached"}, done.stderr
    assert done.stdout.splitlines()[-1] == f"output asset path: {repo / '_out' / asset}"
    missing = imager(repo, cache, profile, "--arch=amd64", "--secureboot-keys", "/nonexistent")
    assert missing.returncode != 0
    assert "SECUREBOOT_KEYS /nonexistent: no such directory" in missing.stderr


@given(st.binary(max_size=4000))
@example(b"\xff\xff")  # a nonzero multiple of 0xFFFF: folds to 0xFFFF, not 0
@example(b"\0\0\0")
def test_the_checksum_is_the_word_by_word_folded_sum(data):
    padded = data + b"\0" * (len(data) % 2)
    total = 0
    for (word,) in struct.iter_unpack("<H", padded):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    assert uki.checksum(data) == (total + len(data)) & 0xFFFFFFFF
