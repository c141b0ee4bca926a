"""Secure Boot steps: the signed unified kernel image (``uki``), the enrollment files
(``secureboot-enroll``) and the ISO that boots the UKI (``secureboot-iso``).

The firmware loads the signed UKI itself, as ``EFI/BOOT/BOOT<ARCH>.EFI``: there is no
boot loader to sign and keep in step, and the command line, sealed in the signed image,
cannot be edited at boot (systemd-stub ignores one given from outside under Secure
Boot). The UKI is assembled byte for byte (formats/uki.py) and signed with sbsign under
a clock frozen at params.epoch, so the same inputs and keys give the same bytes.

Every step here reads the key directory (params.keys, SECUREBOOT_KEYS) and has its
probe check it, so a missing or broken key stops the plan before anything runs, and
what enters the node key is the keys' digests (secureboot.identity), never their bytes.
The private key is read by sbsign from where it lies: it is never copied.

The ESP layout these steps share with the disk step lives in :func:`esp_files`; it is
stdlib-only, as the installer program (installer.pyz) runs the disk step too.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..engine.errors import StepFailedError
from ..engine.step import ParamError, Probe, Role, StepContext, clean_env, step
from ..formats import untar
from . import check_epoch

EFI_NAME = {"amd64": "x64", "arm64": "aa64"}
"""The EFI arch names: systemd-stub's ``linux<name>.efi.stub``, ``BOOT<NAME>.EFI``."""
STUB = "usr/lib/systemd/boot/efi/linux{}.efi.stub"
KEYS_DIR = "loader/keys/auto"
"""Where the ESP carries the enrollment files, as systemd-boot looks for them."""
NO_KEYS = (
    "SECUREBOOT_KEYS is not set: secure boot assets are signed with your keys;"
    " generate a set with `buildgraph secureboot keys DIR`, then give SECUREBOOT_KEYS=DIR"
    " (the imager: --secureboot-keys DIR)"
)


def loader_name(arch: str) -> str:
    return f"BOOT{EFI_NAME[arch].upper()}.EFI"


def esp_files(uki: Path, enroll: Path, work: Path, arch: str) -> dict[str, Path]:
    """The ESP of a secure boot medium: the signed UKI where firmware looks for a loader,
    and the enrollment files of ``enroll`` (a secureboot-enroll tar) in :data:`KEYS_DIR`."""
    keys = work / "enroll"
    untar.extract(enroll, keys)
    files = {f"EFI/BOOT/{loader_name(arch)}": uki}
    for path in sorted((keys / KEYS_DIR).iterdir()):
        files[f"{KEYS_DIR}/{path.name}"] = path
    return files


def _keys(params: Mapping[str, Any]) -> str:
    keys = params.get("keys")
    if not isinstance(keys, str):
        raise ParamError("keys", "params.keys must be a string, e.g. ${SECUREBOOT_KEYS}")
    return keys


def _check(params: Mapping[str, Any]) -> None:
    check_epoch(params)
    keys = _keys(params)
    if not keys:
        raise ParamError("keys", NO_KEYS)


def _probe(probe: Probe) -> str:
    from .. import secureboot

    keys = _keys(probe.params)
    if not keys:
        raise secureboot.KeysError(NO_KEYS)
    return secureboot.identity(keys)


def _signing_time(epoch: int) -> str:
    """faketime's absolute form, which stops the clock there (``@`` would let it run)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def _check_uki(params: Mapping[str, Any]) -> None:
    _check(params)
    release = params.get("os_release")
    if not isinstance(release, dict) or not release:
        raise ParamError("os_release", "params.os_release must map os-release keys to values")


@step("uki", version=1, tools=("faketime", "sbsign", "sbverify"), check=_check_uki,
      probe=_probe,
      inputs=[Role("kernel"), Role("initramfs"), Role("pkg-sdboot"),
              Role("cmdline-%", optional=True), Role("iso-cmdline", optional=True)])  # fmt: skip
def uki(ctx: StepContext) -> None:
    """Assemble systemd-stub with os-release, the command line (a platform's, or the
    ISO's with META), initramfs and kernel; sign it with the UKI signing key; check the
    signature with its certificate."""
    from ..formats import uki as pe
    from .rootfs import os_release

    assert ctx.arch is not None
    (out,) = ctx.outputs
    work = ctx.out_dir.parent
    keys = Path(ctx.params["keys"])
    package = work / "sdboot"
    untar.extract(ctx.input("pkg-sdboot"), package)
    stub = package / STUB.format(EFI_NAME[ctx.arch])
    if not stub.is_file():
        raise StepFailedError(
            f"the systemd-boot package has no {STUB.format(EFI_NAME[ctx.arch])}",
            hint="PKG_SDBOOT must carry systemd-boot-efi's stubs",
        )
    cmdline = ctx.optional_input("cmdline-%") or ctx.input("iso-cmdline")
    try:
        image = pe.build(stub.read_bytes(), os_release(ctx.params["os_release"]).encode(),
                         cmdline.read_text(),
                         ctx.input("initramfs").read_bytes(),
                         ctx.input("kernel").read_bytes())  # fmt: skip
    except pe.PEError as err:
        raise StepFailedError(f"{stub.name}: {err}") from None
    unsigned = work / "unsigned.efi"
    unsigned.write_bytes(image)
    from ..secureboot import SIGNING_CERT, SIGNING_KEY

    env = clean_env(TZ="UTC")
    signed = ctx.output(out)
    ctx.call(["faketime", "-f", _signing_time(int(ctx.params["epoch"])),
              "sbsign", "--key", str(keys / SIGNING_KEY), "--cert", str(keys / SIGNING_CERT),
              "--output", str(signed), str(unsigned)], env=env)  # fmt: skip
    ctx.call(["sbverify", "--cert", str(keys / SIGNING_CERT), str(signed)], env=env)


@step("secureboot-enroll", version=1, check=_check, probe=_probe)
def secureboot_enroll(ctx: StepContext) -> None:
    """The certificates (DER, as firmware setup menus take them) and signed variables
    for enrollment, as a tar of loader/keys/auto/."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from ..oci.layout import tar_from_directory
    from ..secureboot import VARIABLES

    (out,) = ctx.outputs
    keys = Path(ctx.params["keys"])
    tree = ctx.out_dir.parent / "enroll"
    auto = tree / KEYS_DIR
    auto.mkdir(parents=True)
    for name in VARIABLES:
        shutil.copyfile(keys / f"{name}.auth", auto / f"{name}.auth")
        cert = x509.load_pem_x509_certificate((keys / f"{name}.crt").read_bytes())
        (auto / f"{name}.cer").write_bytes(cert.public_bytes(Encoding.DER))
    for path in [tree, *tree.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    tar_from_directory(tree, ctx.output(out), int(ctx.params["epoch"]))


def _check_iso(params: Mapping[str, Any]) -> None:
    from .iso import check_volume

    check_epoch(params)
    check_volume(params)


@step("secureboot-iso", version=1, tools=("mkfs.vfat", "mmd", "mcopy", "xorriso"),
      check=_check_iso, inputs=[Role("iso-uki"), Role("secureboot-enroll")])  # fmt: skip
def secureboot_iso(ctx: StepContext) -> None:
    """An ISO whose El Torito EFI image is an ESP holding the signed UKI and the
    enrollment files; UEFI only, as Secure Boot is."""
    from .grub import make_esp
    from .iso import pin_times, xorriso_base

    assert ctx.arch is not None
    (out,) = ctx.outputs
    epoch = int(ctx.params["epoch"])
    work = ctx.out_dir.parent
    env = clean_env(SOURCE_DATE_EPOCH=str(epoch))
    tree = work / "iso"
    (tree / "boot").mkdir(parents=True)
    files = esp_files(ctx.input("iso-uki"), ctx.input("secureboot-enroll"), work, ctx.arch)
    size_kib = sum(p.stat().st_size for p in files.values()) // 1024 + 1024
    make_esp(ctx, tree / "boot" / "efi.img", files, env, epoch, size_kib,
             volume_id="0xb0071500", label="EFIBOOT")  # fmt: skip
    pin_times(tree, epoch)
    ctx.run([*xorriso_base(ctx.output(out), ctx.params["volume"], epoch),
             "-e", "boot/efi.img", "-no-emul-boot", "-efi-boot-part", "--efi-boot-image",
             str(tree)], env=env)  # fmt: skip
