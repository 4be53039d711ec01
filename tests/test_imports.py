"""The module graph stays what the layout promises: pure parts load no web framework, and no
service module imports itself back through another (mypy and readers both trip on cycles)."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICE = ROOT / "service"

# Modules that must load without aiohttp.web: the parsing and domain half, and the errors they
# raise. STYLE.md §4: queries never import aiohttp.
PURE = ("service.sources.parse", "service.errors", "service.model", "service.queries")


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


def test_imports_service_modules_form_no_cycle() -> None:
    # Every import statement counts, those inside functions too: a deferred import is how a
    # cycle hides, and so is a TYPE_CHECKING block.
    modules = {_module_name(p): p for p in SERVICE.rglob("*.py") if "sample_data" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        source = path.read_text(encoding="utf-8")
        assert "TYPE_CHECKING" not in source, name
        edges: set[str] = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from service import db` imports the module service.db.
                edges.update(f"{node.module}.{a.name}" for a in node.names)
                edges.add(node.module)
        graph[name] = {e for e in edges if e in modules and e != name}
    assert "service.keys" in graph["service.middlewares"]  # the graph sees real edges
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle
