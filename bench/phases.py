"""The measured phases: populate end to end, ingest and refresh at scale, reads."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from loguru import logger
from prometheus_client import REGISTRY

from bench import database, procs
from bench.data import Dataset, SyntheticSource, place_object, rows_of
from bench.load import LoadGenerator
from bench.stats import Summary, collapsed_profile, populate_events, step_seconds, summarize
from service import db as service_db
from service.config import DEFAULT_TAGS, SAMPLE_DIR, Secret, Settings
from service.ingestion import Populator
from service.samplegen.text import PLACES
from service.sources.base import TweetSource
from service.sources.parse import parse_page
from service.sources.sample import SampleSource
from service.testing.fake_x import BEARER, FakeX


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


# --- populate: 1,000 tweets end to end through POST /api/v1/populate ---------------------------


@dataclass
class PopulateRun:
    seconds: float  # POST to 201, measured by the client
    status: int
    tweets_new: int
    steps: dict[str, float]  # from populate_step_duration_seconds (fetch, store, refresh)
    parse_seconds: float  # parse_page over the same response bodies, measured here
    refresh: dict[str, float]  # per view, from the populate.refresh log lines
    logged_ms: dict[str, float]  # populate.store / populate.done duration_ms


def _fake_batch(fake: FakeX, first: int, per_tag: int) -> list[dict[str, Any]]:
    """Register `per_tag` new tweets for each default tag; returns the page bodies X would send."""
    tags = DEFAULT_TAGS
    data = Dataset(per_tag * len(tags), first=first, tags=tags)
    fake.tweets.clear()  # X returns the newest first: only this batch, so every run stores 1,000
    places = [place_object(i) for i in range(len(PLACES))]
    bodies = []
    for index, tag in enumerate(tags):
        numbers = [n for n in range(first, first + data.tweets) if data.tag_of(n) == index]
        numbers.sort(key=data.tweet_id, reverse=True)
        users = [data.user_object(data.author_of(n)) for n in numbers]
        fake.add(tag, [data.tweet_object(n) for n in numbers], users, places)
        bodies.append(data.page_body(numbers, None))
    return bodies


async def _serve_fake(fake: FakeX) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    port = procs.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def _metrics(proc: procs.Proc) -> str:
    with urllib.request.urlopen(proc.url("/metrics"), timeout=10) as response:  # noqa: S310
        return str(response.read().decode())


def _post(url: str) -> tuple[int, dict[str, Any]]:
    import json
    import urllib.error

    request = urllib.request.Request(url, method="POST", data=b"")  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read() or b"{}")


async def fetching_service(
    name: str, url: str, fake_port: int, *, loop: str, log_dir: Path
) -> procs.Proc:
    """The service process on the database at `url`, fetching 100 tweets per tag from the fake
    X API on `fake_port`."""
    return await asyncio.to_thread(
        procs.service,
        name,
        database_url=url,
        loop=loop,
        log_level="INFO",
        log_dir=log_dir,
        extra_env={
            "TWEET_SOURCE": "x",
            "TWITTER_BEARER_TOKEN": BEARER,
            "X_API_BASE_URL": f"http://127.0.0.1:{fake_port}",
            "TWEETS_PER_TAG": "100",
        },
    )


async def populate_phase(
    admin_url: str, log_dir: Path, *, runs: int, loop: str
) -> list[PopulateRun]:
    fake = FakeX()
    runner, port = await _serve_fake(fake)
    url = database.create(admin_url, "populate")
    results: list[PopulateRun] = []
    try:
        proc = await fetching_service("populate-api", url, port, loop=loop, log_dir=log_dir)
        try:
            for run in range(runs):
                bodies = _fake_batch(fake, first=run * 10_000, per_tag=100)
                began = time.perf_counter()
                for body in bodies:
                    parse_page(body)
                parse_seconds = time.perf_counter() - began
                results.append(await timed_populate(proc, parse_seconds=parse_seconds))
                status, seconds = results[-1].status, results[-1].seconds
                say(f"populate {run + 1}/{runs}: {status} in {seconds * 1000:.0f} ms")
        finally:
            proc.stop()
    finally:
        await runner.cleanup()
        database.drop(admin_url, url)
    return results


async def timed_populate(proc: procs.Proc, *, parse_seconds: float = 0.0) -> PopulateRun:
    """One POST /api/v1/populate to `proc`, timed end to end, with its per-step seconds (from
    /metrics) and the per-view refresh and store/done times its log lines report."""
    before = step_seconds(await asyncio.to_thread(_metrics, proc))
    log_offset = proc.log_path.stat().st_size if proc.log_path else 0
    began = time.perf_counter()
    status, body = await asyncio.to_thread(_post, proc.url("/api/v1/populate"))
    seconds = time.perf_counter() - began
    after = step_seconds(await asyncio.to_thread(_metrics, proc))
    await asyncio.sleep(0.3)  # the log sink is line-buffered; let it land
    events = _read_events(proc.log_path, log_offset)
    return PopulateRun(
        seconds=seconds,
        status=status,
        tweets_new=int(body.get("tweets_new", 0)),
        steps={k: after[k] - before.get(k, 0.0) for k in after},
        parse_seconds=parse_seconds,
        refresh={
            str(e["view"]): float(e["duration_ms"]) / 1000  # type: ignore[arg-type]
            for e in events
            if e.get("event") == "populate.refresh"
        },
        logged_ms={
            str(e["event"]): float(e["duration_ms"])  # type: ignore[arg-type]
            for e in events
            if e.get("event") in ("populate.store", "populate.done")
        },
    )


def _read_events(path: Path | None, offset: int) -> list[dict[str, object]]:
    if path is None:
        return []
    with path.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode("utf-8", "replace")
    return populate_events(text.splitlines())


# --- ingest at scale: the Populator's store path, in process, against COPY -------------------


@dataclass
class IngestRun:
    label: str
    tweets: int  # distinct tweets the run stored
    rows: int  # tweets + tweet_tags + users + places rows it stored
    fetch_seconds: float  # synthetic pages built and parsed (parse_page) by the source
    parse_seconds: float  # of which parse_page
    store_seconds: float  # the populate.store step: every bulk insert
    refresh: dict[str, float]  # REFRESH ... CONCURRENTLY of each view inside the populate
    total_seconds: float  # the whole populate run
    copy_seconds: float | None = None  # COPY of the same rows into an empty database
    counts: dict[str, int] = field(default_factory=dict)  # table and view rows after the run
    refresh_standalone: dict[str, float] = field(default_factory=dict)


class _Capture:
    """A loguru sink keeping the service's populate.* events while a populate runs in process."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def write(self, message: Any) -> None:
        extra = dict(message.record["extra"])
        if str(extra.get("event", "")).startswith("populate."):
            self.events.append(extra)


def _step_sum(step: str) -> float:
    value = REGISTRY.get_sample_value("populate_step_duration_seconds_sum", {"step": step})
    return float(value or 0.0)


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
    capture = _Capture()
    sink = logger.add(capture.write, level="INFO")
    pool = await service_db.create_pool(url, settings)
    try:
        fetch_before = _step_sum("fetch")
        began = time.perf_counter()
        result = await Populator(pool, source, settings).run()
        total = time.perf_counter() - began
        fetch = _step_sum("fetch") - fetch_before
    finally:
        logger.remove(sink)
        pool.close()
        await pool.wait_closed()
    store = next(e for e in capture.events if e["event"] == "populate.store")
    refresh = {
        str(e["view"]): float(e["duration_ms"]) / 1000
        for e in capture.events
        if e["event"] == "populate.refresh"
    }
    return IngestRun(
        label=label,
        tweets=result.tweets_new,
        rows=0,
        fetch_seconds=fetch,
        parse_seconds=getattr(source, "parse_seconds", 0.0),
        store_seconds=float(store["duration_ms"]) / 1000,
        refresh=refresh,
        total_seconds=total,
    )


async def load_sample(url: str) -> IngestRun:
    """The whole bundled sample (every page of every tag), through the Populator."""
    run = await run_populator(url, SampleSource(SAMPLE_DIR), per_tag=10_000, label="sample")
    run.counts = database.counts(url)
    run.rows = sum(run.counts[t] for t in ("tweets", "tweet_tags", "users", "places"))
    run.refresh_standalone = database.refresh_each(url)
    return run


async def ingest(
    admin_url: str, url: str, dataset: Dataset, label: str, *, compare_copy: bool = True
) -> IngestRun:
    """Populate `dataset` into `url` through the real path; COPY the same rows elsewhere."""
    source = SyntheticSource(dataset)
    per_tag = source.per_tag()
    database.settle(url)
    run = await run_populator(url, source, per_tag=per_tag, label=label)
    rows = rows_of(source.served)
    source.served.clear()
    run.rows = rows.count
    # What autovacuum would do next; done now so that it does not run during the COPY below.
    database.settle(url)
    run.counts = database.counts(url)
    run.refresh_standalone = database.refresh_each(url)
    say(
        f"ingest {label}: {run.tweets:,} tweets, {run.rows:,} rows stored in "
        f"{run.store_seconds:.1f} s (fetch+parse {run.fetch_seconds:.1f} s)"
    )
    if compare_copy:
        copy_url = database.create(admin_url, "copy")
        try:
            database.settle(copy_url)
            run.copy_seconds = database.copy_rows(copy_url, rows)
        finally:
            database.drop(admin_url, copy_url)
        say(f"COPY {label}: {run.rows:,} rows in {run.copy_seconds:.1f} s")
    return run


# --- reads -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One thing to load: a server, a path, request headers; `reference` marks the bare one."""

    name: str  # e.g. "users", "bare"
    kind: str  # "200", "304", "gzip"
    proc: procs.Proc
    path: str
    headers: dict[str, str]
    body_bytes: int
    reference: bool = False
    database_url: str | None = None  # whose transactions to count while it is loaded

    @property
    def url(self) -> str:
        return self.proc.url(self.path)


@dataclass
class Measured:
    case: Case
    connections: int
    summary: Summary
    load_before: float
    db_transactions: int | None  # in the case's database during its runs (all rounds)
    seconds: float  # per run


def _get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    import urllib.error

    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status), _lower(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return 304, _lower(exc.headers.items()), b""
        raise


def _lower(items: Any) -> dict[str, str]:
    # HAProxy sends header names in lower case; compare them that way.
    return {str(k).lower(): str(v) for k, v in items}


def bare_case(proc: procs.Proc) -> Case:
    status, _, body = _get(proc.url("/"), {})
    assert status == 200, status
    return Case("bare", "200", proc, "/", {}, len(body), reference=True)


def read_case(proc: procs.Proc, path: str, kind: str, database_url: str | None = None) -> Case:
    """Checks the response first: a 304 case really answers 304, a gzip case gzip."""
    name = path.rsplit("/", 1)[-1]
    base = {"Accept-Encoding": "gzip"} if kind == "gzip" else {}
    status, headers, body = _get(proc.url(path), base)
    if status != 200:
        raise RuntimeError(f"GET {path} answered {status}")
    # A gzip case of a body under the service's compression threshold (256 B) stays identity.
    if kind != "304":
        return Case(name, kind, proc, path, base, len(body), database_url=database_url)
    conditional = {"If-None-Match": headers["etag"]}
    status, _, _ = _get(proc.url(path), conditional)
    if status != 304:
        raise RuntimeError(f"GET {path} with If-None-Match answered {status}, not 304")
    return Case(name, kind, proc, path, conditional, 0, database_url=database_url)


def measure(
    loadgen: LoadGenerator,
    cases: Sequence[Case],
    *,
    connections: int,
    rounds: int,
    seconds: float,
    warmup: float,
    label: str,
) -> list[Measured]:
    """Interleaved rounds: round r loads every case once, in order, before round r+1 starts,
    so slow drifts of the machine (other processes, heat) hit every case alike."""
    for case in {c.proc.name: c for c in cases}.values():
        if warmup > 0:
            loadgen.run(case.url, connections=connections, seconds=warmup, headers=case.headers)
    runs: dict[int, list[Any]] = {i: [] for i in range(len(cases))}
    xacts: dict[int, int] = {}
    load_before = loadavg()
    for _ in range(rounds):
        for i, case in enumerate(cases):
            before = database.transactions(case.database_url) if case.database_url else 0
            runs[i].append(
                loadgen.run(
                    case.url, connections=connections, seconds=seconds, headers=case.headers
                )
            )
            if case.database_url:
                spent = database.transactions(case.database_url) - before
                xacts[i] = xacts.get(i, 0) + spent - database.COUNTING_TRANSACTIONS
            time.sleep(0.2)  # let the sockets of the previous run close
    measured = [
        Measured(case, connections, summarize(runs[i]), load_before, xacts.get(i), seconds)
        for i, case in enumerate(cases)
    ]
    bare = next((m for m in measured if m.case.reference), None)
    line = ", ".join(
        f"{m.case.name}/{m.case.kind} {m.summary.rps:,.0f}" for m in measured if m is not bare
    )
    say(
        f"reads {label} c{connections}: bare {bare.summary.rps:,.0f} rps; {line}"
        if bare
        else f"reads {label} c{connections}: {line}"
    )
    return measured


def read_cases(
    app: procs.Proc, kinds: Sequence[str], paths: Sequence[str], database_url: str | None = None
) -> list[Case]:
    return [read_case(app, path, kind, database_url) for kind in kinds for path in paths]


READ_PATHS = ("/api/v1/users", "/api/v1/hour", "/api/v1/tags")


# --- profiles ----------------------------------------------------------------------------------

PROFILE_KEEP = (
    "service/",
    "web_protocol",
    "web_response",
    "http_writer",
    "selector_events",
    "log.py",
)


def profile(
    loadgen: LoadGenerator, case: Case, *, seconds: float, out_dir: Path
) -> dict[str, Any] | None:
    """py-spy samples the serving process while the load generator loads `case` (50 conns)."""
    import shutil
    import subprocess

    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return None
    raw = out_dir / f"profile-{case.proc.name}-{case.name}-{case.kind}.txt"
    command = [spy, "record", "--pid", str(case.proc.pid), "--duration", str(round(seconds))]
    command += ["--rate", "200", "--format", "raw", "--nonblocking", "--output", str(raw)]
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # attached before the load starts
        result = loadgen.run(case.url, connections=50, seconds=seconds, headers=case.headers)
        recorder.wait(timeout=seconds + 30)
    except BaseException:
        recorder.kill()
        raise
    if recorder.returncode != 0 or not raw.exists():
        say(f"py-spy could not profile {case.proc.name} (exit {recorder.returncode})")
        return None
    summary = collapsed_profile(raw.read_text(), keep=PROFILE_KEEP)
    return {
        "process": case.proc.name,
        "path": case.path,
        "kind": case.kind,
        "rps_while_profiled": round(result.rps, 1),
        "samples": summary.samples,
        "self_pct": summary.self_pct,
        "inclusive_pct": summary.inclusive_pct,
        "categories_pct": summary.categories_pct,
        "raw": str(raw.relative_to(procs.ROOT)) if raw.is_relative_to(procs.ROOT) else str(raw),
    }
