"""The module graph stays what the layout promises: pure parts load no web framework, and no
service module imports itself back through another (mypy and readers both trip on cycles)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICE = ROOT / "service"

# Modules that must load without aiohttp.web: the parsing and domain half, and the errors they
# raise. STYLE.md §4: queries never import aiohttp.
PURE = (
    "service.sources.parse",
    "service.errors",
    "service.model",
    "service.queries",
)


@pytest.mark.parametrize("module", PURE)
def test_imports_pure_module_loads_no_web_framework(module: str) -> None:
    # A fresh interpreter: this one has imported everything already.
    code = f"import sys, {module}; print('aiohttp.web' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False", f"importing {module} loads aiohttp.web"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements run at import: module level, including inside if/try, not inside functions."""
    for node in body:
        yield node
        if isinstance(node, ast.If | ast.Try):
            for block in (node.body, node.orelse, getattr(node, "finalbody", [])):
                yield from _top_level(block)
            for handler in getattr(node, "handlers", []):
                yield from _top_level(handler.body)


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SERVICE.rglob("*.py") if "sample_data" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in _top_level(ast.parse(path.read_text(encoding="utf-8")).body):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    # `from service import db` imports the module service.db.
                    edges.add(full if full in modules else node.module)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(graph.get(node, ())):
            cycle = visit(target)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start)
        if cycle:
            return cycle
    return None


def test_imports_service_modules_form_no_cycle() -> None:
    graph = import_graph()
    assert "service.keys" in graph["service.middlewares"]  # the graph sees real edges
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_imports_find_cycle_reports_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_imports_no_type_checking_imports_in_service() -> None:
    # A TYPE_CHECKING import is how a cycle hides from the check above.
    offenders = [
        str(p.relative_to(ROOT))
        for p in SERVICE.rglob("*.py")
        if "TYPE_CHECKING" in p.read_text(encoding="utf-8")
    ]
    assert offenders == []
