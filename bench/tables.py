"""The printed tables of a run (and bench/results.md), from results.json alone.

Each table is a tuple of columns, every column its header and its cell together, so a column
is added or dropped in one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from bench import history
from bench.soak import render as render_soak
from bench.stats import fmt_value, markdown_table, table
from service.matviews import VIEWS

Row = Mapping[str, Any]
R = TypeVar("R")
Formatter = Callable[[Sequence[str], Sequence[Sequence[str]]], str]


@dataclass(frozen=True, slots=True)
class Column(Generic[R]):
    header: str
    cell: Callable[[R], str]


def render(columns: Sequence[Column[R]], rows: Iterable[R], fmt: Formatter) -> str:
    return fmt([c.header for c in columns], [[c.cell(row) for c in columns] for row in rows])


def _vs_bare(text: Callable[[Row], str]) -> Callable[[Row], str]:
    """A ratio to the bare handler; the bare row itself shows '-'."""
    return lambda r: "-" if r["endpoint"] == "bare" else text(r)


def _ms(step: str) -> Callable[[Row], str]:
    return lambda p: f"{p['steps_s'].get(step, 0) * 1000:.0f}"


def _unit_of(goal: str) -> str:
    for unit in ("%", "x", "ms", "s"):
        if goal.endswith(" " + unit) or goal.endswith(unit):
            return unit
    return ""


READS: Final[tuple[Column[Row], ...]] = (
    Column("size", lambda r: r["size"]),
    Column("via", lambda r: r["via"]),
    Column("loop", lambda r: r["loop"]),
    Column("log", lambda r: r["log_level"]),
    Column("conns", lambda r: str(r["connections"])),
    Column("endpoint", lambda r: r["endpoint"]),
    Column("kind", lambda r: r["kind"]),
    Column("body B", lambda r: str(r["body_bytes"])),
    Column("rps", lambda r: f"{r['rps']:,.0f}"),
    Column("spread", lambda r: f"{r['spread'] * 100:.0f} %"),
    Column("p50 ms", lambda r: f"{r['p50_ms']:.2f}"),
    Column("p99 ms", lambda r: f"{r['p99_ms']:.2f}"),
    Column("rps/bare", _vs_bare(lambda r: f"{r['ratio'] * 100:.0f} %")),
    Column("p99/bare", _vs_bare(lambda r: f"{r['p99_ratio']:.2f}")),
    Column(
        "db tx/s",
        lambda r: (
            "-" if r["db_transactions_per_s"] is None else f"{r['db_transactions_per_s']:.1f}"
        ),
    ),
)

# Rows are (run number, populate row).
POPULATE: Final[tuple[Column[tuple[int, Row]], ...]] = (
    Column("run", lambda ip: str(ip[0])),
    Column("status", lambda ip: str(ip[1]["status"])),
    Column("new", lambda ip: str(ip[1]["tweets_new"])),
    Column("end to end ms", lambda ip: f"{ip[1]['seconds'] * 1000:.0f}"),
    Column("fetch ms", lambda ip: _ms("fetch")(ip[1])),
    Column("(parse ms)", lambda ip: f"{ip[1]['parse_s'] * 1000:.0f}"),
    Column("store ms", lambda ip: _ms("store")(ip[1])),
    Column("refresh ms", lambda ip: _ms("refresh")(ip[1])),
)

INGEST: Final[tuple[Column[Row], ...]] = (
    Column("size", lambda r: r["label"]),
    Column("tweets", lambda r: f"{r['tweets']:,}"),
    Column("rows", lambda r: f"{r['rows']:,}" if r["rows"] else "-"),
    Column("store s", lambda r: f"{r['store_s']:.2f}"),
    Column("tweets/s", lambda r: f"{r.get('tweets_per_s', 0):,}"),
    Column("rows/s", lambda r: f"{r['rows_per_s']:,}" if r.get("rows_per_s") else "-"),
    Column("COPY s", lambda r: f"{r['copy_s']:.2f}" if "copy_s" in r else "-"),
    Column(
        "COPY rows/s",
        lambda r: f"{r['copy_rows_per_s']:,}" if "copy_rows_per_s" in r else "-",
    ),
    Column(
        "vs COPY",
        lambda r: f"{r['ratio_to_copy'] * 100:.0f} %" if "ratio_to_copy" in r else "-",
    ),
    Column("fetch+parse s", lambda r: f"{r['fetch_parse_s']:.1f}"),
    Column("populate s", lambda r: f"{r['populate_total_s']:.1f}"),
)

# Rows are (ingest row, view name).
REFRESH: Final[tuple[Column[tuple[Row, str]], ...]] = (
    Column("size", lambda rv: rv[0]["label"]),
    Column("stored tweets", lambda rv: f"{rv[0]['stored_tweets_after']:,}"),
    Column("view", lambda rv: rv[1]),
    Column("view rows", lambda rv: f"{rv[0]['counts_after'].get(rv[1], 0):,}"),
    Column("in populate s", lambda rv: f"{rv[0]['refresh_s'].get(rv[1], 0):.3f}"),
    Column("standalone s", lambda rv: f"{rv[0]['refresh_standalone_s'].get(rv[1], 0):.3f}"),
)

TARGETS: Final[tuple[Column[Row], ...]] = (
    Column("target", lambda t: t["name"]),
    Column("goal", lambda t: t["goal"]),
    Column(
        "measured",
        lambda t: fmt_value(
            math.nan if t["measured"] is None else t["measured"], _unit_of(t["goal"])
        ),
    ),
    Column("met", lambda t: "yes" if t["met"] else "NO"),
)

# Rows are (top self frame, top inclusive frame), each (frame, percent).
Frames = tuple[Sequence[Any], Sequence[Any]]
PROFILE: Final[tuple[Column[Frames], ...]] = (
    Column("self % (top frames)", lambda ab: str(ab[0][0])[:70]),
    Column("", lambda ab: f"{ab[0][1]:.1f}"),
    Column("inclusive % (service and I/O frames)", lambda ab: str(ab[1][0])[:70]),
    Column("", lambda ab: f"{ab[1][1]:.1f}"),
)


def render_tables(results: Mapping[str, Any], markdown: bool = False) -> str:
    fmt: Formatter = markdown_table if markdown else table
    parts = [
        "Reads (rps = median of rounds; spread = (max-min)/median; ratios to the bare row)",
        render(READS, results["reads"], fmt),
        "",
        "Populate 1,000 tweets (10 tags x 100) from the zero-latency fake X API",
        render(POPULATE, enumerate(results["populate"], start=1), fmt),
        "",
        "Ingest (store step of a populate) against COPY of the same rows",
        render(INGEST, results["ingest"], fmt),
        "",
        "Refresh CONCURRENTLY per view: inside the populate / on its own afterwards",
        render(REFRESH, ((r, view) for r in results["ingest"] for view in VIEWS), fmt),
    ]
    if results.get("history"):
        parts += ["", history.render(results["history"], fmt)]
    parts += ["", "Targets", render(TARGETS, results["targets"], fmt)]
    if results.get("load_during_populates"):
        parts += [
            "",
            "Load through HAProxy (two replicas) while a full populate runs every 2 s: "
            "non-2xx and socket errors must be 0",
            render_soak(results["load_during_populates"]),
        ]
    for prof in results.get("profiles", []):
        categories = ", ".join(
            f"{name} {pct:.1f} %" for name, pct in prof.get("categories_pct", [])
        )
        frames = zip(prof["self_pct"][:10], prof["inclusive_pct"][:10], strict=False)
        parts += [
            "",
            f"Profile: {prof['process']} {prof['path']} ({prof['kind']}), py-spy "
            f"{prof['samples']} samples at {prof['rps_while_profiled']:,.0f} rps; "
            f"raw: {prof['raw']}",
            "CPU by category: " + categories,
            render(PROFILE, frames, fmt),
        ]
    meta = results["meta"]
    if meta["load_generator"] == "python":
        parts += [
            "",
            "NOTE: the Python load generator (no wrk) saturates a core long before the server "
            "does: its requests/s and ratios measure the generator, not the service.",
        ]
    parts += [
        "",
        f"wall {meta['wall_seconds']:.0f} s; {meta['load_generator']}, "
        f"{meta['seconds_per_run']:g} s per run; PostgreSQL {meta['postgresql']} "
        f"({meta['database']}); Python {meta['python']}, aiohttp {meta['aiohttp']}; "
        f"{meta['cpus']} CPUs; load average at the end {meta['loadavg_end']}",
    ]
    return "\n".join(parts)
