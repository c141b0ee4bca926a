"""The kernel command line rules of DESIGN section 8, one test per rule."""

import shlex

import pytest

from buildgraph.imager.flags import parse_imager_args
from buildgraph.kernelargs import Cmdline


def extra_from_imager_args(text: str) -> list[str]:
    return shlex.split(parse_imager_args(text).get("KERNEL_ARGS", ""))


DEFAULTS = "buildgraph.platform=metal console=tty0 console=ttyS0 init_on_alloc=1 slab_nomerge"
OVERWRITE = ("console", "buildgraph.platform")


def edit(*extra: str, base: str = DEFAULTS) -> str:
    return str(Cmdline(base.split()).apply(extra, OVERWRITE))


def test_printing_keeps_order_and_bare_keys():
    assert edit() == DEFAULTS


def test_a_repeated_key_joins_its_first_entry():
    assert str(Cmdline(["a=1", "b", "a=2"])) == "a=1 a=2 b"


def test_minus_key_deletes_every_value_and_keeps_the_place():
    assert edit("-console") == "buildgraph.platform=metal init_on_alloc=1 slab_nomerge"
    assert edit("-console", "console=ttyS1").split()[1] == "console=ttyS1"


def test_minus_key_value_deletes_just_that_value():
    assert edit("-console=tty0") == (
        "buildgraph.platform=metal console=ttyS0 init_on_alloc=1 slab_nomerge"
    )


def test_overwrite_keys_are_replaced_in_place():
    assert edit("console=ttyS1") == (
        "buildgraph.platform=metal console=ttyS1 init_on_alloc=1 slab_nomerge"
    )
    assert edit("buildgraph.platform=aws").startswith("buildgraph.platform=aws console=tty0")


def test_other_keys_append_even_when_repeated():
    line = edit("selinux=1", "selinux=0", "net.ifnames=0")
    assert line.endswith("slab_nomerge selinux=1 selinux=0 net.ifnames=0")


def test_a_key_with_no_values_left_prints_nothing():
    assert "slab_nomerge" not in edit("-slab_nomerge")


def test_the_seed_example():
    extra = extra_from_imager_args(
        "--extra-kernel-arg net.ifnames=0 "
        "--extra-kernel-arg=-console --extra-kernel-arg=console=ttyS1"
    )
    assert extra == ["net.ifnames=0", "-console", "console=ttyS1"]
    assert edit(*extra) == (
        "buildgraph.platform=metal console=ttyS1 init_on_alloc=1 slab_nomerge net.ifnames=0"
    )


def test_unknown_imager_flags_are_refused():
    with pytest.raises(ValueError, match="'--bogus' is not understood"):
        extra_from_imager_args("--bogus")


def test_the_cmdline_target_applies_imager_args(tmp_path):
    import shutil

    from project import REPO, build

    shutil.copytree(REPO / "targets", tmp_path / "targets")
    args = "--extra-kernel-arg=-console --extra-kernel-arg=console=ttyS0 --extra-kernel-arg=quiet"
    status = build(
        tmp_path, tmp_path / "cache", ["cmdline"], PLATFORM="linux/amd64", IMAGER_ARGS=args
    )
    assert status == {"cmdline-metal:amd64": "built"}
    line = (tmp_path / "_out" / "cmdline-metal-amd64").read_text().strip()
    assert line.startswith("buildgraph.platform=metal console=ttyS0 ")
    assert line.endswith(" quiet")
    assert line.count("console=") == 1


def test_keyless_kernel_args_are_refused():
    with pytest.raises(ValueError, match="'=x' has no key"):
        extra_from_imager_args("--extra-kernel-arg==x")


def test_bad_imager_args_stop_before_any_step_runs(tmp_path):
    import shutil

    from project import REPO, build

    from buildgraph.engine.errors import VariableError

    shutil.copytree(REPO / "targets", tmp_path / "targets")
    bogus = "variable IMAGER_ARGS: accepted is imager flags \\('--bogus' is not understood"
    with pytest.raises(VariableError, match=bogus):
        build(
            tmp_path, tmp_path / "cache", ["cmdline"], PLATFORM="linux/amd64", IMAGER_ARGS="--bogus"
        )
    assert not (tmp_path / "_out").exists()
