"""The engine knows no OS: nothing under buildgraph/engine/ imports the OS side.

The OS side (steps, formats, oci, imager, the Talos variables) plugs into tables the
engine defines; an import the other way would make the engine depend on kernels.
"""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "buildgraph" / "engine"
THIRD_PARTY = {"distributed", "doit", "networkx", "structlog", "xxhash", "yaml"}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of each import in ``path``."""
    package = "buildgraph.engine"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
                names = [f"{module}.{a.name}" for a in node.names] if not node.module else [module]
            else:
                names = [node.module or ""]
            found += [(node.lineno, name) for name in names]
    return found


def _is_os_side(module: str) -> bool:
    return module == "buildgraph" or (
        module.startswith("buildgraph.") and not module.startswith("buildgraph.engine")
    )


def test_no_engine_module_imports_the_os_side():
    offences = [
        f"{path.relative_to(ENGINE.parent.parent)}:{line}: imports {module}"
        for path in sorted(ENGINE.glob("*.py"))
        for line, module in _imports(path)
        if _is_os_side(module)
    ]
    assert offences == []


def test_the_engine_uses_only_the_standard_library_and_its_chosen_dependencies():
    import sys

    outside = sorted(
        {
            module.split(".")[0]
            for path in ENGINE.glob("*.py")
            for _line, module in _imports(path)
            if not module.startswith("buildgraph")
        }
        - set(sys.stdlib_module_names)
        - THIRD_PARTY
    )
    assert outside == []


def test_the_check_sees_relative_imports_of_the_parent(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from .. import variables\nfrom ..steps import disk\nfrom . import log\n")
    modules = [module for _line, module in _imports(probe)]
    assert modules == ["buildgraph.variables", "buildgraph.steps", "buildgraph.engine.log"]
    assert [_is_os_side(m) for m in modules] == [True, True, False]
