"""The measured phases: a populate end to end, an ingest at scale against COPY, reads."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from loguru import logger
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from bench import database, wrk
from bench.data import Dataset, SyntheticSource, place_object, rows_of
from bench.procs import Server, service
from service import db as service_db
from service.config import DEFAULT_TAGS, SAMPLE_DIR, Secret, Settings
from service.ingestion import Populator
from service.matviews import VIEWS
from service.sources.base import TweetSource
from service.sources.sample import SampleSource
from testing.fake_x import BEARER, FakeX
from testing.loopback import free_port, request
from testing.processes import Processes
from tools.samplegen.text import PLACES

READ_PATHS = ("/api/v1/users", "/api/v1/hour", "/api/v1/tags")


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


# --- populate: 1,000 new tweets through POST /api/v1/populate -----------------------------------


@dataclass
class PopulateRun:
    seconds: float  # POST to 201, measured by the client
    status: int
    tweets_new: int
    steps: dict[str, float]  # populate_step_duration_seconds of this run: fetch, store, refresh

    def row(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 4),
            "status": self.status,
            "tweets_new": self.tweets_new,
            "steps_s": {k: round(v, 4) for k, v in self.steps.items()},
        }


def fake_batch(fake: FakeX, first: int, per_tag: int = 100) -> None:
    """The fake X API returns `per_tag` new tweets, numbered from `first`, for each default tag."""
    data = Dataset(per_tag * len(DEFAULT_TAGS), first=first, tags=DEFAULT_TAGS)
    fake.tweets.clear()  # X returns the newest first: only this batch, so every run stores 1,000
    places = [place_object(i) for i in range(len(PLACES))]
    for index, tag in enumerate(DEFAULT_TAGS):
        numbers = [n for n in range(first, first + data.tweets) if data.tag_of(n) == index]
        numbers.sort(key=data.tweet_id, reverse=True)
        users = [data.user_object(data.author_of(n)) for n in numbers]
        fake.add(tag, [data.tweet_object(n) for n in numbers], users, places)


@asynccontextmanager
async def fetching_service(
    group: Processes, name: str, url: str, *, loop: str
) -> AsyncIterator[tuple[Server, FakeX]]:
    """A service process on the database at `url` fetching 100 tweets per tag from a
    zero-latency fake X API served by this process."""
    fake = FakeX()
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    env = {
        "TWEET_SOURCE": "x",
        "TWITTER_BEARER_TOKEN": BEARER,
        "X_API_BASE_URL": f"http://127.0.0.1:{port}",
        "TWEETS_PER_TAG": "100",
    }
    try:
        server = await asyncio.to_thread(service, group, name, database_url=url, loop=loop, env=env)
        try:
            yield server, fake
        finally:
            server.stop()
    finally:
        await runner.cleanup()


def step_seconds(server: Server) -> dict[str, float]:
    """populate_step_duration_seconds_sum by step, from the server's /metrics."""
    text = request("GET", server.url("/metrics")).body.decode()
    return {
        sample.labels["step"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "populate_step_duration_seconds_sum"
    }


def populate(server: Server) -> PopulateRun:
    """One POST /api/v1/populate, timed end to end, with its steps' seconds from /metrics."""
    before = step_seconds(server)
    began = time.perf_counter()
    answer = request("POST", server.url("/api/v1/populate"), body=b"", timeout=600)
    seconds = time.perf_counter() - began
    after = step_seconds(server)
    body = answer.json() if answer.status == 201 else {}
    steps = {step: after[step] - before.get(step, 0.0) for step in after}
    return PopulateRun(seconds, answer.status, int(body.get("tweets_new", 0)), steps)


async def populates(
    group: Processes, url: str, *, runs: int, loop: str, first: int, warm_up: bool = False
) -> list[PopulateRun]:
    """`runs` populates of 1,000 new tweets each into the database at `url`, tweet numbers from
    `first` on. `warm_up`: one populate that finds nothing goes first (connections, caches)."""
    results: list[PopulateRun] = []
    async with fetching_service(group, "populate-api", url, loop=loop) as (server, fake):
        if warm_up:
            fake.tweets.clear()
            if (await asyncio.to_thread(populate, server)).status != 201:
                raise RuntimeError("the warm-up populate failed; see populate-api.out")
        for run in range(runs):
            fake_batch(fake, first=first + run * 10_000)
            results.append(await asyncio.to_thread(populate, server))
            say(f"populate {run + 1}/{runs}: {results[-1].status} in {results[-1].seconds:.3f} s")
    return results


# --- ingest at scale: the Populator's store path, in process, against COPY ---------------------


@dataclass
class IngestRun:
    label: str
    tweets: int  # distinct tweets the run stored
    rows: int  # tweets + tweet_tags + users + places rows it stored
    fetch_seconds: float  # synthetic pages built and parsed (parse_page)
    store_seconds: float  # the populate.store step: every bulk insert and the aggregates
    refresh: dict[str, float]  # REFRESH ... CONCURRENTLY of each view inside the populate
    copy_seconds: float | None = None  # COPY of the same rows into an empty database
    counts: dict[str, int] = field(default_factory=dict)  # table and view rows after the run
    refresh_standalone: dict[str, float] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "label": self.label,
            "tweets": self.tweets,
            "rows": self.rows,
            "stored_tweets_after": self.counts["tweets"],
            "view_rows": {view: self.counts[view] for view in VIEWS},
            "fetch_s": round(self.fetch_seconds, 3),
            "store_s": round(self.store_seconds, 3),
            "rows_per_s": round(self.rows / self.store_seconds),
            "refresh_s": {k: round(v, 4) for k, v in self.refresh.items()},
            "refresh_standalone_s": {k: round(v, 4) for k, v in self.refresh_standalone.items()},
        }
        if self.copy_seconds:
            row["copy_s"] = round(self.copy_seconds, 3)
            row["vs_copy"] = round(self.copy_seconds / self.store_seconds, 3)
        return row


async def run_populator(url: str, source: TweetSource, per_tag: int, label: str) -> IngestRun:
    """One Populator.run, as POST /api/v1/populate does it, with the given source."""
    settings = dataclasses.replace(
        Settings(),
        database_url=Secret(url),
        tags=DEFAULT_TAGS,
        tweets_per_tag=per_tag,
        db_write_timeout=3600.0,
        migrate_on_start=False,
    )
    events: list[dict[str, Any]] = []

    def keep(message: Any) -> None:  # the service's populate.* log events, as a loguru sink
        extra = dict(message.record["extra"])
        if str(extra.get("event", "")).startswith("populate."):
            events.append(extra)

    sink = logger.add(keep, level="INFO")
    pool = await service_db.create_pool(url, settings)
    fetch = "populate_step_duration_seconds_sum"
    try:
        fetch_before = REGISTRY.get_sample_value(fetch, {"step": "fetch"}) or 0.0
        result = await Populator(pool, source, settings).run()
        fetch_after = REGISTRY.get_sample_value(fetch, {"step": "fetch"}) or 0.0
    finally:
        logger.remove(sink)
        pool.close()
        await pool.wait_closed()
    store = next(e for e in events if e["event"] == "populate.store")
    return IngestRun(
        label=label,
        tweets=result.tweets_new,
        rows=0,
        fetch_seconds=fetch_after - fetch_before,
        store_seconds=float(store["duration_ms"]) / 1000,
        refresh={
            str(e["view"]): float(e["duration_ms"]) / 1000
            for e in events
            if e["event"] == "populate.refresh"
        },
    )


async def load_sample(url: str) -> IngestRun:
    """The whole bundled sample (every page of every tag), through the Populator."""
    run = await run_populator(url, SampleSource(SAMPLE_DIR), per_tag=10_000, label="sample")
    run.counts = database.counts(url)
    run.rows = sum(run.counts[t] for t in ("tweets", "tweet_tags", "users", "places"))
    run.refresh_standalone = database.refresh_each(url)
    return run


async def ingest(admin_url: str, url: str, dataset: Dataset, label: str) -> IngestRun:
    """Populate `dataset` into `url` through the real path; COPY the same rows elsewhere."""
    source = SyntheticSource(dataset)
    database.settle(url)
    run = await run_populator(url, source, per_tag=source.per_tag(), label=label)
    rows = rows_of(source.served)
    source.served.clear()
    run.rows = rows.count
    # What autovacuum would do next; done now so that it does not run during the COPY below.
    database.settle(url)
    run.counts = database.counts(url)
    run.refresh_standalone = database.refresh_each(url)
    say(f"ingest {label}: {run.tweets:,} tweets, {run.rows:,} rows in {run.store_seconds:.1f} s")
    copy_url = database.create(admin_url, "copy")
    try:
        database.settle(copy_url)
        run.copy_seconds = database.copy_rows(copy_url, rows)
    finally:
        database.drop(admin_url, copy_url)
    say(f"COPY {label}: {run.rows:,} rows in {run.copy_seconds:.1f} s")
    return run


# --- reads ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One thing to load: a server, a path, request headers; the bare handler is the reference."""

    name: str  # "users", ..., "bare"
    kind: str  # "200", "304", "gzip"
    server: Server
    path: str
    headers: dict[str, str]
    body_bytes: int
    database_url: str | None = None  # whose transactions to count while it is loaded

    @property
    def url(self) -> str:
        return self.server.url(self.path)


def bare_case(server: Server) -> Case:
    answer = request("GET", server.url("/"))
    assert answer.status == 200, answer.status
    return Case("bare", "200", server, "/", {}, len(answer.body))


def read_cases(server: Server, kind: str, database_url: str | None = None) -> list[Case]:
    """A case per read endpoint, each checked first: a 304 case answers 304, a gzip case gzip
    (or identity, for a body under the service's 256-byte compression threshold)."""
    cases = []
    for path in READ_PATHS:
        headers = {"Accept-Encoding": "gzip"} if kind == "gzip" else {}
        answer = request("GET", server.url(path), headers=headers)
        if answer.status != 200:
            raise RuntimeError(f"GET {path} answered {answer.status}")
        size = len(answer.body)
        if kind == "304":
            headers = {"If-None-Match": answer.header("ETag") or ""}
            status = request("GET", server.url(path), headers=headers).status
            if status != 304:
                raise RuntimeError(f"GET {path} with If-None-Match answered {status}, not 304")
            size = 0
        name = path.rsplit("/", 1)[-1]
        cases.append(Case(name, kind, server, path, headers, size, database_url))
    return cases


def measure(
    cases: Sequence[Case], *, connections: int, rounds: int, seconds: float
) -> list[dict[str, Any]]:
    """Interleaved rounds: round r loads every case once, in order, before round r+1 starts, so
    slow drifts of the machine (other processes, heat) hit every case alike. The first case is
    the reference of the others' ratios."""
    for case in {c.server.name: c for c in cases}.values():  # each server warmed up once
        wrk.run(case.url, connections=connections, seconds=1, headers=case.headers)
    runs: list[list[wrk.Run]] = [[] for _ in cases]
    transactions = [0 for _ in cases]
    for _ in range(rounds):
        for i, case in enumerate(cases):
            before = database.transactions(case.database_url) if case.database_url else 0
            runs[i].append(
                wrk.run(case.url, connections=connections, seconds=seconds, headers=case.headers)
            )
            if case.database_url:
                spent = database.transactions(case.database_url) - before
                transactions[i] += spent - database.COUNTING_TRANSACTIONS
            time.sleep(0.2)  # let the sockets of the previous run close
    rps = [statistics.median(r.rps for r in done) for done in runs]
    p99 = [statistics.median(r.p99_ms for r in done) for done in runs]
    rows = []
    for i, (case, done) in enumerate(zip(cases, runs, strict=True)):
        rows.append(
            {
                "endpoint": case.name,
                "path": case.path,
                "kind": case.kind,
                "connections": connections,
                "body_bytes": case.body_bytes,
                "rounds": rounds,
                "rps": round(rps[i], 1),
                "spread": round((max(r.rps for r in done) - min(r.rps for r in done)) / rps[i], 3),
                "p50_ms": statistics.median(r.p50_ms for r in done),
                "p99_ms": p99[i],
                "ratio": round(rps[i] / rps[0], 3) if i else None,
                "p99_ratio": round(p99[i] / p99[0], 3) if i else None,
                "clean": all(r.errors == 0 and r.non_2xx == 0 for r in done),
                "db_tx_per_s": None
                if case.database_url is None
                else round(max(0, transactions[i]) / (rounds * seconds), 2),
            }
        )
    others = ", ".join(f"{r['endpoint']}/{r['kind']} {r['rps']:,.0f}" for r in rows[1:])
    say(f"c{connections}: {rows[0]['endpoint']} {rows[0]['rps']:,.0f} rps; {others}")
    return rows
