"""STYLE.md §4: queries.py holds all the SQL the service runs. Migrations (alembic/) are the
other home and are not scanned here."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXECUTORS = {"execute", "executemany", "callproc", "mogrify", "copy_expert", "copy_from"}


def executor_calls(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in EXECUTORS
    ]


def test_sql_home_is_queries_py() -> None:
    queries = ROOT / "service" / "queries.py"
    assert executor_calls(queries), "the scan finds the statements queries.py runs"
    elsewhere = [
        call
        for path in sorted((ROOT / "service").rglob("*.py"))
        if path != queries
        for call in executor_calls(path)
    ]
    assert elsewhere == [], "run SQL through a function in service/queries.py"
