"""Boot an image under qemu (TCG) and return what its serial console printed.

The OS powers off after its banner when the command line has ``buildgraph.poweroff=1``;
with ``panic=1`` and ``-no-reboot`` a kernel panic ends qemu too, so every boot ends.
"""

from __future__ import annotations

import re
import subprocess
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


def banner(console: str) -> dict[str, str]:
    """The banner's fields; fails with the console's tail when there is none."""
    found = BANNER.search(console)
    assert found, "no banner; console ended with:\n" + "\n".join(console.splitlines()[-40:])
    fields = {}
    for match in re.finditer(r'(\w[\w.]*)=("(?:[^"\\]|\\.)*"|\S*)', found.group(1)):
        value = match.group(2)
        fields[match.group(1)] = value[1:-1].replace('\\"', '"') if value[:1] == '"' else value
    return fields
