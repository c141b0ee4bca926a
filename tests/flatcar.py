"""A Flatcar-like nine-partition disk, built as a user could without root.

truncate and sgdisk for the table; mkfs.vfat and mtools for EFI-SYSTEM, mksquashfs for
USR-A, mke2fs -d for OEM and ROOT; dd puts each filesystem at its offset. What each
filesystem holds is a Spec. Shared by the tests of lint-image and edit-image.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1 << 20
SECTOR = 512
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
BIOS = "21686148-6449-6E6F-744E-656564454649"
USR = "5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6"
ROOT = "3884DD41-8582-4404-B9A8-E9B84F2DF50E"
LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
RESERVED = "C95DC21A-DF0E-4340-8D7B-26CBFA9A03E0"
# Flatcar's nine partitions: (label, type, MiB); ROOT takes what is left of the disk.
FLATCAR = [
    ("EFI-SYSTEM", ESP, 8), ("BIOS-BOOT", BIOS, 1), ("USR-A", USR, 8), ("USR-B", USR, 4),
    ("ROOT-C", ROOT, 1), ("OEM", LINUX, 8), ("OEM-CONFIG", RESERVED, 1),
    ("coreos-reserved", RESERVED, 1), ("ROOT", ROOT, 0),
]  # fmt: skip
DISK_MIB = 64
SHADOW = (
    "root:*:19000:0:99999:7:::\ncore:!:19000:0:99999:7:::\nnobody:!!:19000::::::\n"
    "svc:!*:19000::::::\nlocked:!$6$salt$hash:19000::::::\n"
)
MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1"}


@dataclass
class Spec:
    """What each filesystem of the disk holds: path -> text, or (text, mode); a path
    ending in / is a directory (its value its mode), "->x" a symlink to x."""

    esp: dict[str, str] = field(default_factory=lambda: {
        "flatcar/first_boot": "", "EFI/boot/bootx64.efi": "MZ loader"})  # fmt: skip
    oem: dict[str, object] = field(default_factory=lambda: {
        "grub.cfg": "set oem_id=qemu\n", "base/base.ign": "{}\n"})  # fmt: skip
    root: dict[str, object] = field(default_factory=lambda: {
        "etc/os-release": "ID=flatcar\n",
        "etc/shadow": (SHADOW, 0o640),
        "etc/passwd": "root:x:0:0::/root:/bin/bash\ncore:x:500:500::/home/core:/bin/bash\n",
        "etc/systemd/system/multi-user.target.wants/my.service":
            "->/etc/systemd/system/my.service",
        "etc/systemd/system/my.service": "[Service]\nExecStart=/opt/bin/tool\n",
        "home/core/.ssh/": 0o700,
        "root/": 0o700,
        "tmp/": 0o1777,
        "var/tmp/": 0o1777,
        "var/lib/systemd/": 0o755,
        "opt/bin/tool": ("#!/bin/sh\n", 0o755),
        "oem/": 0o755,
        "boot/": 0o755,
    })  # fmt: skip


def tree(dest: Path, files: dict[str, object]) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    modes = []
    for name, value in files.items():
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            path.mkdir(exist_ok=True)
            modes.append((path, value))
        elif isinstance(value, str) and value.startswith("->"):
            path.symlink_to(value[2:])
        else:
            text, mode = value if isinstance(value, tuple) else (value, 0o644)
            path.write_text(text)
            modes.append((path, mode))
    for path, mode in modes:
        os.chmod(path, mode)  # after the files, so a 0o700 directory still takes them
    return dest


def run(*argv: str | Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(arg) for arg in argv], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False)  # fmt: skip
    assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
    return done.stdout


def place(disk: Path, fs: Path, first_mib: int) -> None:
    run("dd", f"if={fs}", f"of={disk}", "bs=1M", f"seek={first_mib}", "conv=notrunc,sparse",
         "status=none")  # fmt: skip


def flatcar_disk(
    where: Path, spec: Spec | None = None, esp_names: bool = True, disk_mib: int = DISK_MIB
) -> Path:
    """The Flatcar-like disk of ``disk_mib`` MiB holding ``spec``'s files, at
    where/disk.raw."""
    spec = spec or Spec()
    where.mkdir(parents=True, exist_ok=True)
    disk = where / "disk.raw"
    run("truncate", "-s", f"{disk_mib}M", disk)
    args, first, starts = [], 1, {}
    for number, (label, type_guid, size) in enumerate(FLATCAR, 1):
        end = f"+{size}M" if size else "0"
        args += ["-n", f"{number}:{first * MIB // SECTOR}:{end}", "-t", f"{number}:{type_guid}",
                 "-c", f"{number}:{label}"]  # fmt: skip
        starts[label] = first
        first += size
    run("sgdisk", *args, disk)
    root_mib = disk_mib - starts["ROOT"] - 1  # the backup table takes the last MiB's end
    esp = where / "esp.img"
    run("mkfs.vfat", "-n", "EFI-SYSTEM", "-C", esp, str(FLATCAR[0][2] * 1024))
    for name, text in spec.esp.items():
        (where / "esp-file").write_text(text)
        for depth in range(1, name.count("/") + 1):
            parent = "::/" + "/".join(name.split("/")[:depth])
            subprocess.run(["mmd", "-i", str(esp), parent], capture_output=True, env={
                **os.environ, **MTOOLS_ENV}, check=False)  # fmt: skip
        run("mcopy", "-i", esp, where / "esp-file", f"::/{name}", env=MTOOLS_ENV)
    place(disk, esp, starts["EFI-SYSTEM"])
    usr = tree(where / "usr", {"lib/os-release": "ID=flatcar\n"})
    run("mksquashfs", usr, where / "usr.img", "-quiet", "-noappend", "-all-root")
    place(disk, where / "usr.img", starts["USR-A"])
    for label, files, size in (("OEM", spec.oem, 8), ("ROOT", spec.root, root_mib)):
        image = where / f"{label}.img"
        run("mke2fs", "-q", "-F", "-t", "ext4", "-L", label, "-d",
             tree(where / label, files), image, f"{size}M")  # fmt: skip
        place(disk, image, starts[label])
    return disk


def with_files(**parts: dict[str, object]) -> Spec:
    spec = Spec()
    for part, files in parts.items():
        getattr(spec, part).update(files)
    return spec
