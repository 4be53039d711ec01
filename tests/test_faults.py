"""Failure semantics: crash, database outage, graceful shutdown, replicas.

Most tests here run the real server process (`python -m service serve`) and do to it what
production does: SIGKILL, SIGTERM, a PostgreSQL that stops, two replicas on one database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import aiopg
import psycopg2
import pytest

from service import db
from service.cache import ViewCache, background, watching
from service.config import Settings
from service.errors import ServiceStopping
from service.ingestion import Populator
from service.sources.sample import SampleSource
from service.testing.fake_x import FakeX, tweet
from tests import dataset
from tests.database import Database
from tests.service_process import API_TOKEN, ServiceProcess, Spawn, fetch, leaks, service_env

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@contextlib.contextmanager
def holding(url: str, statement: str) -> Iterator[psycopg2.extensions.connection]:
    """Run `statement` in a transaction kept open, with its locks, until the block ends."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
        yield conn
    finally:
        with contextlib.suppress(psycopg2.Error):
            conn.rollback()
        conn.close()


def lock_waiters(db: Database, table: str) -> list[int]:
    """Backends waiting for a lock on `table` in this database."""
    rows = db.execute(
        """
        SELECT l.pid FROM pg_locks AS l JOIN pg_class AS c ON c.oid = l.relation
         WHERE NOT l.granted AND c.relname = %(table)s
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        """,
        {"table": table},
    )
    return [int(row[0]) for row in rows]


def backend_alive(db: Database, pid: int) -> bool:
    return bool(
        db.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = %(pid)s", {"pid": pid})
    )


def populate_lock_held(db: Database) -> bool:
    # service.db.POPULATE_LOCK as pg_locks shows a bigint advisory key: objid is its low half.
    # Advisory locks are per database; other databases on a shared server have their own.
    return bool(
        db.scalar(
            """
            SELECT count(*) FROM pg_locks
             WHERE locktype = 'advisory' AND objid = %(key)s
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
            """,
            {"key": 0x7A61_0002},
        )
    )


async def eventually(
    check: Callable[[], Any], *, within: float, what: str, interval: float = 0.05
) -> Any:
    """Poll `check` (a blocking call, run in a thread) until it returns a truthy value."""
    deadline = time.monotonic() + within
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(interval)


def runs(db: Database) -> list[tuple[int, str]]:
    return [
        (int(r[0]), str(r[1]))
        for r in db.execute("SELECT id, status FROM populate_runs ORDER BY id")
    ]


class _SwallowOneCancellation:
    """What asyncio.wait_for does on Python 3.11 when a cancellation arrives just as the awaited
    operation completes (aiopg awaits every statement with it): it returns normally, once."""

    def __init__(self) -> None:
        self.swallowed = False

    async def __call__(self, *args: Any, **kwargs: Any) -> None:
        del args, kwargs
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            if self.swallowed:
                raise
            self.swallowed = True


async def test_cache_watcher_stops_even_when_a_poll_swallowed_the_cancellation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    poll = _SwallowOneCancellation()
    monkeypatch.setattr(ViewCache, "poll_once", poll)
    cache = ViewCache(cast(aiopg.Pool, None), timeout=1)

    async def watch_briefly() -> None:
        async with watching(cache):
            await asyncio.sleep(0.05)  # the watcher is inside its poll

    task = asyncio.create_task(watch_briefly())
    done, _ = await asyncio.wait({task}, timeout=3)

    assert poll.swallowed
    assert task in done, "the watcher kept polling after it was cancelled"


async def test_scheduled_populates_stop_even_when_a_run_swallowed_the_cancellation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = _SwallowOneCancellation()
    monkeypatch.setattr(Populator, "run", run)
    settings = Settings()
    populator = Populator(cast(aiopg.Pool, None), SampleSource(settings.sample_dir), settings)

    async def schedule_briefly() -> None:
        # As app._scheduled runs them.
        async with background(populator.run_every(0.01), "scheduled-populate"):
            await asyncio.sleep(0.1)  # inside a run

    task = asyncio.create_task(schedule_briefly())
    done, _ = await asyncio.wait({task}, timeout=3)

    assert run.swallowed
    assert task in done, "scheduled populates went on after they were cancelled"


async def test_shutdown_stops_a_populate_that_swallowed_its_cancellation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def stubborn_run(*args: Any) -> None:
        del args
        with contextlib.suppress(asyncio.CancelledError):  # as wait_for may, once
            await asyncio.sleep(30)
        await asyncio.sleep(30)  # and on to its next statement

    monkeypatch.setattr(Populator, "_run", stubborn_run)
    settings = Settings()
    populator = Populator(cast(aiopg.Pool, None), SampleSource(settings.sample_dir), settings)
    run = asyncio.create_task(populator.run())
    await asyncio.sleep(0.05)

    stop = asyncio.create_task(populator.stop(0.1))
    done, _ = await asyncio.wait({stop}, timeout=3)

    assert stop in done, "the shutdown waited for the populate"
    with pytest.raises(ServiceStopping):
        await run


async def test_close_pool_returns_when_a_connection_comes_back_closed(
    clean_db: Database, settings: Settings
) -> None:
    # What a request cancelled at shutdown does: aiopg closes the connection of a cancelled
    # statement, and the request hands it back while the pool is already closing.
    pool = await db.create_pool(clean_db.url, settings)
    conn = await pool.acquire()
    closing = asyncio.create_task(db.close_pool(pool, wait=30))
    await asyncio.sleep(0.1)
    conn.close()
    await pool.release(conn)

    done, _ = await asyncio.wait({closing}, timeout=2)

    assert closing in done, "the pool never finished closing"
    assert pool.closed


@pytest.mark.slow
async def test_crash_mid_populate_leaves_nothing_and_no_stale_lock(
    spawn: Spawn, clean_db: Database, fake_x: FakeX
) -> None:
    dataset.load(fake_x)
    env = service_env(clean_db.url, fake_x)
    service = spawn(env)
    await service.wait_live()

    async with aiohttp.ClientSession() as session:
        # The store step inserts users, places and tweets, then waits here for tweet_tags.
        with holding(clean_db.url, "LOCK TABLE tweet_tags IN SHARE MODE"):
            request = asyncio.create_task(
                fetch(session, "POST", service.url("/api/v1/populate"), headers=AUTH)
            )
            waiters = await eventually(
                lambda: lock_waiters(clean_db, "tweet_tags"),
                within=15,
                what="the populate waits for its tweet_tags insert",
            )
            service.send(signal.SIGKILL)
            assert await service.wait_exit(5) == -signal.SIGKILL
            with pytest.raises(aiohttp.ClientError):
                await request
            # Still holding the lock: the dead process's statement must not outlive it, or its
            # transaction would keep the populate lock until the statement ends.
            await eventually(
                lambda: not any(backend_alive(clean_db, pid) for pid in waiters),
                within=5,
                what="the killed process's backend ends",
            )
        assert not populate_lock_held(clean_db)
        assert clean_db.counts() == {"tweets": 0, "tweet_tags": 0, "users": 0, "places": 0}
        assert runs(clean_db) == [(1, "running")]

        restarted = spawn(env)
        await restarted.wait_live()
        # Marked at startup, before any populate.
        assert runs(clean_db) == [(1, "abandoned")]
        assert clean_db.counts() == {"tweets": 0, "tweet_tags": 0, "users": 0, "places": 0}

        status, body, _, _ = await fetch(
            session, "POST", restarted.url("/api/v1/populate"), headers=AUTH
        )
        assert status == 201, body
        assert runs(clean_db) == [(1, "abandoned"), (2, "succeeded")]
        assert clean_db.counts() == {"tweets": 7, "tweet_tags": 8, "users": 5, "places": 3}
        assert clean_db.scalar("SELECT count(*) FROM tweets WHERE run_id = 1") == 0


class EmbeddedPostgres:
    """A PostgreSQL of the test's own (pgserver), which it may stop and start again."""

    def __init__(self, directory: Path) -> None:
        from tests.database import start_embedded

        self.server = start_embedded(directory)
        info = self.server.get_postmaster_info()
        self.socket_dir = info.socket_dir
        self.url = self.server.get_uri()

    def _pg_ctl(self, *args: str) -> None:
        from pgserver import _commands

        # pgserver defines one function per bundled executable at import time.
        pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]
        pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=30)

    def stop(self) -> None:
        # immediate: no shutdown checkpoint, backends end at once; like a crash or a failover.
        self._pg_ctl("-w", "-m", "immediate", "stop")

    def start(self) -> None:
        # The arguments pgserver starts it with: no TCP, the same socket directory.
        self._pg_ctl(
            "-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.server.log), "start"
        )

    def processes(self) -> list[int]:
        """The postmaster and every process it started (backends, checkpointer, ...)."""
        postmaster = int((self.server.pgdata / "postmaster.pid").read_text().split()[0])
        db = Database(url=self.url)
        others = db.execute("SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()")
        return [postmaster] + [int(row[0]) for row in others]

    def close(self) -> None:
        # pgserver only stops the server it started itself: a restarted one is stopped here.
        with contextlib.suppress(Exception):
            self._pg_ctl("-w", "-m", "immediate", "stop")
        self.server.cleanup()


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    # Not under tmp_path: pgserver runs postgres as another user when the tests run as root.
    directory = Path(tempfile.mkdtemp(prefix="hashtag-faults-pg-"))
    pg = EmbeddedPostgres(directory / "data")
    try:
        yield pg
    finally:
        pg.close()
        shutil.rmtree(directory, ignore_errors=True)


class Reader:
    """Reads in a loop against one service, recording (start, seconds, status, code)."""

    PATHS = ("/api/v1/users", "/api/v1/hour", "/api/v1/tags")

    def __init__(self, session: aiohttp.ClientSession, service: ServiceProcess) -> None:
        self.session = session
        self.service = service
        self.results: list[tuple[float, float, int, str | None]] = []
        self.bodies: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def _loop(self, pause: float) -> None:
        n = 0
        while True:
            path = self.PATHS[n % len(self.PATHS)]
            n += 1
            started = time.monotonic()
            status, body, text, seconds = await fetch(self.session, "GET", self.service.url(path))
            code = body["error"]["code"] if status >= 400 and isinstance(body, dict) else None
            self.results.append((started, seconds, status, code))
            if status >= 400:
                self.bodies.append(text)
            await asyncio.sleep(pause)

    def start(self, pause: float = 0.02) -> None:
        self._task = asyncio.create_task(self._loop(pause))

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def between(self, start: float, end: float) -> list[tuple[float, float, int, str | None]]:
        return [r for r in self.results if start <= r[0] and r[0] + r[1] <= end]


@pytest.mark.slow
async def test_database_outage_answers_503_fast_and_recovers_without_restart(
    spawn: Spawn, own_postgres: EmbeddedPostgres, fake_x: FakeX
) -> None:
    db_timeout = 2.0
    db = Database(url=own_postgres.url)
    dataset.load(fake_x)
    service = spawn(service_env(own_postgres.url, fake_x, DB_TIMEOUT=str(db_timeout)), migrate=True)
    await service.wait_live()

    async with aiohttp.ClientSession() as session:
        status, body, _, _ = await fetch(
            session, "POST", service.url("/api/v1/populate"), headers=AUTH
        )
        assert status == 201, body
        before = db.counts()
        # New tweets for the populate that the outage interrupts.
        fake_x.add("#devops", [tweet(i, 501, "2026-11-21T10:00:00.000Z") for i in (3001, 3002)])
        reader = Reader(session, service)
        reader.start()
        await asyncio.sleep(0.3)

        with holding(own_postgres.url, "LOCK TABLE tweet_tags IN SHARE MODE"):
            populate = asyncio.create_task(
                fetch(session, "POST", service.url("/api/v1/populate"), headers=AUTH)
            )
            await eventually(
                lambda: lock_waiters(db, "tweet_tags"),
                within=15,
                what="the populate waits for its tweet_tags insert",
            )
            stopped_at = time.monotonic()
            await asyncio.to_thread(own_postgres.stop)

        # The populate in flight fails cleanly.
        status, body, _, _ = await populate
        assert status == 503, body
        assert body["error"]["code"] == "database_unavailable"

        # Within the cache's confirmation window reads may still be served; then 503.
        await asyncio.sleep(2.7)
        outage: list[tuple[int, Any, str, float]] = []
        for path in ("/api/health", "/ready", "/live", "/api/v1/users?limit=3"):
            outage.append(await fetch(session, "GET", service.url(path)))
        await asyncio.sleep(1.0)
        restarted_at = time.monotonic()
        await asyncio.to_thread(own_postgres.start)
        back_at = time.monotonic()

        health, ready, live, users = outage
        assert health[0] == 500
        assert health[1]["database"]["ok"] is False
        assert health[1]["status"] == "degraded"
        assert ready[0] == 503
        assert live[0] == 200
        assert users[0] == 503
        assert users[1]["error"]["code"] == "database_unavailable"
        assert service.alive()

        down = reader.between(stopped_at + 2.2, restarted_at)
        assert len(down) >= 20, "too few reads during the outage"
        assert {r[2] for r in down} == {503}
        assert {r[3] for r in down} == {"database_unavailable"}
        assert max(r[1] for r in down) < db_timeout + 0.5

        # Served again within seconds of the database's return, by the same process.
        deadline = back_at + 5
        while not reader.between(back_at, float("inf")) or reader.results[-1][2] != 200:
            assert time.monotonic() < deadline, "reads did not recover within 5 s"
            await asyncio.sleep(0.05)
        await reader.stop()
        assert service.alive()
        # Nothing of the interrupted run was stored.
        assert db.counts() == before
        assert db.scalar("SELECT count(*) FROM tweets WHERE id IN (3001, 3002)") == 0

        status, body, _, _ = await fetch(
            session, "POST", service.url("/api/v1/populate"), headers=AUTH
        )
        assert status == 201, body
        assert body["tweets_new"] == 2
        # (Identity values jump after a crash recovery: compare the statuses in order.)
        assert [status for _, status in runs(db)] == ["succeeded", "abandoned", "succeeded"]
        for path in ("/metrics", "/api/health"):
            _, _, text, _ = await fetch(session, "GET", service.url(path))
            assert not leaks(text)
        assert not leaks("".join(reader.bodies) + str(outage))


async def refused(url: str) -> bool:
    """True when nothing accepts a connection at `url` any more."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)):
                return False
        except aiohttp.ClientConnectorError:
            return True
        except (aiohttp.ClientError, TimeoutError):
            return False


@pytest.mark.slow
async def test_sigterm_finishes_in_flight_requests_then_exits_0(
    spawn: Spawn, clean_db: Database, fake_x: FakeX
) -> None:
    dataset.load(fake_x)
    fake_x.delay = 1.0  # the populate is fetching when SIGTERM arrives
    service = spawn(service_env(clean_db.url, fake_x, SHUTDOWN_TIMEOUT="8"))
    await service.wait_live()

    async with aiohttp.ClientSession() as session:
        # A plain (not CONCURRENTLY) refresh locks out readers until its transaction ends.
        with holding(clean_db.url, "REFRESH MATERIALIZED VIEW tweets_per_hour"):
            read = asyncio.create_task(fetch(session, "GET", service.url("/api/v1/hour")))
            await eventually(
                lambda: lock_waiters(clean_db, "tweets_per_hour"),
                within=10,
                what="the read waits for the view",
            )
            populate = asyncio.create_task(
                fetch(session, "POST", service.url("/api/v1/populate"), headers=AUTH)
            )
            await eventually(lambda: fake_x.requests, within=10, what="the populate fetches")
            service.send(signal.SIGTERM)
            signalled = time.monotonic()
            # It stops accepting at once ...
            while not await refused(service.url("/live")):
                assert time.monotonic() - signalled < 2, "still accepting after SIGTERM"
                await asyncio.sleep(0.05)
        # ... and answers what it had already accepted, normally.
        status, body, _, _ = await read
        assert (status, body) == (200, [])
        status, body, _, _ = await populate
        assert status == 201, body

    assert await service.wait_exit(10) == 0
    assert time.monotonic() - signalled < 8
    assert runs(clean_db) == [(1, "succeeded")]
    assert clean_db.counts() == {"tweets": 7, "tweet_tags": 8, "users": 5, "places": 3}
    assert "database pool closed" in service.logs()


@pytest.mark.slow
async def test_sigterm_rolls_back_a_populate_that_outlasts_the_shutdown_timeout(
    spawn: Spawn, clean_db: Database, fake_x: FakeX
) -> None:
    dataset.load(fake_x)
    service = spawn(service_env(clean_db.url, fake_x, SHUTDOWN_TIMEOUT="1"))
    await service.wait_live()

    async with aiohttp.ClientSession() as session:
        with holding(clean_db.url, "LOCK TABLE tweet_tags IN SHARE MODE"):
            populate = asyncio.create_task(
                fetch(session, "POST", service.url("/api/v1/populate"), headers=AUTH)
            )
            waiters = await eventually(
                lambda: lock_waiters(clean_db, "tweet_tags"),
                within=15,
                what="the populate waits for its tweet_tags insert",
            )
            service.send(signal.SIGTERM)
            signalled = time.monotonic()

            status, body, _, _ = await populate
            assert status == 503, body
            assert body["error"]["code"] == "service_stopping"
            assert await service.wait_exit(10) == 0
            assert time.monotonic() - signalled < 5
            # Rolled back while the lock is still held: the backend goes with its transaction
            # and the populate lock, and the run is marked failed.
            await eventually(
                lambda: not any(backend_alive(clean_db, pid) for pid in waiters),
                within=3,
                what="the stopped populate's backend ends",
            )
            assert not populate_lock_held(clean_db)
            run = clean_db.execute("SELECT status, error FROM populate_runs")
            assert len(run) == 1
            assert run[0][0] == "failed"
            assert "stopped" in run[0][1]
    assert clean_db.counts() == {"tweets": 0, "tweet_tags": 0, "users": 0, "places": 0}
    assert "database pool closed" in service.logs()


def load_bulk(db: Database, authors: int) -> None:
    """`authors` users with one tweet each, stored by a run of their own: top_users gets that many
    rows, and a concurrent refresh of it takes seconds."""
    run_id = db.scalar(
        "INSERT INTO populate_runs (source, tags, status) VALUES ('x', '{#bulk}', 'succeeded') "
        "RETURNING id"
    )
    db.execute(
        """
        INSERT INTO users (id, username, name, followers_count, following_count, tweet_count, raw)
        SELECT 1000000 + g, 'bulk' || g, 'Bulk ' || g, (g * 7919) %% 1000003, 1, 1, '{}'
          FROM generate_series(1, %(n)s) AS g
        """,
        {"n": authors},
    )
    db.execute(
        """
        INSERT INTO tweets (id, author_id, created_at, lang, text, raw, run_id)
        SELECT 10000000 + g, 1000000 + g, timestamptz '2026-11-01' + (g %% 500) * interval '1 hour',
               (ARRAY['en', 'pt', 'es', 'und'])[1 + g %% 4], 'bulk', '{}', %(run)s
          FROM generate_series(1, %(n)s) AS g
        """,
        {"n": authors, "run": run_id},
    )
    for view in ("top_users", "tweets_per_hour", "tweets_per_tag"):
        db.execute(f"REFRESH MATERIALIZED VIEW {view}")  # fixed names


class RefreshWatch:
    """Samples pg_stat_activity from a thread: when a REFRESH ... CONCURRENTLY was running."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.seen: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        with contextlib.closing(psycopg2.connect(self.db.url)) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                while not self._stop.is_set():
                    cur.execute(
                        """
                        SELECT count(*) FROM pg_stat_activity
                         WHERE datname = current_database() AND state = 'active'
                           AND query LIKE 'REFRESH MATERIALIZED VIEW CONCURRENTLY%%'
                        """
                    )
                    row = cur.fetchone()
                    if row and row[0]:
                        self.seen.append(time.monotonic())
                    time.sleep(0.01)

    def __enter__(self) -> RefreshWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.slow
async def test_replicas_populate_once_and_reads_never_wait_for_a_refresh(
    spawn: Spawn, clean_db: Database, fake_x: FakeX
) -> None:
    dataset.load(fake_x)
    fake_x.delay = 0.5  # every populate overlaps the first one
    env = service_env(clean_db.url, fake_x)
    replicas = [spawn(env), spawn(env)]
    await asyncio.gather(*(r.wait_live() for r in replicas))

    async with aiohttp.ClientSession() as session:
        populates = [
            fetch(session, "POST", replica.url("/api/v1/populate"), headers=AUTH)
            for replica in replicas * 3
        ]
        results = await asyncio.gather(*populates)
        assert sorted(status for status, *_ in results) == [201, 409, 409, 409, 409, 409]
        assert {body["error"]["code"] for status, body, *_ in results if status == 409} == {
            "populate_in_progress"
        }
        assert runs(clean_db) == [(1, "succeeded")]

        fake_x.delay = 0
        await asyncio.to_thread(load_bulk, clean_db, 100_000)
        # Reads while a populate refreshes the views: mostly first reads of a `limit`, which
        # each replica renders from top_users, the view being refreshed.
        reads: list[tuple[int, int, float, float, int]] = []  # replica, limit, start, s, status
        done = asyncio.Event()

        async def read(index: int) -> None:
            limit = 0
            while not done.is_set():
                limit = limit % 100 + 1
                started = time.monotonic()
                url = replicas[index].url(f"/api/v1/users?limit={limit}")
                status, _, _, seconds = await fetch(session, "GET", url)
                reads.append((index, limit, started, seconds, status))
                await asyncio.sleep(0.02)

        with RefreshWatch(clean_db) as refresh:
            readers = [asyncio.create_task(read(i)) for i in (0, 1, 0, 1)]
            await asyncio.sleep(0.2)
            status, body, _, _ = await fetch(
                session, "POST", replicas[0].url("/api/v1/populate?full=true"), headers=AUTH
            )
            await asyncio.sleep(0.2)
            done.set()
            await asyncio.gather(*readers)
        assert status == 201, body

    assert refresh.seen, "no refresh was seen running"
    start, end = refresh.seen[0], refresh.seen[-1]
    assert end - start > 1.0, f"the refresh took {end - start:.2f} s: too small to tell"
    assert {r[4] for r in reads} == {200}
    during = [r for r in reads if r[2] + r[3] > start and r[2] < end]
    first_reads: set[tuple[int, int]] = set()
    uncached = 0
    for replica, limit, started, _, _ in sorted(reads, key=lambda r: r[2]):
        if (replica, limit) not in first_reads:
            first_reads.add((replica, limit))
            uncached += start < started < end
    assert len(during) >= 40
    assert uncached >= 20
    slowest = max(r[3] for r in reads)
    assert slowest < 0.5, f"a read took {slowest:.2f} s during the refresh"


@pytest.mark.slow
async def test_database_hang_answers_503_within_db_timeout_and_recovers(
    spawn: Spawn, own_postgres: EmbeddedPostgres, fake_x: FakeX
) -> None:
    db_timeout = 2.0
    dataset.load(fake_x)
    service = spawn(service_env(own_postgres.url, fake_x, DB_TIMEOUT=str(db_timeout)), migrate=True)
    await service.wait_live()

    async with aiohttp.ClientSession() as session:
        status, body, _, _ = await fetch(
            session, "POST", service.url("/api/v1/populate"), headers=AUTH
        )
        assert status == 201, body
        readers = [Reader(session, service) for _ in range(4)]
        for reader in readers:
            reader.start()
        await asyncio.sleep(0.3)

        # Every PostgreSQL process frozen: connections open, nothing answers (a partition, a
        # stuck server). Only timeouts can end a request now.
        frozen = await asyncio.to_thread(own_postgres.processes)
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            await asyncio.sleep(3.0)  # the cache's confirmation window passes, reads hang
            health = await fetch(session, "GET", service.url("/api/health"))
            await asyncio.sleep(3.0)
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        resumed_at = time.monotonic()

        assert health[0] == 500
        assert health[1]["database"] == {"ok": False, "error": "timeout"}
        assert health[3] < db_timeout + 1
        hung = [r for reader in readers for r in reader.between(stopped_at + 2.0, resumed_at)]
        assert len(hung) >= 4, "too few reads completed while the database hung"
        assert {r[2] for r in hung} == {503}
        assert {r[3] for r in hung} == {"database_unavailable"}
        slowest = max(r[1] for reader in readers for r in reader.results if r[0] >= stopped_at)
        assert slowest < db_timeout + 1, f"a read took {slowest:.2f} s"

        deadline = resumed_at + 5
        while any(reader.results[-1][2] != 200 for reader in readers):
            assert time.monotonic() < deadline, "reads did not recover within 5 s"
            await asyncio.sleep(0.05)
        for reader in readers:
            await reader.stop()
        assert service.alive()
