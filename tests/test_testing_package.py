"""service/testing ships in the wheel and the image but is never part of the running service."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTING = ROOT / "service" / "testing"


def imported_modules(path: Path, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_nothing_in_the_service_imports_service_testing() -> None:
    offenders = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "service").rglob("*.py")
        if TESTING not in path.parents
        and any(
            name == "service.testing" or name.startswith("service.testing.")
            for name in imported_modules(path, top_level_only=False)
        )
    }
    assert offenders == set()


def test_service_testing_imports_only_runtime_dependencies_at_module_level() -> None:
    # What pyproject.toml installs without the dev extra, as import names; aiohttp brings yarl
    # and multidict.
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert any(spec.startswith("aiohttp") for spec in dependencies["project"]["dependencies"])
    allowed = set(sys.stdlib_module_names) | {"aiohttp", "yarl", "multidict", "service"}
    modules = sorted(TESTING.glob("*.py"))
    assert modules
    for path in modules:
        roots = {name.partition(".")[0] for name in imported_modules(path, top_level_only=True)}
        assert roots <= allowed, (path.name, sorted(roots - allowed))
