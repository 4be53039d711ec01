"""results.json from what a run measured: every row, and the targets checked against them."""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.config import Config
from bench.load import LoadGenerator
from bench.phases import READ_PATHS, IngestRun, Measured, PopulateRun, loadavg
from bench.stats import Target, at_least, at_most, ratio, size_label


@dataclass
class Reads:
    size: str
    stored_tweets: int
    via: str  # "direct" or "haproxy x2"
    loop: str
    log_level: str
    measured: list[Measured]


def _read_rows(reads: list[Reads]) -> list[dict[str, Any]]:
    rows = []
    for group in reads:
        bare = next(m for m in group.measured if m.case.reference)
        for m in group.measured:
            s = m.summary
            rows.append(
                {
                    "size": group.size,
                    "stored_tweets": group.stored_tweets,
                    "via": group.via,
                    "loop": group.loop,
                    "log_level": group.log_level,
                    "connections": m.connections,
                    "endpoint": m.case.name,
                    "path": m.case.path,
                    "kind": m.case.kind,
                    "body_bytes": m.case.body_bytes,
                    "rounds": s.rounds,
                    "rps": round(s.rps, 1),
                    "rps_min": round(s.rps_min, 1),
                    "rps_max": round(s.rps_max, 1),
                    "spread": round(s.spread, 3),
                    "p50_ms": round(s.p50_ms, 3),
                    "p99_ms": round(s.p99_ms, 3),
                    "p99_max_ms": round(s.p99_max_ms, 3),
                    "clean": s.clean,
                    "ratio": round(ratio(s.rps, bare.summary.rps), 3),
                    "p99_ratio": round(ratio(s.p99_ms, bare.summary.p99_ms), 3),
                    "loadavg_before": m.load_before,
                    "db_transactions_per_s": None
                    if m.db_transactions is None
                    else round(max(0, m.db_transactions) / (s.rounds * m.seconds), 2),
                }
            )
    return rows


def _ingest_rows(ingests: list[IngestRun]) -> list[dict[str, Any]]:
    out = []
    for run in ingests:
        row: dict[str, Any] = {
            "label": run.label,
            "tweets": run.tweets,
            "rows": run.rows,
            "stored_tweets_after": run.counts.get("tweets"),
            "fetch_parse_s": round(run.fetch_seconds, 3),
            "parse_s": round(run.parse_seconds, 3),
            "store_s": round(run.store_seconds, 3),
            "refresh_s": {k: round(v, 4) for k, v in run.refresh.items()},
            "refresh_total_s": round(sum(run.refresh.values()), 4),
            "refresh_standalone_s": {k: round(v, 4) for k, v in run.refresh_standalone.items()},
            "populate_total_s": round(run.total_seconds, 3),
            "counts_after": run.counts,
        }
        if run.store_seconds:
            row["tweets_per_s"] = round(run.tweets / run.store_seconds)
            row["rows_per_s"] = round(run.rows / run.store_seconds) if run.rows else None
        if run.copy_seconds:
            row["copy_s"] = round(run.copy_seconds, 3)
            row["copy_rows_per_s"] = round(run.rows / run.copy_seconds)
            row["ratio_to_copy"] = round(run.copy_seconds / run.store_seconds, 3)
        out.append(row)
    return out


def _populate_rows(runs: list[PopulateRun]) -> list[dict[str, Any]]:
    return [
        {
            "seconds": round(r.seconds, 4),
            "status": r.status,
            "tweets_new": r.tweets_new,
            "steps_s": {k: round(v, 4) for k, v in r.steps.items()},
            "parse_s": round(r.parse_seconds, 4),
            "refresh_s": {k: round(v, 4) for k, v in r.refresh.items()},
            "logged_ms": r.logged_ms,
        }
        for r in runs
    ]


def _find(rows: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def targets(
    cfg: Config,
    reads: list[dict[str, Any]],
    ingests: list[dict[str, Any]],
    populates: list[dict[str, Any]],
    wall: float,
) -> list[Target]:
    small, large = size_label(1000), size_label(cfg.large)
    base = {"via": "direct", "loop": cfg.loop, "log_level": "INFO"}
    out: list[Target] = []
    for path in READ_PATHS:
        name = path.rsplit("/", 1)[-1]
        full = _find(reads, size=small, connections=50, path=path, kind="200", **base)
        out.append(at_least(f"{name} 200 rps vs bare (1k, c50)", _first(full, "ratio"), 0.70, "%"))
        out.append(
            at_most(f"{name} 200 p99 vs bare (1k, c50)", _first(full, "p99_ratio"), 2.0, "x")
        )
        cond = _find(reads, size=small, connections=50, path=path, kind="304", **base)
        out.append(at_least(f"{name} 304 rps vs bare (1k, c50)", _first(cond, "ratio"), 0.90, "%"))
        gz = _find(reads, size=large, connections=50, path=path, kind="gzip", **base)
        out.append(
            at_least(f"{name} gzip rps vs bare ({large}, c50)", _first(gz, "ratio"), 0.50, "%")
        )
        worst = max(
            (r["p99_ms"] for r in _find(reads, connections=200, path=path, **base)),
            default=math.nan,
        )
        out.append(at_most(f"{name} p99 at c200, worst size (ms)", worst, 50.0, "ms"))
    seconds = sorted(p["seconds"] for p in populates if p["status"] == 201)
    median = seconds[len(seconds) // 2] if seconds else math.nan
    out.append(at_most("populate 1,000 tweets end to end (s)", median, 1.0, "s"))
    big = next((r for r in ingests if r["label"] == large), {})
    out.append(
        at_least(f"ingest rows/s vs COPY ({large})", big.get("ratio_to_copy", math.nan), 0.5, "%")
    )
    out.append(
        at_most(
            f"refresh of the three views ({large}, s)",
            big.get("refresh_total_s", math.nan),
            2.0,
            "s",
        )
    )
    if not cfg.quick:
        out.append(at_most("make bench wall time (s)", wall, 900.0, "s"))
    return out


def _first(rows: list[dict[str, Any]], key: str) -> float:
    return float(rows[0][key]) if rows else math.nan


def report(
    cfg: Config,
    loadgen: LoadGenerator,
    pg_version: str,
    db_kind: str,
    populates: list[PopulateRun],
    ingests: list[IngestRun],
    reads: list[Reads],
    wall: float,
) -> dict[str, Any]:
    read_rows = _read_rows(reads)
    ingest_rows = _ingest_rows(ingests)
    populate_rows = _populate_rows(populates)
    checks = targets(cfg, read_rows, ingest_rows, populate_rows, wall)
    return {
        "meta": {
            "quick": cfg.quick,
            "wall_seconds": round(wall, 1),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load_generator": loadgen.name,
            "seconds_per_run": cfg.seconds,
            "rounds_primary": cfg.rounds,
            "rounds_other": cfg.rounds_other,
            "seconds_per_other_run": cfg.seconds_other,
            "loop": cfg.loop,
            "python": platform.python_version(),
            "aiohttp": aiohttp.__version__,
            "postgresql": pg_version,
            "database": db_kind,
            "cpus": os.cpu_count(),
            "loadavg_end": loadavg(),
        },
        "populate": populate_rows,
        "ingest": ingest_rows,
        "reads": read_rows,
        "targets": [
            {
                "name": t.name,
                "goal": t.goal,
                "measured": None if math.isnan(t.measured) else round(t.measured, 4),
                "met": t.met,
                "margin": None if math.isnan(t.margin) else round(t.margin, 3),
            }
            for t in checks
        ],
    }
