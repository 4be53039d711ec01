"""The bench's documented defaults are the ones it uses, and its tables render results.json
exactly as the committed results.md shows it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench import config
from bench.config import Config
from bench.stats import markdown_table
from bench.tables import INGEST, READS, REFRESH, TARGETS, Column, render, render_tables

ROOT = Path(__file__).resolve().parent.parent


def _readme_defaults() -> dict[str, str]:
    text = (ROOT / "bench" / "README.md").read_text(encoding="utf-8")
    return {m[1]: m[2] for m in re.finditer(r"^\| `(BENCH_\w+)` \| ([^|]+?) \|", text, re.M)}


def test_bench_config_defaults_match_the_docstring_and_the_readme() -> None:
    full = Config.from_env({})
    quick = Config.from_env({"BENCH_QUICK": "1"})
    doc = config.__doc__ or ""
    readme = _readme_defaults()

    assert f"BENCH_SECONDS={full.seconds:g}" in doc
    assert "(1 in a quick run)" in doc
    assert quick.seconds == 1
    assert readme["BENCH_SECONDS"] == f"{full.seconds:g}"
    assert full.seconds_other == full.seconds

    assert f"BENCH_ROUNDS={full.rounds}" in doc
    assert readme["BENCH_ROUNDS"] == str(full.rounds)
    assert quick.rounds == 1
    assert f"the others use {full.rounds_other}" in doc
    assert f"and {full.rounds_c200} at 200 connections and through HAProxy" in doc

    assert f"BENCH_LOOP={full.loop}" in doc
    assert readme["BENCH_LOOP"] == f"`{full.loop}`"
    assert not full.quick
    assert quick.quick
    assert quick.results_dir == quick.out_dir != full.results_dir


def test_bench_config_reads_the_environment_given() -> None:
    cfg = Config.from_env({"BENCH_SECONDS": "3.5", "BENCH_ROUNDS": "4", "BENCH_LOOP": "uvloop"})
    assert (cfg.seconds, cfg.seconds_other, cfg.rounds, cfg.loop) == (3.5, 3.5, 4, "uvloop")


def test_bench_tables_render_the_committed_results_as_committed() -> None:
    results = json.loads((ROOT / "bench" / "results.json").read_text(encoding="utf-8"))
    expected = (ROOT / "bench" / "results.md").read_text(encoding="utf-8")
    assert render_tables(results, markdown=True) + "\n" == expected


@pytest.mark.parametrize("columns", [READS, INGEST, REFRESH, TARGETS])
def test_bench_tables_have_one_header_per_column(columns: tuple[Column[object], ...]) -> None:
    headers = [c.header for c in columns]
    assert all(headers)
    assert len(set(headers)) == len(headers)


def test_bench_tables_render_keeps_headers_and_cells_together() -> None:
    columns: tuple[Column[dict[str, int]], ...] = (
        Column("a", lambda r: str(r["a"])),
        Column("b", lambda r: "x"),
    )
    assert render(columns, [{"a": 1}], markdown_table) == "| a | b |\n|---|---|\n| 1 | x |"
