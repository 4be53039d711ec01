"""No SQL is built from strings: every statement is a literal (or a file under db/views), and
every value travels as a %(name)s parameter. This scans the source, so it fails the build."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*ROOT.glob("service/**/*.py"), *ROOT.glob("alembic/**/*.py")])
SQL_WORDS = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|GRANT|REVOKE|TRUNCATE|REFRESH)\b"
)
EXECUTORS = {"execute", "executemany", "exec_driver_sql", "mogrify", "copy_expert"}
# Allowed non-literal statement arguments: a module constant, a fixed-dict lookup, a view file.
ALLOWED_CALLS = {"view_sql"}


def _literal_text(node: ast.AST) -> str:
    return " ".join(
        part.value
        for part in ast.walk(node)
        if isinstance(part, ast.Constant) and isinstance(part.value, str)
    )


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        # 1. Strings assembled at run time that look like SQL.
        if isinstance(node, ast.JoinedStr) and SQL_WORDS.search(_literal_text(node)):
            found.append(f"{path.name}:{node.lineno}: f-string containing SQL")
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Add | ast.Mod)
            and SQL_WORDS.search(_literal_text(node))
        ):
            found.append(f"{path.name}:{node.lineno}: SQL built with + or %")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("format", "join")
            and SQL_WORDS.search(_literal_text(node.func.value))
        ):
            found.append(f"{path.name}:{node.lineno}: SQL built with str.{node.func.attr}")
        # 2. What reaches an executor must be a literal or an allowed constant.
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in EXECUTORS
            and node.args
        ):
            statement = node.args[0]
            ok = (
                (isinstance(statement, ast.Constant) and isinstance(statement.value, str))
                or (isinstance(statement, ast.Name) and statement.id.isupper())
                or (
                    isinstance(statement, ast.Subscript)
                    and isinstance(statement.value, ast.Name)
                    and statement.value.id.lstrip("_").isupper()
                )
                or (
                    isinstance(statement, ast.Call)
                    and isinstance(statement.func, ast.Name)
                    and statement.func.id in ALLOWED_CALLS
                )
                or (  # SQLAlchemy's text("...") around a literal
                    isinstance(statement, ast.Call)
                    and isinstance(statement.func, ast.Name)
                    and statement.func.id == "text"
                    and isinstance(statement.args[0], ast.Constant)
                )
            )
            if not ok:
                found.append(f"{path.name}:{node.lineno}: non-literal statement passed to execute")
    return found


def test_sources_are_found() -> None:
    names = {p.name for p in SOURCES}
    assert {"queries.py", "ingestion.py", "env.py"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_sql_is_built_from_strings(path: Path) -> None:
    assert _violations(path) == []


def test_the_scanner_catches_string_built_sql(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "async def f(cur, name, value):\n"
        "    await cur.execute(f\"SELECT * FROM t WHERE name = '{name}'\")\n"
        '    await cur.execute("DELETE FROM t WHERE id = %s" % value)\n'
        '    sql = "UPDATE t SET a = {}".format(value)\n'
        "    await cur.execute(sql)\n",
        encoding="utf-8",
    )
    problems = _violations(bad)
    assert len(problems) == 6, problems  # lines 2 and 3 break both rules
