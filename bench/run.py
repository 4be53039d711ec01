"""`make bench`: every phase in one run, then the table, bench/results.json and the plot.

bench/config.py reads the environment (BENCH_QUICK, BENCH_SECONDS, ...); bench/report.py makes
results.json of what this measures, bench/tables.py the printed tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from bench import database, history, procs
from bench.config import Config
from bench.data import Dataset
from bench.load import LoadGenerator
from bench.phases import (
    READ_PATHS,
    Case,
    IngestRun,
    Measured,
    PopulateRun,
    bare_case,
    ingest,
    load_sample,
    measure,
    populate_phase,
    profile,
    read_cases,
    say,
)
from bench.report import Reads, report
from bench.soak import dump as dump_soak
from bench.soak import load_during_populates
from bench.soak import render as render_soak
from bench.stats import size_label
from bench.tables import render_tables


def _uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class Session:
    """One run: what it measures with, the processes to stop on the way out, what it measured."""

    cfg: Config
    loadgen: LoadGenerator
    stop_later: contextlib.ExitStack
    reads: list[Reads] = field(default_factory=list)
    ingests: list[IngestRun] = field(default_factory=list)
    profiles: list[dict[str, Any]] = field(default_factory=list)
    soak: dict[str, Any] = field(default_factory=dict)
    # The populates of the first phase again, with the large size stored.
    at_large: list[PopulateRun] = field(default_factory=list)
    large_tweets: int = 0

    @property
    def log_dir(self) -> Path:
        return self.cfg.out_dir / "logs"

    def bare(self, name: str, loop: str) -> procs.Proc:
        proc = procs.bare(name, loop=loop)
        self.stop_later.callback(proc.stop)  # stop() is idempotent: explicit stops free CPU early
        return proc

    def service(
        self, name: str, url: str, *, loop: str | None = None, log_level: str = "INFO"
    ) -> procs.Proc:
        proc = procs.service(
            name,
            database_url=url,
            loop=loop or self.cfg.loop,
            log_level=log_level,
            log_dir=self.log_dir,
        )
        self.stop_later.callback(proc.stop)
        return proc

    def read(
        self,
        size: str,
        stored_tweets: int,
        cases: Sequence[Case],
        *,
        connections: int,
        rounds: int,
        primary: bool = False,
        via: str = "direct",
        label: str | None = None,
        loop: str | None = None,
        log_level: str = "INFO",
    ) -> None:
        """Load `cases` in interleaved rounds and keep the group of measurements."""
        measured: list[Measured] = measure(
            self.loadgen,
            cases,
            connections=connections,
            rounds=rounds,
            seconds=self.cfg.seconds if primary else self.cfg.seconds_other,
            warmup=self.cfg.warmup,
            label=label or size,
        )
        group = Reads(size, stored_tweets, via, loop or self.cfg.loop, log_level, measured)
        self.reads.append(group)

    def profile(self, case: Case) -> None:
        found = profile(self.loadgen, case, seconds=3 * self.cfg.seconds, out_dir=self.cfg.out_dir)
        if found is not None:
            self.profiles.append(found)


async def run(cfg: Config) -> dict[str, Any]:
    started = time.perf_counter()
    (cfg.out_dir / "logs").mkdir(parents=True, exist_ok=True)
    loadgen = LoadGenerator.detect()
    say(f"load generator: {loadgen.name}; {cfg.seconds:g} s runs; loop {cfg.loop}")
    # Every process is stopped on the way out, whatever fails (stop() is idempotent); the
    # explicit stops in the phases only free the CPU as soon as a group is done.
    with database.server() as (admin, db_kind), contextlib.ExitStack() as stop_later:
        s = Session(cfg, loadgen, stop_later)
        pg_version = database.version(admin)
        say(f"PostgreSQL {pg_version}, {db_kind}")
        populates = await populate_phase(admin, s.log_dir, runs=cfg.populates, loop=cfg.loop)

        # 1k: the bundled sample, whole; then 100k: the same database grows.
        small_url = database.create(admin, "small")
        sample = await load_sample(small_url)
        s.ingests.append(sample)
        bare = s.bare("bare", cfg.loop)
        app = s.service("api-small", small_url)
        try:
            ref = bare_case(bare)
            await _small(s, app, ref, small_url, sample.counts["tweets"])
            await _mid(s, admin, app, ref, small_url)
        finally:
            app.stop()
            database.drop(admin, small_url)
        # 1M: from an empty database.
        try:
            await _large(s, admin, ref)
        finally:
            bare.stop()

    wall = time.perf_counter() - started
    results = report(cfg, loadgen, pg_version, db_kind, populates, s.ingests, s.reads, wall)
    results["profiles"] = s.profiles
    results["history"] = {
        "method": "populate",
        "sizes": [
            history.size_row("empty", 0, populates),
            history.size_row(size_label(cfg.large), s.large_tweets, s.at_large),
        ],
    }
    results["targets"] += history.target_rows(results["history"])
    if s.soak:
        results["load_during_populates"] = s.soak
    return results


async def _small(s: Session, app: procs.Proc, ref: Case, url: str, tweets: int) -> None:
    """The bundled sample: the primary comparison, profiles, log level, the other loop,
    HAProxy and the load during populates."""
    cfg = s.cfg
    small = size_label(1000)
    full = read_cases(app, ["200"], READ_PATHS, url)
    revalidated = read_cases(app, ["304"], READ_PATHS, url)
    cases = [ref, *full, *revalidated]
    s.read(small, tweets, cases, connections=50, rounds=cfg.rounds, primary=True)
    for case in [ref, *full]:
        s.profile(case)
    s.read(small, tweets, cases, connections=200, rounds=cfg.rounds_c200)

    warn = s.service("api-small-warning", url, log_level="WARNING")
    try:
        cases = [ref, *read_cases(warn, ["200"], READ_PATHS, url)]
        s.read(small, tweets, cases, connections=50, rounds=cfg.rounds_other, log_level="WARNING")
    finally:
        warn.stop()

    other = "uvloop" if cfg.loop == "asyncio" else "asyncio"
    if other == "asyncio" or _uvloop_available():
        bare2 = s.bare("bare-" + other, other)
        app2 = s.service("api-small-" + other, url, loop=other)
        try:
            cases = [bare_case(bare2), *read_cases(app2, ["200"], READ_PATHS, url)]
            s.read(small, tweets, cases, connections=50, rounds=cfg.rounds_other, loop=other)
        finally:
            app2.stop()
            bare2.stop()
    else:
        say("uvloop is not installed: the loop comparison is skipped")

    if procs.haproxy_available():
        _through_haproxy(s, url, tweets)
        say(f"load through HAProxy for {cfg.soak_seconds:g} s while populates run")
        s.soak = load_during_populates(
            url, seconds=cfg.soak_seconds, loop=cfg.loop, out_dir=cfg.out_dir
        )
        say(render_soak(s.soak))
    else:
        say("haproxy is not installed: the HAProxy runs are skipped")


async def _mid(s: Session, admin: str, app: procs.Proc, ref: Case, url: str) -> None:
    """The sample's database grown to the middle size; the running replica sees the new
    generation."""
    cfg = s.cfg
    mid = size_label(cfg.mid)
    grow = Dataset(cfg.mid - s.ingests[0].counts["tweets"])
    s.ingests.append(await ingest(admin, url, grow, mid))
    tweets = s.ingests[-1].counts["tweets"]
    await asyncio.sleep(1.0)  # the cache watcher polls the generation every 0.5 s
    full = read_cases(app, ["200"], READ_PATHS, url)
    revalidated = read_cases(app, ["304"], READ_PATHS, url)
    s.read(mid, tweets, [ref, *full, *revalidated], connections=50, rounds=cfg.rounds_other)
    s.read(mid, tweets, [ref, *full], connections=200, rounds=cfg.rounds_c200)


async def _large(s: Session, admin: str, ref: Case) -> None:
    """The large size, stored into an empty database; gzip and its profiles."""
    cfg = s.cfg
    large = size_label(cfg.large)
    url = database.create(admin, "large")
    try:
        s.ingests.append(await ingest(admin, url, Dataset(cfg.large), large))
        tweets = s.large_tweets = s.ingests[-1].counts["tweets"]
        s.at_large = await history.populates_at(url, s.log_dir, runs=cfg.populates, loop=cfg.loop)
        app = s.service("api-large", url)
        try:
            full = read_cases(app, ["200"], READ_PATHS, url)
            revalidated = read_cases(app, ["304"], READ_PATHS, url)
            gzipped = read_cases(app, ["gzip"], READ_PATHS, url)
            rounds = cfg.rounds_other
            s.read(large, tweets, [ref, *full, *revalidated], connections=50, rounds=rounds)
            s.read(large, tweets, [ref, *gzipped], connections=50, rounds=rounds)
            s.read(large, tweets, [ref, *full], connections=200, rounds=cfg.rounds_c200)
            for case in gzipped[1:]:
                s.profile(case)
        finally:
            app.stop()
    finally:
        database.drop(admin, url)


def _through_haproxy(s: Session, url: str, tweets: int) -> None:
    """The repo's haproxy.cfg in front of two replicas; its reference is the same proxy in
    front of two bare handlers."""
    cfg = s.cfg
    started: list[procs.Proc] = []
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
                    log_dir=s.log_dir,
                )
            )
        apis = started[2:]
        proxy_bare = procs.haproxy("haproxy-bare", bares, cfg.out_dir)
        started.append(proxy_bare)
        proxy_api = procs.haproxy("haproxy-api", apis, cfg.out_dir)
        started.append(proxy_api)
        cases = [bare_case(proxy_bare), *read_cases(proxy_api, ["200", "304"], READ_PATHS, url)]
        small = size_label(1000)
        for conns in (50, 200):
            s.read(
                small,
                tweets,
                cases,
                connections=conns,
                rounds=cfg.rounds_c200,
                via="haproxy x2",
                label=small + " via haproxy",
            )
    finally:
        for proc in reversed(started):
            proc.stop()


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
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["render"]:
        render_only(Config.from_env().results_dir)
        return
    if args == ["soak"]:
        asyncio.run(soak_only(Config.from_env()))
        return
    if args == ["history"]:
        cfg = Config.from_env()
        history.main(cfg.quick, cfg.populates, cfg.loop, cfg.out_dir, cfg.results_dir)
        return
    if args:
        raise SystemExit("usage: python -m bench [render|soak|history]")
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
