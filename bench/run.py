"""`make bench`: every phase in one run, then the table, bench/results.json and the plot.

Environment:
  BENCH_QUICK=1          smoke run: small sizes, 1 s runs, one round (results under bench/out/)
  BENCH_SECONDS=4        seconds per load-generator run
  BENCH_ROUNDS=3         rounds of the primary comparison (1k, 50 connections); others use 2
  BENCH_LOOP=asyncio     event loop of the bare handler and the service in the main runs
  BENCH_LOADGEN=python   use the Python load generator even when wrk is installed
  BENCH_DATABASE_URL     a PostgreSQL server to use instead of an embedded one
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from loguru import logger

from bench import database, procs
from bench.data import Dataset
from bench.load import LoadGenerator
from bench.phases import (
    READ_PATHS,
    IngestRun,
    Measured,
    PopulateRun,
    bare_case,
    ingest,
    load_sample,
    loadavg,
    measure,
    populate_phase,
    profile,
    read_cases,
    say,
)
from bench.soak import dump as dump_soak
from bench.soak import load_during_populates
from bench.soak import render as render_soak
from bench.stats import (
    Target,
    at_least,
    at_most,
    fmt_value,
    markdown_table,
    ratio,
    size_label,
    table,
)
from service.matviews import VIEWS

BENCH_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class Config:
    quick: bool
    seconds: float  # per run of the primary comparison (1k, 50 connections, direct)
    seconds_other: float  # per run of the other comparisons
    rounds: int  # of the primary comparison
    rounds_other: int
    warmup: float
    loop: str
    mid: int  # tweets at the middle size (sample + synthetic)
    large: int  # tweets at the large size (synthetic, from empty)
    populates: int
    soak_seconds: float  # the load run through HAProxy while populates run
    out_dir: Path
    results_dir: Path

    @classmethod
    def from_env(cls) -> Config:
        quick = os.environ.get("BENCH_QUICK", "").strip() not in ("", "0")
        out = BENCH_DIR / "out"
        return cls(
            quick=quick,
            # Many short interleaved rounds and their median resist the bursts of other work on
            # a shared machine better than a few long runs.
            seconds=float(os.environ.get("BENCH_SECONDS", "1" if quick else "2")),
            seconds_other=float(os.environ.get("BENCH_SECONDS", "1" if quick else "2")),
            rounds=int(os.environ.get("BENCH_ROUNDS", "1" if quick else "6")),
            rounds_other=1 if quick else 3,
            warmup=0.5 if quick else 1.0,
            loop=os.environ.get("BENCH_LOOP", "asyncio"),
            mid=10_000 if quick else 100_000,
            large=30_000 if quick else 1_000_000,
            populates=1 if quick else 3,
            soak_seconds=5 if quick else 30,
            out_dir=out,
            results_dir=out if quick else BENCH_DIR,
        )


def _uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


# --- the run -------------------------------------------------------------------------------


@dataclass
class Reads:
    size: str
    stored_tweets: int
    via: str  # "direct" or "haproxy x2"
    loop: str
    log_level: str
    measured: list[Measured]


async def run(cfg: Config) -> dict[str, Any]:
    started = time.perf_counter()
    log_dir = cfg.out_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    loadgen = LoadGenerator.detect()
    say(f"load generator: {loadgen.name}; {cfg.seconds:g} s runs; loop {cfg.loop}")
    reads: list[Reads] = []
    soak: dict[str, Any] = {}
    ingests: list[IngestRun] = []
    profiles: list[dict[str, Any] | None] = []

    def go(
        cases: Sequence[Any], conns: int, rounds: int, label: str, primary: bool = False
    ) -> list[Measured]:
        seconds = cfg.seconds if primary else cfg.seconds_other
        return measure(
            loadgen,
            cases,
            connections=conns,
            rounds=rounds,
            seconds=seconds,
            warmup=cfg.warmup,
            label=label,
        )

    # Every process is stopped on the way out, whatever fails (stop() is idempotent); the
    # explicit stops below only free the CPU as soon as a group is done.
    with database.server() as (admin, db_kind), contextlib.ExitStack() as stop_later:
        pg_version = database.version(admin)
        say(f"PostgreSQL {pg_version}, {db_kind}")
        populates = await populate_phase(admin, log_dir, runs=cfg.populates, loop=cfg.loop)

        # 1k: the bundled sample, whole.
        small_url = database.create(admin, "small")
        sample = await load_sample(small_url)
        ingests.append(sample)
        small_tweets = sample.counts["tweets"]
        small = size_label(1000)
        bare = procs.bare("bare", loop=cfg.loop)
        stop_later.callback(bare.stop)
        app = procs.service(
            "api-small", database_url=small_url, loop=cfg.loop, log_level="INFO", log_dir=log_dir
        )
        stop_later.callback(app.stop)
        try:
            ref = bare_case(bare)
            full = read_cases(app, ["200"], READ_PATHS, small_url)
            revalidated = read_cases(app, ["304"], READ_PATHS, small_url)
            cases = [ref, *full, *revalidated]
            m = go(cases, 50, cfg.rounds, small, primary=True)
            reads.append(Reads(small, small_tweets, "direct", cfg.loop, "INFO", m))
            for case in [ref, *full]:
                profiles.append(
                    profile(loadgen, case, seconds=3 * cfg.seconds, out_dir=cfg.out_dir)
                )
            m = go(cases, 200, 2, small)
            reads.append(Reads(small, small_tweets, "direct", cfg.loop, "INFO", m))

            warn = procs.service(
                "api-small-warning",
                database_url=small_url,
                loop=cfg.loop,
                log_level="WARNING",
                log_dir=log_dir,
            )
            stop_later.callback(warn.stop)
            try:
                m = go(
                    [ref, *read_cases(warn, ["200"], READ_PATHS, small_url)],
                    50,
                    cfg.rounds_other,
                    small,
                )
                reads.append(Reads(small, small_tweets, "direct", cfg.loop, "WARNING", m))
            finally:
                warn.stop()

            other = "uvloop" if cfg.loop == "asyncio" else "asyncio"
            if other == "asyncio" or _uvloop_available():
                bare2 = procs.bare("bare-" + other, loop=other)
                stop_later.callback(bare2.stop)
                app2 = procs.service(
                    "api-small-" + other,
                    database_url=small_url,
                    loop=other,
                    log_level="INFO",
                    log_dir=log_dir,
                )
                stop_later.callback(app2.stop)
                try:
                    cases2 = [bare_case(bare2), *read_cases(app2, ["200"], READ_PATHS, small_url)]
                    m = go(cases2, 50, cfg.rounds_other, small)
                    reads.append(Reads(small, small_tweets, "direct", other, "INFO", m))
                finally:
                    app2.stop()
                    bare2.stop()
            else:
                say("uvloop is not installed: the loop comparison is skipped")

            if procs.haproxy_available():
                reads.extend(await _through_haproxy(cfg, small_url, small_tweets, go))
                say(f"load through HAProxy for {cfg.soak_seconds:g} s while populates run")
                soak = load_during_populates(
                    small_url, seconds=cfg.soak_seconds, loop=cfg.loop, out_dir=cfg.out_dir
                )
                say(render_soak(soak))
            else:
                say("haproxy is not installed: the HAProxy runs are skipped")

            # 100k: the same database grows; the running replica sees the new generation.
            mid = size_label(cfg.mid)
            grow = Dataset(cfg.mid - small_tweets)
            ingests.append(await ingest(admin, small_url, grow, mid))
            mid_tweets = ingests[-1].counts["tweets"]
            await asyncio.sleep(1.0)  # the cache watcher polls the generation every 0.5 s
            full = read_cases(app, ["200"], READ_PATHS, small_url)
            revalidated = read_cases(app, ["304"], READ_PATHS, small_url)
            m = go([ref, *full, *revalidated], 50, cfg.rounds_other, mid)
            reads.append(Reads(mid, mid_tweets, "direct", cfg.loop, "INFO", m))
            m = go([ref, *full], 200, 2, mid)
            reads.append(Reads(mid, mid_tweets, "direct", cfg.loop, "INFO", m))
        finally:
            app.stop()
            database.drop(admin, small_url)

        # 1M: from an empty database.
        large = size_label(cfg.large)
        large_url = database.create(admin, "large")
        try:
            ingests.append(await ingest(admin, large_url, Dataset(cfg.large), large))
            large_tweets = ingests[-1].counts["tweets"]
            app = procs.service(
                "api-large",
                database_url=large_url,
                loop=cfg.loop,
                log_level="INFO",
                log_dir=log_dir,
            )
            stop_later.callback(app.stop)
            try:
                full = read_cases(app, ["200"], READ_PATHS, large_url)
                revalidated = read_cases(app, ["304"], READ_PATHS, large_url)
                gzipped = read_cases(app, ["gzip"], READ_PATHS, large_url)
                m = go([ref, *full, *revalidated], 50, cfg.rounds_other, large)
                reads.append(Reads(large, large_tweets, "direct", cfg.loop, "INFO", m))
                m = go([ref, *gzipped], 50, cfg.rounds_other, large)
                reads.append(Reads(large, large_tweets, "direct", cfg.loop, "INFO", m))
                m = go([ref, *full], 200, 2, large)
                reads.append(Reads(large, large_tweets, "direct", cfg.loop, "INFO", m))
                for case in gzipped[1:]:
                    profiles.append(
                        profile(loadgen, case, seconds=3 * cfg.seconds, out_dir=cfg.out_dir)
                    )
            finally:
                app.stop()
        finally:
            bare.stop()
            database.drop(admin, large_url)

    wall = time.perf_counter() - started
    results = report(cfg, loadgen, pg_version, db_kind, populates, ingests, reads, wall)
    results["profiles"] = [p for p in profiles if p is not None]
    if soak:
        results["load_during_populates"] = soak
    return results


async def _through_haproxy(cfg: Config, url: str, tweets: int, go: Any) -> list[Reads]:
    """The repo's haproxy.cfg in front of two replicas; its reference is the same proxy in
    front of two bare handlers."""
    started: list[procs.Proc] = []
    out: list[Reads] = []
    try:
        for i in (1, 2):  # appended one by one: whatever started is stopped below
            started.append(procs.bare(f"bare-r{i}", loop=cfg.loop))
        bares = list(started)
        for i in (1, 2):
            started.append(
                procs.service(
                    f"api-r{i}",
                    database_url=url,
                    loop=cfg.loop,
                    log_level="INFO",
                    log_dir=cfg.out_dir / "logs",
                )
            )
        apis = started[2:]
        proxy_bare = procs.haproxy("haproxy-bare", bares, cfg.out_dir)
        started.append(proxy_bare)
        proxy_api = procs.haproxy("haproxy-api", apis, cfg.out_dir)
        started.append(proxy_api)
        ref = bare_case(proxy_bare)
        cases = [ref, *read_cases(proxy_api, ["200", "304"], READ_PATHS, url)]
        small = size_label(1000)
        for conns in (50, 200):
            m = go(cases, conns, 2, small + " via haproxy")
            out.append(Reads(small, tweets, "haproxy x2", cfg.loop, "INFO", m))
    finally:
        for proc in reversed(started):
            proc.stop()
    return out


# --- report --------------------------------------------------------------------------------


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


def render_tables(results: dict[str, Any], markdown: bool = False) -> str:
    fmt = markdown_table if markdown else table
    parts: list[str] = []
    reads = results["reads"]
    parts.append(
        "Reads (rps = median of rounds; spread = (max-min)/median; ratios to the bare row)"
    )
    parts.append(
        fmt(
            [
                "size",
                "via",
                "loop",
                "log",
                "conns",
                "endpoint",
                "kind",
                "body B",
                "rps",
                "spread",
                "p50 ms",
                "p99 ms",
                "rps/bare",
                "p99/bare",
                "db tx/s",
            ],
            [
                [
                    r["size"],
                    r["via"],
                    r["loop"],
                    r["log_level"],
                    str(r["connections"]),
                    r["endpoint"],
                    r["kind"],
                    str(r["body_bytes"]),
                    f"{r['rps']:,.0f}",
                    f"{r['spread'] * 100:.0f} %",
                    f"{r['p50_ms']:.2f}",
                    f"{r['p99_ms']:.2f}",
                    "-" if r["endpoint"] == "bare" else f"{r['ratio'] * 100:.0f} %",
                    "-" if r["endpoint"] == "bare" else f"{r['p99_ratio']:.2f}",
                    "-"
                    if r["db_transactions_per_s"] is None
                    else f"{r['db_transactions_per_s']:.1f}",
                ]
                for r in reads
            ],
        )
    )
    parts.append("")
    parts.append("Populate 1,000 tweets (10 tags x 100) from the zero-latency fake X API")
    parts.append(
        fmt(
            [
                "run",
                "status",
                "new",
                "end to end ms",
                "fetch ms",
                "(parse ms)",
                "store ms",
                "refresh ms",
            ],
            [
                [
                    str(i + 1),
                    str(p["status"]),
                    str(p["tweets_new"]),
                    f"{p['seconds'] * 1000:.0f}",
                    f"{p['steps_s'].get('fetch', 0) * 1000:.0f}",
                    f"{p['parse_s'] * 1000:.0f}",
                    f"{p['steps_s'].get('store', 0) * 1000:.0f}",
                    f"{p['steps_s'].get('refresh', 0) * 1000:.0f}",
                ]
                for i, p in enumerate(results["populate"])
            ],
        )
    )
    parts.append("")
    parts.append("Ingest (store step of a populate) against COPY of the same rows")
    parts.append(
        fmt(
            [
                "size",
                "tweets",
                "rows",
                "store s",
                "tweets/s",
                "rows/s",
                "COPY s",
                "COPY rows/s",
                "vs COPY",
                "fetch+parse s",
                "populate s",
            ],
            [
                [
                    r["label"],
                    f"{r['tweets']:,}",
                    f"{r['rows']:,}" if r["rows"] else "-",
                    f"{r['store_s']:.2f}",
                    f"{r.get('tweets_per_s', 0):,}",
                    f"{r['rows_per_s']:,}" if r.get("rows_per_s") else "-",
                    f"{r['copy_s']:.2f}" if "copy_s" in r else "-",
                    f"{r['copy_rows_per_s']:,}" if "copy_rows_per_s" in r else "-",
                    f"{r['ratio_to_copy'] * 100:.0f} %" if "ratio_to_copy" in r else "-",
                    f"{r['fetch_parse_s']:.1f}",
                    f"{r['populate_total_s']:.1f}",
                ]
                for r in results["ingest"]
            ],
        )
    )
    parts.append("")
    parts.append("Refresh CONCURRENTLY per view: inside the populate / on its own afterwards")
    parts.append(
        fmt(
            ["size", "stored tweets", "view", "view rows", "in populate s", "standalone s"],
            [
                [
                    r["label"],
                    f"{r['stored_tweets_after']:,}",
                    view,
                    f"{r['counts_after'].get(view, 0):,}",
                    f"{r['refresh_s'].get(view, 0):.3f}",
                    f"{r['refresh_standalone_s'].get(view, 0):.3f}",
                ]
                for r in results["ingest"]
                for view in VIEWS
            ],
        )
    )
    parts.append("")
    parts.append("Targets")
    parts.append(
        fmt(
            ["target", "goal", "measured", "met"],
            [
                [
                    t["name"],
                    t["goal"],
                    fmt_value(
                        math.nan if t["measured"] is None else t["measured"],
                        _unit_of(t["goal"]),
                    ),
                    "yes" if t["met"] else "NO",
                ]
                for t in results["targets"]
            ],
        )
    )
    if results.get("load_during_populates"):
        parts.append("")
        parts.append(
            "Load through HAProxy (two replicas) while a full populate runs every 2 s: "
            "non-2xx and socket errors must be 0"
        )
        parts.append(render_soak(results["load_during_populates"]))
    for prof in results.get("profiles", []):
        parts.append("")
        parts.append(
            f"Profile: {prof['process']} {prof['path']} ({prof['kind']}), py-spy "
            f"{prof['samples']} samples at {prof['rps_while_profiled']:,.0f} rps; "
            f"raw: {prof['raw']}"
        )
        parts.append(
            "CPU by category: "
            + ", ".join(f"{name} {pct:.1f} %" for name, pct in prof.get("categories_pct", []))
        )
        parts.append(
            fmt(
                ["self % (top frames)", "", "inclusive % (service and I/O frames)", ""],
                [
                    [a[0][:70], f"{a[1]:.1f}", b[0][:70], f"{b[1]:.1f}"]
                    for a, b in zip(prof["self_pct"][:10], prof["inclusive_pct"][:10], strict=False)
                ],
            )
        )
    meta = results["meta"]
    if meta["load_generator"] == "python":
        parts.append("")
        parts.append(
            "NOTE: the Python load generator (no wrk) saturates a core long before the server "
            "does: its requests/s and ratios measure the generator, not the service."
        )
    parts.append("")
    parts.append(
        f"wall {meta['wall_seconds']:.0f} s; {meta['load_generator']}, "
        f"{meta['seconds_per_run']:g} s "
        f"per run; PostgreSQL {meta['postgresql']} ({meta['database']}); Python {meta['python']}, "
        f"aiohttp {meta['aiohttp']}; {meta['cpus']} CPUs; load average at the end "
        f"{meta['loadavg_end']}"
    )
    return "\n".join(parts)


def _unit_of(goal: str) -> str:
    for unit in ("%", "x", "ms", "s"):
        if goal.endswith(" " + unit) or goal.endswith(unit):
            return unit
    return ""


async def soak_only(cfg: Config) -> None:
    """`python -m bench soak`: only the load run through HAProxy while populates run, on the
    bundled sample; writes bench/out/soak.json."""
    logger.remove()
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    with database.server() as (admin, _):
        url = database.create(admin, "soak")
        try:
            await load_sample(url)
            soak = load_during_populates(
                url, seconds=cfg.soak_seconds, loop=cfg.loop, out_dir=cfg.out_dir
            )
        finally:
            database.drop(admin, url)
    dump_soak(soak, cfg.out_dir / "soak.json")
    print(render_soak(soak))


def render_only(results_dir: Path) -> None:
    """`python -m bench render`: the tables again from results.json (no measuring)."""
    results = json.loads((results_dir / "results.json").read_text())
    (results_dir / "results.md").write_text(render_tables(results, markdown=True) + "\n")
    print(render_tables(results))


def main(argv: Sequence[str] | None = None) -> None:
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["render"]:
        render_only(Config.from_env().results_dir)
        return
    if args == ["soak"]:
        asyncio.run(soak_only(Config.from_env()))
        return
    if args:
        raise SystemExit("usage: python -m bench [render|soak]")
    logger.remove()  # the in-process service code logs only into bench.phases' capture sink
    cfg = Config.from_env()
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    results = asyncio.run(run(cfg))
    cfg.results_dir.mkdir(parents=True, exist_ok=True)
    (cfg.results_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (cfg.results_dir / "results.md").write_text(render_tables(results, markdown=True) + "\n")
    print(render_tables(results))
    try:
        from bench.plot import plot

        plot(results, cfg.results_dir / "results.png")
    except ImportError:
        say("matplotlib is not installed (pip install -e '.[bench]'): no plot")
    say(f"results in {cfg.results_dir / 'results.json'}")
