"""Boot an image under qemu (TCG) and return what its serial console printed.

The OS powers off after its banner when the command line has ``buildgraph.poweroff=1``;
with ``panic=1`` and ``-no-reboot`` a kernel panic ends qemu too, so every boot ends.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

OVMF = "/usr/share/ovmf/OVMF.fd"
AAVMF = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"
BANNER = re.compile(r"^booted (.*)$", re.MULTILINE)
TEST_ARGS = "--extra-kernel-arg=buildgraph.poweroff=1 --extra-kernel-arg=panic=1"


def boot_iso(iso: Path, arch: str, firmware: str, cpu: str | None = None) -> str:
    """Console output of booting ``iso``; firmware is ``bios`` or ``uefi``."""
    if arch == "amd64":
        return _boot(["-cdrom", str(iso)], arch, firmware, cpu)
    return _boot(["-device", "virtio-scsi-pci",
                  "-drive", f"if=none,id=cd,format=raw,media=cdrom,readonly=on,file={iso}",
                  "-device", "scsi-cd,drive=cd"], arch, firmware, cpu)  # fmt: skip


def boot_disk(disk: Path, arch: str, firmware: str, fmt: str = "raw") -> str:
    """Console output of booting the disk image ``disk`` (read-only, as a virtio disk)."""
    drive = f"if=virtio,format={fmt},readonly=on,file={disk}"
    return _boot(["-drive", drive], arch, firmware, None)


def _boot(media: list[str], arch: str, firmware: str, cpu: str | None) -> str:
    if arch == "amd64":
        argv = ["qemu-system-x86_64", "-m", "1024", "-cpu", cpu or "max", *media]
        if firmware == "uefi":
            argv += ["-bios", OVMF]
    else:
        assert firmware == "uefi", "arm64 boots only with UEFI"
        argv = ["qemu-system-aarch64", "-M", "virt", "-cpu", cpu or "cortex-a72", "-m", "1024",
                "-bios", AAVMF, *media]  # fmt: skip
    argv += ["-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot"]
    done = subprocess.run(argv, capture_output=True, timeout=600, check=False)
    return done.stdout.decode(errors="replace").replace("\r", "")


# -- Secure Boot: firmware that enforces it, with a test's keys enrolled ------------------

SECURE_CODE = {"amd64": "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
               "arm64": "/usr/share/AAVMF/AAVMF_CODE.fd"}  # fmt: skip
VARS_TEMPLATE = {"amd64": "/usr/share/OVMF/OVMF_VARS_4M.fd",
                 "arm64": "/usr/share/AAVMF/AAVMF_VARS.ms.fd"}  # fmt: skip
REFUSED = re.compile(r"Access Denied|Security Violation")
OWNER = "6b2d7f1e-0000-4000-8000-62756c647068"


def enrolled_vars(keys: Path, arch: str, dest: Path) -> Path:
    """A variable store with the PK, KEK and db certificates of ``keys`` enrolled and
    Secure Boot on, made offline by virt-fw-vars (virt-firmware). AAVMF's blank store
    is unformatted: start from the Microsoft one, with its keys deleted."""
    tool = Path(sys.executable).with_name("virt-fw-vars")
    argv = [str(tool), "-i", VARS_TEMPLATE[arch]]
    if arch == "arm64":
        argv += ["-d", "PK", "-d", "KEK", "-d", "db", "-d", "dbx"]
    argv += ["--set-pk", OWNER, str(keys / "PK.crt"), "--add-kek", OWNER, str(keys / "KEK.crt"),
             "--add-db", OWNER, str(keys / "db.crt"), "--secure-boot", "-o", str(dest)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return dest


def secure_boot(media: list[str], arch: str, variables: Path, scratch: Path) -> str:
    """Console output of booting ``media`` on firmware that enforces Secure Boot with the
    store ``variables`` (a copy, which the firmware writes to, left at
    ``scratch/vars-<arch>.fd``). The run ends when the OS powers off or the machine
    resets, or once the firmware has refused the image."""
    store = shutil.copyfile(variables, scratch / f"vars-{arch}.fd")
    flash = ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={SECURE_CODE[arch]}",
             "-drive", f"if=pflash,format=raw,unit=1,file={store}"]  # fmt: skip
    if arch == "amd64":
        argv = ["qemu-system-x86_64", "-machine", "q35,smm=on", "-cpu", "max", "-m", "1024",
                "-global", "driver=cfi.pflash01,property=secure,value=on",
                "-global", "ICH9-LPC.disable_s3=1", *flash, *media]  # fmt: skip
    else:
        argv = ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-m", "1024",
                *flash, *media]  # fmt: skip
    argv += ["-nic", "none", "-display", "none", "-serial", "stdio", "-monitor", "none",
             "-no-reboot"]  # fmt: skip
    return _run_until(argv, REFUSED)


def secure_disk(disk: Path, arch: str, variables: Path, scratch: Path) -> str:
    return secure_boot(["-drive", f"if=virtio,format=raw,readonly=on,file={disk}"], arch,
                       variables, scratch)  # fmt: skip


def blank_vars(arch: str) -> Path:
    """The firmware's own empty store: Setup Mode, no keys, Secure Boot off."""
    assert arch == "amd64", "AAVMF's blank store is unformatted"
    return Path(VARS_TEMPLATE[arch])


def secure_iso(iso: Path, arch: str, variables: Path, scratch: Path) -> str:
    if arch == "amd64":
        return secure_boot(["-cdrom", str(iso)], arch, variables, scratch)
    return secure_boot(["-device", "virtio-scsi-pci",
                        "-drive", f"if=none,id=cd,format=raw,media=cdrom,readonly=on,file={iso}",
                        "-device", "scsi-cd,drive=cd"], arch, variables, scratch)  # fmt: skip


def _run_until(argv: list[str], stop: re.Pattern[str], timeout: float = 600) -> str:
    """Run qemu until it exits, or until a line matching ``stop`` (and what follows it
    within a few seconds) has been printed; its console output."""
    import selectors
    import time

    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=1):
                continue
            chunk = process.stdout.read1(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            if stop.search(b"".join(chunks).decode(errors="replace")):
                deadline = min(deadline, time.monotonic() + 3)
    process.kill()
    process.wait()
    return b"".join(chunks).decode(errors="replace").replace("\r", "")


def banner(console: str) -> dict[str, str]:
    """The banner's fields; fails with the console's tail when there is none."""
    found = BANNER.search(console)
    assert found, "no banner; console ended with:\n" + "\n".join(console.splitlines()[-40:])
    fields = {}
    for match in re.finditer(r'(\w[\w.]*)=("(?:[^"\\]|\\.)*"|\S*)', found.group(1)):
        value = match.group(2)
        fields[match.group(1)] = value[1:-1].replace('\\"', '"') if value[:1] == '"' else value
    return fields
