"""`make bench`: every phase in one run, then bench/results.json and bench/results.md.

    python -m bench           the whole run
    python -m bench history   only the populate against stored tweets (bench/history.py)
    python -m bench soak      only the load through HAProxy while populates run

The environment: BENCH_QUICK=1 (small sizes, 1 s runs, one round, results under bench/out/),
BENCH_SECONDS (per wrk run), BENCH_ROUNDS (of the primary comparison), BENCH_LOOP (asyncio or
uvloop, for the bare handler and the service), BENCH_DATABASE_URL (bench/database.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
from loguru import logger

from bench import database, history, procs
from bench.data import Dataset
from bench.phases import (
    Case,
    bare_case,
    ingest,
    load_sample,
    loadavg,
    measure,
    populates,
    read_cases,
    say,
)
from bench.procs import Server
from bench.report import render, size_label, soak_table, targets
from bench.soak import load_during_populates
from testing.processes import Processes

BENCH_DIR: Final = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class Config:
    quick: bool
    seconds: float  # per wrk run
    rounds: int  # of the primary comparison: 1k, 50 connections
    rounds_other: int
    rounds_c200: int  # at 200 connections and through HAProxy
    loop: str
    mid: int  # tweets at the middle size (the sample, then synthetic ones)
    large: int  # tweets at the large size (synthetic, from empty)
    populates: int
    soak_seconds: float
    out_dir: Path  # process logs and configs
    results_dir: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Config:
        quick = environ.get("BENCH_QUICK", "").strip() not in ("", "0")
        return cls(
            quick=quick,
            # Many short interleaved rounds and their median resist the bursts of other work on
            # a shared machine better than a few long runs.
            seconds=float(environ.get("BENCH_SECONDS", "1" if quick else "2")),
            rounds=int(environ.get("BENCH_ROUNDS", "1" if quick else "6")),
            rounds_other=1 if quick else 3,
            rounds_c200=1 if quick else 2,
            loop=environ.get("BENCH_LOOP", "asyncio"),
            mid=10_000 if quick else 100_000,
            large=30_000 if quick else 1_000_000,
            populates=1 if quick else 3,
            soak_seconds=5 if quick else 30,
            out_dir=BENCH_DIR / "out",
            results_dir=BENCH_DIR / "out" if quick else BENCH_DIR,
        )


@dataclass
class Reads:
    """Read groups measured so far, each row labelled with its size and route."""

    cfg: Config
    rows: list[dict[str, Any]]

    def measure(
        self,
        size: str,
        tweets: int,
        cases: Sequence[Case],
        *,
        connections: int,
        rounds: int,
        via: str = "direct",
    ) -> None:
        say(f"reads {size} {via}, {connections} connections, {rounds} round(s)")
        measured = measure(cases, connections=connections, rounds=rounds, seconds=self.cfg.seconds)
        label = {"size": size, "stored_tweets": tweets, "via": via}
        self.rows += [label | row for row in measured]


def endpoint_cases(app: Server, url: str, *kinds: str) -> list[Case]:
    return [case for kind in kinds for case in read_cases(app, kind, url)]


async def run(cfg: Config, group: Processes) -> dict[str, Any]:
    started, load_start = time.perf_counter(), loadavg()
    reads = Reads(cfg, [])
    small, mid, large = size_label(1000), size_label(cfg.mid), size_label(cfg.large)
    with database.server() as (admin, db_kind):
        pg_version = database.version(admin)
        say(f"PostgreSQL {pg_version}, {db_kind}; wrk {cfg.seconds:g} s runs; loop {cfg.loop}")
        url = database.create(admin, "populate")
        try:
            empty = await populates(group, url, runs=cfg.populates, loop=cfg.loop, first=0)
        finally:
            database.drop(admin, url)

        bare = procs.bare(group, "bare", loop=cfg.loop)
        ref = bare_case(bare)
        # 1k: the bundled sample, whole; then the same database grows to the middle size.
        url = database.create(admin, "small")
        try:
            sample = await load_sample(url)
            tweets = sample.counts["tweets"]
            app = procs.service(group, "api-small", database_url=url, loop=cfg.loop)
            cases = [ref, *endpoint_cases(app, url, "200", "304")]
            reads.measure(small, tweets, cases, connections=50, rounds=cfg.rounds)
            reads.measure(small, tweets, cases, connections=200, rounds=cfg.rounds_c200)
            through_haproxy(cfg, group, reads, url, tweets)
            say(f"load through HAProxy for {cfg.soak_seconds:g} s while populates run")
            soak = load_during_populates(group, url, seconds=cfg.soak_seconds, loop=cfg.loop)
            grown = await ingest(admin, url, Dataset(cfg.mid - tweets), mid)
            tweets = grown.counts["tweets"]
            await asyncio.sleep(1.0)  # the cache watcher polls the generation every 0.5 s
            cases = [ref, *endpoint_cases(app, url, "200", "304")]
            reads.measure(mid, tweets, cases, connections=50, rounds=cfg.rounds_other)
            reads.measure(mid, tweets, cases[:4], connections=200, rounds=cfg.rounds_c200)
            app.stop()
        finally:
            database.drop(admin, url)

        # The large size, stored into an empty database; the populate against it; gzip.
        url = database.create(admin, "large")
        try:
            stored = await ingest(admin, url, Dataset(cfg.large), large)
            tweets = stored.counts["tweets"]
            first = history.BATCH_BASE
            at_large = await populates(group, url, runs=cfg.populates, loop=cfg.loop, first=first)
            app = procs.service(group, "api-large", database_url=url, loop=cfg.loop)
            cases = [ref, *endpoint_cases(app, url, "200", "304")]
            reads.measure(large, tweets, cases, connections=50, rounds=cfg.rounds_other)
            gzipped = [ref, *endpoint_cases(app, url, "gzip")]
            reads.measure(large, tweets, gzipped, connections=50, rounds=cfg.rounds_other)
            reads.measure(large, tweets, cases[:4], connections=200, rounds=cfg.rounds_c200)
            app.stop()
        finally:
            database.drop(admin, url)
        bare.stop()

    results: dict[str, Any] = {
        "meta": {
            "quick": cfg.quick,
            "wall_seconds": round(time.perf_counter() - started, 1),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": cfg.seconds,
            "rounds": [cfg.rounds, cfg.rounds_other, cfg.rounds_c200],
            "loop": cfg.loop,
            "python": platform.python_version(),
            "aiohttp": aiohttp.__version__,
            "postgresql": pg_version,
            "database": db_kind,
            "cpus": os.cpu_count(),
            "loadavg_start": load_start,
            "loadavg_end": loadavg(),
        },
        "populate": [r.row() for r in empty],
        "ingest": [r.row() for r in (sample, grown, stored)],
        "reads": reads.rows,
        "history": {
            "sizes": [
                history.size_row("empty", 0, empty),
                history.size_row(large, stored.counts["tweets"], at_large),
            ]
        },
        "soak": soak,
    }
    results["targets"] = targets(results, small=small, large=large, quick=cfg.quick)
    return results


def through_haproxy(cfg: Config, group: Processes, reads: Reads, url: str, tweets: int) -> None:
    """The repository's haproxy.cfg in front of two replicas; its reference is the same proxy
    in front of two bare handlers."""
    bares = [procs.bare(group, f"bare-{i}", loop=cfg.loop) for i in (1, 2)]
    apis = [procs.service(group, f"api-{i}", database_url=url, loop=cfg.loop) for i in (1, 2)]
    proxy_bare = procs.haproxy(group, "haproxy-bare", bares)
    proxy_api = procs.haproxy(group, "haproxy-api", apis)
    cases = [bare_case(proxy_bare), *endpoint_cases(proxy_api, url, "200", "304")]
    for connections in (50, 200):
        reads.measure(
            size_label(1000),
            tweets,
            cases,
            connections=connections,
            rounds=cfg.rounds_c200,
            via="haproxy x2",
        )
    for server in (proxy_api, proxy_bare, *apis, *bares):
        server.stop()


async def soak_only(cfg: Config, group: Processes) -> None:
    """`python -m bench soak`: on the bundled sample; writes soak.json."""
    with database.server() as (admin, _):
        url = database.create(admin, "soak")
        try:
            await load_sample(url)
            soak = load_during_populates(group, url, seconds=cfg.soak_seconds, loop=cfg.loop)
        finally:
            database.drop(admin, url)
    (cfg.results_dir / "soak.json").write_text(json.dumps(soak, indent=2) + "\n")
    print(soak_table(soak))


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args not in ([], ["history"], ["soak"]):
        raise SystemExit("usage: python -m bench [history|soak]")
    procs.require("wrk")
    procs.require("haproxy")
    cfg = Config.from_env()
    logs = cfg.out_dir / "logs"
    shutil.rmtree(logs, ignore_errors=True)  # a run's logs are big: keep the last run's only
    logs.mkdir(parents=True)
    cfg.results_dir.mkdir(parents=True, exist_ok=True)
    logger.remove()  # the service code run in process logs only into bench.phases' capture
    group = Processes(logs)
    try:
        if args == ["history"]:
            history.main(quick=cfg.quick, loop=cfg.loop, group=group, results_dir=cfg.results_dir)
        elif args == ["soak"]:
            asyncio.run(soak_only(cfg, group))
        else:
            results = asyncio.run(run(cfg, group))
            (cfg.results_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
            report = render(results)
            (cfg.results_dir / "results.md").write_text(report)
            print(report)
            say(f"results in {cfg.results_dir / 'results.md'}")
    finally:
        group.close()
