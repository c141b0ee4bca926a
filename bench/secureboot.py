"""secureboot-iso against the bare tools: objcopy, sbsign, mtools and xorriso as ``sh``.

Why this exists: a secure boot ISO is a UKI (the stub with os-release, command line,
initramfs and kernel as sections), signed, in an ESP, in an ISO. buildgraph assembles
the PE in Python and signs under a frozen clock, so that the bytes are reproducible; the
usual way is objcopy and a bare sbsign. This script measures, in one run, what the
engine and the reproducible writer cost against that, on the edit that makes a
developer rebuild it: a kernel argument.

Set-up, not timed: the checkout is copied to ``_work/secureboot/clone``; a key set is
made there (``buildgraph secureboot keys``); a warm-up ``doit secureboot-iso
PLATFORM=linux/amd64`` builds the kernel, initramfs, systemd-stub package and enrollment
files, which neither peer rebuilds.

Rounds (``--repeat``), alternating which peer goes first, each with a new argument
``x=<n>``:

* buildgraph: ``doit secureboot-iso IMAGER_ARGS=--extra-kernel-arg=x=<n>``, wall clock;
  it must build exactly cmdline-metal, iso-cmdline, iso-uki and secureboot-iso;
* raw: one ``sh -eu`` script, reading the same kernel, initramfs, stub and enrollment
  files from the clone's ``_out/``: the command line written with ``printf``, the UKI by
  ``objcopy --add-section/--change-section-vma`` at the addresses the step uses, ``sbsign``
  (not frozen: the usual way), ``mkfs.vfat``/``mmd``/``mcopy`` of the ESP, ``xorriso``.

After the rounds, untimed: ``sbverify --cert`` accepts both UKIs, and their four
sections hold the same bytes. Then the no-op: ``doit secureboot-iso`` with nothing to
do, median of ``--repeat``.

Usage::

    .venv/bin/python bench/secureboot.py [--repeat 5]

It writes its section of BENCHMARKS.md. amd64 only: this host's objcopy has no aarch64
PE target.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from checkout import copy_checkout
from common import CLEAN_ENV, WORK, exclusive, host, revision, say, write_section

HERE = WORK / "secureboot"
FIXED = {"TAG": "v1.0.0", "SOURCE_DATE_EPOCH": "1700000000", "PLATFORM": "linux/amd64"}
BEGIN, END = "<!-- bench/secureboot.py -->", "<!-- /bench/secureboot.py -->"
REBUILT = {"cmdline-metal:amd64", "iso-cmdline:amd64", "iso-uki:amd64", "secureboot-iso:amd64"}
STUB = "usr/lib/systemd/boot/efi/linuxx64.efi.stub"


def doit(root: Path, cache: Path, *args: str) -> tuple[float, dict[str, dict]]:
    env = {"PATH": os.environ["PATH"], "HOME": str(HERE), "BUILDGRAPH_LOG": "json",
           "BUILDGRAPH_CACHE": str(cache), "PYTHONPATH": str(root), **FIXED,
           "SECUREBOOT_KEYS": str(HERE / "keys")}  # fmt: skip
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "doit", "secureboot-iso", *args], cwd=root,
                          capture_output=True, text=True, check=False, env=env)  # fmt: skip
    wall = time.monotonic() - started
    if done.returncode:
        raise SystemExit(done.stderr[-4000:])
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    return wall, {e["node"]: e for e in events if e.get("event") == "node"}


def raw_script(root: Path, work: Path, cmdline: str) -> str:
    """The raw peer: the same work as the four rebuilt nodes, with the bare tools."""
    sys.path.insert(0, str(root))
    from buildgraph.formats import uki
    from buildgraph.secureboot import SIGNING_CERT, SIGNING_KEY

    out = root / "_out"
    stub = work / "stub.efi"
    subprocess.run(["tar", "-xOf", str(out / "pkgs/sdboot-amd64.tar"), STUB],
                   stdout=stub.open("wb"), check=True)  # fmt: skip
    release = out.parent / "release"  # os-release, as the step writes it from targets/
    release.write_text('NAME="buildgraph"\nID="buildgraph"\nVERSION_ID="v1.0.0"\n'
                       'PRETTY_NAME="buildgraph v1.0.0"\n')  # fmt: skip
    parts = {".osrel": release, ".cmdline": work / "cmdline",
             ".initrd": out / "initramfs-amd64.xz", ".linux": out / "vmlinuz-amd64"}  # fmt: skip
    sizes = {".cmdline": len(cmdline)}
    address = max(s.virtual_address + s.virtual_size for s in uki.sections(stub.read_bytes()))
    objcopy = ["objcopy"]
    for name in uki.SECTIONS:
        address = -(-address // uki.PAGE) * uki.PAGE
        objcopy += ["--add-section", f"{name}={parts[name]}",
                    "--change-section-vma", f"{name}={address:#x}"]  # fmt: skip
        address += sizes.get(name) or parts[name].stat().st_size
    keys = HERE / "keys"
    enroll = work / "enroll"
    enroll.mkdir(exist_ok=True)
    enroll_tar = out / "secureboot-enroll.tar"
    subprocess.run(["tar", "-xf", str(enroll_tar), "-C", str(enroll)], check=True)
    q = " ".join
    return "\n".join([
        f"cd {work}",
        "rm -rf iso esp.img uki.efi signed.efi",
        f"printf '%s' '{cmdline}' > cmdline",
        q([*objcopy, str(stub), "uki.efi"]),
        f"sbsign --key {keys / SIGNING_KEY} --cert {keys / SIGNING_CERT} --output signed.efi"
        " uki.efi 2>/dev/null",
        "mkdir -p iso/boot",
        "size=$(( ($(stat -c %s signed.efi) + 65536) / 1024 + 1024 ))",
        "mkfs.vfat --invariant -i 0xb0071500 -n EFIBOOT -C iso/boot/efi.img $size >/dev/null",
        "mmd -i iso/boot/efi.img ::/EFI ::/EFI/BOOT ::/loader ::/loader/keys ::/loader/keys/auto",
        "mcopy -i iso/boot/efi.img signed.efi ::/EFI/BOOT/BOOTX64.EFI",
        "for f in enroll/loader/keys/auto/*; do mcopy -i iso/boot/efi.img $f"
        " ::/loader/keys/auto/; done",
        "xorriso -as mkisofs -o raw.iso -r -J -V BUILDGRAPH -c boot/boot.cat -e boot/efi.img"
        " -no-emul-boot -efi-boot-part --efi-boot-image iso 2>/dev/null",
    ])  # fmt: skip


def run_raw(script: str) -> float:
    started = time.monotonic()
    subprocess.run(["sh", "-euc", script], check=True, env=CLEAN_ENV)
    return time.monotonic() - started


def check_same_sections(built: Path, raw: Path, keys: Path) -> None:
    from buildgraph.formats import uki
    from buildgraph.secureboot import SIGNING_CERT

    for path in (built, raw):
        subprocess.run(["sbverify", "--cert", str(keys / SIGNING_CERT), str(path)], check=True,
                       capture_output=True)  # fmt: skip
    ours, theirs = built.read_bytes(), raw.read_bytes()
    for name in uki.SECTIONS:
        if uki.section_data(ours, name) != uki.section_data(theirs, name):
            raise SystemExit(f"the raw UKI's {name} differs from the step's")


def measure(repeat: int) -> list[str]:
    shutil.rmtree(HERE, ignore_errors=True)
    root = copy_checkout(HERE / "clone")
    cache = HERE / "cache"
    subprocess.run([sys.executable, "-m", "buildgraph.cli", "secureboot", "keys",
                    str(HERE / "keys")], check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(root)})  # fmt: skip
    say("warm-up: kernel, initramfs, stub and enrollment files (not timed)")
    doit(root, cache)
    work = HERE / "raw"
    work.mkdir()
    ours, raws = [], []
    cmdline = ""
    for n in range(repeat):
        arg = f"IMAGER_ARGS=--extra-kernel-arg=x={n}"
        build_first = n % 2 == 0
        if not build_first:
            line = (root / "_out/cmdline-metal-amd64").read_text().strip().rsplit(" x=", 1)[0]
            raws.append(run_raw(raw_script(root, work, f"{line} x={n}")))
        wall, events = doit(root, cache, arg)
        built = {label for label, e in events.items() if e["status"] == "built"}
        if built != REBUILT:
            raise SystemExit(f"round {n}: built {sorted(built)}, not {sorted(REBUILT)}")
        ours.append(wall)
        cmdline = (root / "_out/iso-cmdline-amd64").read_text().strip()
        if build_first:
            raws.append(run_raw(raw_script(root, work, cmdline)))
        say(f"round {n}: buildgraph {ours[-1]:.2f} s, raw {raws[-1]:.2f} s")
    run_raw(raw_script(root, work, cmdline))
    check_same_sections(root / "_out/iso-uki-amd64.efi", work / "signed.efi", HERE / "keys")
    noops = [doit(root, cache, f"IMAGER_ARGS=--extra-kernel-arg=x={repeat - 1}")[0]
             for _ in range(repeat)]  # fmt: skip
    iso = (root / "_out/metal-amd64-secureboot.iso").stat().st_size / 2**20
    ours_s, raw_s = statistics.median(ours), statistics.median(raws)
    return [
        f"| kernel arg changed: 4 nodes (cmdline, UKI, sign, ESP, ISO) | {ours_s:.2f}"
        f" | {raw_s:.2f} | {ours_s / raw_s:.2f} |",
        f"| no-op `doit secureboot-iso` | {statistics.median(noops):.2f} | | |",
        "",
        f"ISO: {iso:.1f} MiB. Both UKIs pass `sbverify --cert`; their .osrel, .cmdline,"
        " .initrd and .linux hold the same bytes.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="rounds (default 5)")
    args = parser.parse_args()
    with exclusive():
        rows = measure(args.repeat)
    section = "\n".join([
        "## Secure Boot: secureboot-iso against objcopy, sbsign, mtools, xorriso"
        " (bench/secureboot.py)",
        "",
        f"`.venv/bin/python bench/secureboot.py --repeat {args.repeat}` at {revision()},"
        f" on {host()}; amd64; medians.",
        "",
        "| run | buildgraph (s) | raw sh (s) | ratio |",
        "|---|---:|---:|---:|",
        *rows,
    ])  # fmt: skip
    write_section(BEGIN, END, section)
    print(section)


if __name__ == "__main__":
    main()
