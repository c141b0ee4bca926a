"""``go-build``: a static, reproducible Go binary (the init) for one arch.

The build sees only what its key covers: the package's declared sources (copied
apart), the go tool (keyed by its Debian version), GOARCH and, for amd64, GOAMD64.
Nothing of the caller's environment or Go configuration reaches it (GOENV=off,
GOWORK=off, GOPROXY=off), and -trimpath, -buildvcs=false and an empty build ID make the
bytes independent of the checkout path and of the Go build cache, which lives in the
steps' cache directory.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from ..engine.errors import StepFailedError
from ..engine.step import StepContext, clean_env, step

PARAMS = ("package", "goamd64", "ldflags_x")
GOARCHES = ("amd64", "arm64")
GOAMD64 = ("v1", "v2", "v3", "v4")
_X_NAME = re.compile(r"^[A-Za-z0-9_./-]+\.[A-Za-z_][A-Za-z0-9_]*$")


def _check(params: Mapping[str, Any]) -> None:
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise ValueError(f"unknown go-build params {unknown}; known are {', '.join(PARAMS)}")
    package = params.get("package")
    if not isinstance(package, str) or not package:
        raise ValueError("the go-build step needs params.package, a directory of the repo")
    parts = PurePosixPath(package).parts
    if package.startswith("/") or ".." in parts:
        raise ValueError(f"params.package {package!r} must be relative to the repo root, no '..'")
    goamd64 = params.get("goamd64", "v1")
    if not isinstance(goamd64, str):
        raise ValueError(f"params.goamd64 must be a string, one of {', '.join(GOAMD64)}")
    if "${" not in goamd64 and goamd64 not in GOAMD64:  # checked again once variables are in
        raise ValueError(f"GOAMD64 {goamd64!r} is not one of {', '.join(GOAMD64)}")
    ldflags_x = params.get("ldflags_x", {})
    if not isinstance(ldflags_x, Mapping):
        raise ValueError("params.ldflags_x must be a mapping of importpath.name: value")
    for name, value in ldflags_x.items():
        if not isinstance(name, str) or not _X_NAME.match(name):
            raise ValueError(f"params.ldflags_x: {name!r} is not importpath.name")
        if not isinstance(value, str) or "'" in value or '"' in value:
            raise ValueError(f"params.ldflags_x.{name}: the value must have no quotes")


def _ldflags(ldflags_x: Mapping[str, str]) -> str:
    """-s -w, an empty build ID, and one -X per variable (sorted, quoted if it has spaces)."""
    words = ["-s", "-w", "-buildid="]
    for name in sorted(ldflags_x):
        value = ldflags_x[name]
        setting = f"{name}={value}"
        words += ["-X", f"'{setting}'" if any(c.isspace() for c in setting) else setting]
    return " ".join(words)


@contextmanager
def _go_cache(ctx: StepContext) -> Iterator[Path]:
    """``<steps cache>/go-build``; a throwaway directory when the runner gives none."""
    if ctx.cache_dir is not None:
        path = ctx.cache_dir / "go-build"
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="buildgraph-go-") as tmp:
        yield Path(tmp)


def _declared_tree(ctx: StepContext) -> Path:
    """The declared sources, copied under the scratch directory: go build reads every
    file of a package, and an undeclared one must fail the build, not go unkeyed."""
    tree = ctx.out_dir.parent / "src"
    for src in ctx.sources:
        dest = tree / src.relative_to(ctx.root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(src.read_bytes())
    return tree


@step("go-build", version=1, tools=("go",), check=_check)
def go_build(ctx: StepContext) -> None:
    """go build params.package for linux/ARCH, static (CGO_ENABLED=0) and reproducible."""
    if ctx.arch not in GOARCHES:
        raise StepFailedError(
            f"go-build builds for {', '.join(GOARCHES)}, not {ctx.arch!r} (is the target per_arch?)"
        )
    package = _declared_tree(ctx) / ctx.params["package"]
    if not (package / "go.mod").is_file():
        raise StepFailedError(
            f"{ctx.params['package']}/go.mod is not among the target's sources",
            hint="list the package's go.mod and *.go files in sources",
        )
    (name,) = ctx.outputs
    out = ctx.output(name)
    with _go_cache(ctx) as cache:
        env = clean_env(
            HOME=str(cache),
            GOOS="linux",
            GOARCH=ctx.arch,
            CGO_ENABLED="0",
            GOCACHE=str(cache / "cache"),
            GOPATH=str(cache / "gopath"),
            GOENV="off",
            GOWORK="off",
            GOPROXY="off",
            GOSUMDB="off",
            GO111MODULE="on",
            GOTOOLCHAIN="local",
        )
        if ctx.arch == "amd64":
            env["GOAMD64"] = ctx.params.get("goamd64", "v1")
        ctx.progress(f"go build {ctx.params['package']} for linux/{ctx.arch}")
        ctx.run(
            [
                "go",
                "build",
                "-trimpath",
                "-buildvcs=false",
                "-modcacherw",
                f"-ldflags={_ldflags(ctx.params.get('ldflags_x', {}))}",
                "-o",
                str(out),
                ".",
            ],
            cwd=package,
            env=env,
        )
    out.chmod(0o755)
