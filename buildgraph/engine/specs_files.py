"""Where the spec files of a tree live; cheap, since every run stats them."""

from __future__ import annotations

from pathlib import Path


def spec_files(root: Path) -> list[Path]:
    """The files whose contents define the graph, profiles included, sorted."""
    base = root / "targets"
    return sorted(
        [*base.glob("*.yaml"), *base.glob("*/*.yaml")],
        key=lambda p: p.relative_to(root).as_posix(),
    )
