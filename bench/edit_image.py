"""edit-image against the bare tools: dd, debugfs and qemu-img as ``sh`` (and guestfish).

Why this exists: customizing a built image (the seed's Flatcar recipe: OEM's grub.cfg,
files in ROOT) is usually a loop mount as root, or libguestfs, which boots a VM. Without
either, the bare way is to dd a partition out, write it with debugfs, and dd it back.
``buildgraph edit-image`` does that, and on top plans every edit before writing, runs
fsck on each edited filesystem, pins every time to an epoch and writes the output
atomically. This measures, in one run, what that costs against the bare tools.

Set-up, not timed: the Flatcar-like disk of tests/flatcar.py, 1 GiB with 64 MiB of data
in ROOT, as raw and as qcow2, in ``_work/edit_image/``.

Rounds (``--repeat``), alternating which peer goes first, for each input format:

* buildgraph: ``buildgraph edit-image IN --partition OEM --add grub.cfg:/grub.cfg
  --partition ROOT --add`` three files (a unit, its config, a tool in a new /opt/bin),
  ``-o OUT`` in the input's format, wall clock of the command;
* raw: one ``sh -eu`` script doing the same: ``qemu-img convert`` to raw for a qcow2
  input (else ``cp --sparse=always``), per partition ``dd conv=sparse`` out, one
  ``debugfs -w -f`` script, ``dd conv=notrunc,sparse`` back, and ``qemu-img convert``
  to qcow2 again for a qcow2 input;
* guestfish, when libguestfs can start its appliance here (a kernel in /boot, which a
  container lacks until linux-image-cloud-amd64 is installed): ``cp --sparse=always``,
  then ``guestfish --rw -a OUT`` with ``mount``/``upload``/``mkdir-p`` per partition.

After the rounds, untimed: debugfs reads the same grub.cfg and tool from both outputs.

Usage::

    .venv/bin/python bench/edit_image.py [--repeat 5]

It writes its section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from common import CLEAN_ENV, WORK, exclusive, host, revision, say, write_section
from flatcar import Spec, flatcar_disk

HERE = WORK / "edit_image"
BEGIN, END = "<!-- bench/edit_image.py -->", "<!-- /bench/edit_image.py -->"
DISK_MIB = 1024
FILES = {  # name in src/ -> (partition, destination)
    "grub.cfg": ("OEM", "/grub.cfg"),
    "x.service": ("ROOT", "/etc/systemd/system/x.service"),
    "x.conf": ("ROOT", "/etc/x.conf"),
    "tool": ("ROOT", "/opt/bin/tool"),
}
NEW_DIRS = {"ROOT": ["/opt/bin"]}
FORMS = ("raw", "qcow2")
GUESTFS_ENV = {"LIBGUESTFS_BACKEND": "direct", "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}
"""libguestfs' appliance without libvirt, and under TCG: KVM here is nested and aborts
its -cpu max (``failed to set MSR 0x10a``)."""


def prepare() -> tuple[dict[str, Path], Path, dict[str, tuple[int, int]]]:
    """The inputs by format, the source files' directory, and each partition's
    (first MiB, MiB)."""
    shutil.rmtree(HERE, ignore_errors=True)
    spec = Spec()
    spec.root["var/lib/filler"] = "x" * (64 << 20)
    disk = flatcar_disk(HERE / "disk", spec, disk_mib=DISK_MIB)
    qcow2 = HERE / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(disk), str(qcow2)], check=True)
    src = HERE / "src"
    src.mkdir()
    (src / "grub.cfg").write_text('set linux_append="flatcar.autologin console=ttyS0"\n')
    (src / "x.service").write_text("[Service]\nExecStart=/opt/bin/tool\n")
    (src / "x.conf").write_text("level=3\n")
    (src / "tool").write_bytes(b"#!/bin/sh\n" + b"# padding\n" * 20000)
    sys.path.insert(0, str(HERE.parents[2]))
    from buildgraph.diskimage import gpt

    extents = {p.name: (p.offset >> 20, p.size >> 20) for p in gpt.read(disk).partitions}
    return {"raw": disk, "qcow2": qcow2}, src, extents


def buildgraph_argv(image: Path, src: Path, out: Path) -> list[str]:
    argv = [sys.executable, "-m", "buildgraph.cli", "edit-image", str(image)]
    for label in ("OEM", "ROOT"):
        argv += ["--partition", label]
        argv += [word for d in NEW_DIRS.get(label, []) for word in ("--mkdir", d)]
        argv += [f"--add={src / name}:{dest}" for name, (part, dest) in FILES.items()
                 if part == label]  # fmt: skip
    return [*argv, "-o", str(out)]


def raw_script(image: Path, form: str, src: Path, out: Path, extents: dict) -> str:
    q = shlex.quote
    work = out.parent / "W"
    disk = work / "disk.raw"
    lines = [f"rm -rf {q(str(work))} && mkdir -p {q(str(work))}"]
    if form == "qcow2":
        lines.append(f"qemu-img convert -f qcow2 -O raw {q(str(image))} {disk}")
    else:
        lines.append(f"cp --sparse=always {q(str(image))} {disk}")
    for label in ("OEM", "ROOT"):
        first, size = extents[label]
        piece = work / f"{label}.img"
        commands = [f"mkdir {d}" for d in NEW_DIRS.get(label, [])]
        for name, (part, dest) in FILES.items():
            if part == label:
                commands += [f"rm {dest}", f"write {src / name} {dest}"]
        lines += [
            f"dd if={disk} of={piece} bs=1M skip={first} count={size} conv=sparse status=none",
            f"printf '%s\\n' {' '.join(q(c) for c in commands)}"
            f" | debugfs -w -f - {piece} >/dev/null 2>&1",
            f"dd if={piece} of={disk} bs=1M seek={first} conv=notrunc,sparse status=none",
        ]
    if form == "qcow2":
        lines.append(f"qemu-img convert -f raw -O qcow2 {disk} {q(str(out))}")
    else:
        lines.append(f"mv {disk} {q(str(out))}")
    lines.append(f"rm -rf {q(str(work))}")
    return "\n".join(lines)


def guestfish_script(image: Path, form: str, src: Path, out: Path) -> str:
    commands = []
    for label, number in (("OEM", 6), ("ROOT", 9)):
        commands += [f"mount /dev/sda{number} /"]
        commands += [f"mkdir-p {d}" for d in NEW_DIRS.get(label, [])]
        commands += [f"upload {src / name} {dest}" for name, (part, dest) in FILES.items()
                     if part == label]  # fmt: skip
        commands.append("umount /")
    fish = " : ".join(["run", *commands])
    return (f"cp --sparse=always {shlex.quote(str(image))} {shlex.quote(str(out))}\n"
            f"guestfish --rw --format={form} -a {out} {fish}")  # fmt: skip


def guestfish_works(image: Path) -> str:
    """Empty when guestfish starts its appliance here, else why not."""
    if shutil.which("guestfish") is None:
        return "guestfish is not installed (Debian's libguestfs-tools)"
    done = subprocess.run(
        ["guestfish", "--ro", "-a", str(image), "run", ":", "list-filesystems"],
        capture_output=True, text=True, env={**os.environ, **GUESTFS_ENV},
        timeout=600, check=False,
    )  # fmt: skip
    if done.returncode == 0:
        return ""
    return " / ".join(done.stderr.strip().splitlines()[-3:])


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True, env=env or CLEAN_ENV)
    return time.monotonic() - started


def read_back(out: Path, form: str, extents: dict) -> tuple[str, str]:
    raw = out
    if form == "qcow2":
        raw = out.with_suffix(".check")
        subprocess.run(["qemu-img", "convert", "-O", "raw", str(out), str(raw)], check=True)

    def cat(label: str, path: str) -> str:
        offset = extents[label][0] << 20
        return subprocess.run(["debugfs", "-R", f"cat {path}", f"{raw}?offset={offset}"],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip

    return cat("OEM", "/grub.cfg"), cat("ROOT", "/opt/bin/tool")


def measure(repeat: int) -> tuple[list[str], str]:
    images, src, extents = prepare()
    why_not = guestfish_works(images["raw"])
    peers = ["buildgraph", "raw"] + (["guestfish"] if not why_not else [])
    env = {**CLEAN_ENV, "PYTHONPATH": str(HERE.parents[2]), "HOME": str(HERE)}
    rows = []
    for form in FORMS:
        walls: dict[str, list[float]] = {peer: [] for peer in peers}
        for n in range(repeat):
            order = peers if n % 2 == 0 else peers[::-1]
            for peer in order:
                out = HERE / peer / f"out.{form}"
                out.parent.mkdir(exist_ok=True)
                out.unlink(missing_ok=True)
                if peer == "buildgraph":
                    walls[peer].append(timed(buildgraph_argv(images[form], src, out), env))
                elif peer == "raw":
                    script = raw_script(images[form], form, src, out, extents)
                    walls[peer].append(timed(["sh", "-euc", script]))
                else:
                    script = guestfish_script(images[form], form, src, out)
                    walls[peer].append(timed(["sh", "-euc", script], {**os.environ, **GUESTFS_ENV}))
            say(f"{form} round {n}: " + ", ".join(f"{p} {walls[p][-1]:.2f} s" for p in peers))
        outputs = {peer: read_back(HERE / peer / f"out.{form}", form, extents) for peer in peers}
        if len(set(outputs.values())) != 1:
            raise SystemExit(f"{form}: the peers' outputs differ in grub.cfg or the tool")
        medians = {peer: statistics.median(walls[peer]) for peer in peers}
        cells = " | ".join(f"{medians[peer]:.2f}" for peer in peers)
        rows.append(f"| {form} | {cells} | {medians['buildgraph'] / medians['raw']:.2f} |")
    return rows, why_not


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="rounds (default 5)")
    args = parser.parse_args()
    with exclusive():
        rows, why_not = measure(args.repeat)
    guestfish = ["guestfish (s)"] if not why_not else []
    heads = ["input", "buildgraph (s)", "raw sh (s)", *guestfish, "buildgraph / raw"]
    note = (
        "guestfish ran its appliance here with `LIBGUESTFS_BACKEND=direct` and"
        " `LIBGUESTFS_BACKEND_SETTINGS=force_tcg` (KVM, nested here, aborts its `-cpu max`:"
        " `failed to set MSR 0x10a`), with the kernel of Debian's linux-image-cloud-amd64"
        " installed for its appliance (supermin finds none in a container otherwise)."
        if not why_not
        else f"guestfish is not a column: it does not run here: {why_not}"
    )
    section = "\n".join([
        "## Editing an image: edit-image against dd + debugfs (bench/edit_image.py)",
        "",
        f"`.venv/bin/python bench/edit_image.py --repeat {args.repeat}` at {revision()},"
        f" on {host()}; medians. The edit: OEM's grub.cfg and three files in ROOT (one in"
        f" a new /opt/bin) of the Flatcar-like disk of tests/flatcar.py, {DISK_MIB} MiB with"
        " 64 MiB of data in ROOT; the output in the input's format. buildgraph also"
        " plans the edit first, runs e2fsck -fn on each edited partition, pins every time"
        " to the epoch and writes the output atomically; the raw script does none of that."
        " Its dd reads every byte of each partition (ROOT's holes too), where buildgraph"
        " copies only their data extents (SEEK_DATA): most of the difference, and the"
        " noisiest part of the raw column on a shared machine.",
        "",
        "| " + " | ".join(heads) + " |",
        "|---|" + "---:|" * (len(heads) - 1),
        *rows,
        "",
        note,
    ])  # fmt: skip
    write_section(BEGIN, END, section)
    print(section)


if __name__ == "__main__":
    main()
