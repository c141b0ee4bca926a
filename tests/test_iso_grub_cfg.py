"""The grub.cfg of the ISO passes the kernel command line through GRUB unchanged."""

from __future__ import annotations

from buildgraph.steps.grub import grub_cfg, grub_quote


def test_plain_args_stay_plain_and_others_are_quoted() -> None:
    assert grub_quote("console=ttyS0,115200n8") == "console=ttyS0,115200n8"
    assert grub_quote("a=$x") == "'a=$x'"
    assert grub_quote("it's") == "'it'\\''s'"


def test_the_config_boots_the_kernel_with_the_line() -> None:
    cfg = grub_cfg("console=ttyS0 slab_nomerge\n")
    assert "linux /boot/vmlinuz console=ttyS0 slab_nomerge\n" in cfg
    assert cfg.rstrip().endswith("boot")
