"""Failure semantics: crash, database outage, graceful shutdown, replicas.

Most tests here run the real server process (`python -m service serve`) and do to it what
production does: SIGKILL, SIGTERM, a PostgreSQL that stops, two replicas on one database.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import aiohttp
import aiopg
import pytest

from service import db
from service.cache import CONFIRM_WINDOW, ViewCache, watching
from service.config import Settings
from service.errors import ServiceStopping
from service.ingestion import Populator
from service.matviews import VIEWS
from service.sources.sample import SampleSource
from service.tasks import background, populate_every
from testing.fake_x import FakeX, tweet, user
from testing.waiting import eventually
from tests import dataset
from tests.database import Database, OwnServer
from tests.service_process import API_TOKEN, ServiceProcess, Spawn, fetch, leaks, service_env

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
# How long a test waits for something that must happen before it calls it a hang: a failure
# limit, not a speed expectation. Waits on a started process get WAIT.
HANG = 30.0
WAIT = 60.0

Answer = tuple[int, Any, str, float]  # fetch's (status, JSON body, text, seconds)
Start = Callable[..., Awaitable[ServiceProcess]]


@pytest.fixture
def start(spawn: Spawn, fake_x: FakeX) -> Start:
    """Start a server process on the database at `url`, the dataset on the fake X, and wait
    until it is live; keyword arguments set more of its environment."""
    dataset.load(fake_x)

    async def live(url: str, *, migrate: bool = False, **env: str) -> ServiceProcess:
        service = spawn(service_env(url, fake_x, **env), migrate=migrate)
        await service.wait_live()
        return service

    return live


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def populate(session: aiohttp.ClientSession, service: ServiceProcess) -> Answer:
    return await fetch(session, "POST", service.url("/api/v1/populate"), headers=AUTH)


async def populated(session: aiohttp.ClientSession, service: ServiceProcess) -> Any:
    status, body, _, _ = await populate(session, service)
    assert status == 201, body
    return body


def lock_waiters(db: Database, table: str) -> list[int]:
    rows = db.execute(
        """
        SELECT l.pid FROM pg_locks AS l JOIN pg_class AS c ON c.oid = l.relation
         WHERE NOT l.granted AND c.relname = %(table)s
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        """,
        {"table": table},
    )
    return [int(row[0]) for row in rows]


async def waiting_on(db: Database, table: str, what: str) -> list[int]:
    """Once backends wait for a lock on `table`: their pids."""
    return await eventually(
        lambda: asyncio.to_thread(lock_waiters, db, table), within=WAIT, what=what
    )


@contextlib.asynccontextmanager
async def populate_held_in_store(
    session: aiohttp.ClientSession, service: ServiceProcess, db: Database
) -> AsyncIterator[tuple[asyncio.Task[Answer], list[int]]]:
    """A populate stopped in its store step: users, places and tweets inserted, its tweet_tags
    insert waiting for a lock the test holds until the block ends. The request, and the
    backends that wait."""
    with db.holding("LOCK TABLE tweet_tags IN SHARE MODE"):
        request = asyncio.create_task(populate(session, service))
        yield request, await waiting_on(db, "tweet_tags", "the populate waits to insert tweet_tags")


def backends_gone(db: Database, pids: list[int]) -> bool:
    return not db.scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%(pids)s)", {"pids": pids}
    )


async def gone_with(db: Database, waiters: list[int], what: str) -> None:
    await eventually(lambda: asyncio.to_thread(backends_gone, db, waiters), within=HANG, what=what)


async def kill_while_held(
    service: ServiceProcess, request: asyncio.Task[Answer], db: Database, waiters: list[int]
) -> None:
    """SIGKILL `service` while `request` waits on a lock the test holds: the process dies, the
    request fails, and its backends `waiters` end. A dead process's statement must not outlive
    it, or its transaction would keep the populate lock until the statement ends."""
    service.send(signal.SIGKILL)
    assert await service.wait_exit(HANG) == -signal.SIGKILL
    with pytest.raises(aiohttp.ClientError):
        await request
    await gone_with(db, waiters, "the killed process's backend ends")


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


def runs(db: Database) -> list[tuple[int, str]]:
    return [
        (int(r[0]), str(r[1]))
        for r in db.execute("SELECT id, status FROM populate_runs ORDER BY id")
    ]


async def ends(task: asyncio.Task[Any]) -> bool:
    """Whether `task` ends: within HANG, a bound on a hang, not on the machine's speed."""
    done, _ = await asyncio.wait({task}, timeout=HANG)
    return task in done


def sample_populator() -> Populator:
    settings = Settings()
    return Populator(cast(aiopg.Pool, None), SampleSource(settings.sample_dir), settings)


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


@pytest.mark.parametrize("loop", ["cache watcher", "scheduled populates"])
async def test_background_loops_stop_even_when_a_step_swallowed_the_cancellation(
    monkeypatch: pytest.MonkeyPatch, loop: str
) -> None:
    step = _SwallowOneCancellation()
    running: contextlib.AbstractAsyncContextManager[Any]
    if loop == "cache watcher":
        monkeypatch.setattr(ViewCache, "poll_once", step)
        running = watching(ViewCache(cast(aiopg.Pool, None), timeout=1))
    else:
        monkeypatch.setattr(Populator, "run", step)
        # As app._scheduled runs them.
        running = background(populate_every(0.01, sample_populator().run), "scheduled-populate")

    async def run_briefly() -> None:
        async with running:
            await asyncio.sleep(0.1)  # inside a step

    assert await ends(asyncio.create_task(run_briefly())), f"the {loop} went on, cancelled"
    assert step.swallowed


async def test_shutdown_stops_a_populate_that_swallowed_its_cancellation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def stubborn_run(*args: Any) -> None:
        del args
        with contextlib.suppress(asyncio.CancelledError):  # as wait_for may, once
            await asyncio.sleep(30)
        await asyncio.sleep(30)  # and on to its next statement

    monkeypatch.setattr(Populator, "_run", stubborn_run)
    populator = sample_populator()
    run = asyncio.create_task(populator.run())
    await asyncio.sleep(0.05)

    assert await ends(asyncio.create_task(populator.stop(0.1))), "shutdown waited for populate"
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

    assert await ends(closing), "the pool never finished closing"
    assert pool.closed


@pytest.mark.slow
async def test_crash_mid_populate_leaves_nothing_and_no_stale_lock(
    start: Start, session: aiohttp.ClientSession, clean_db: Database
) -> None:
    service = await start(clean_db.url)
    async with populate_held_in_store(session, service, clean_db) as (request, waiters):
        await kill_while_held(service, request, clean_db, waiters)
    assert not populate_lock_held(clean_db)
    assert clean_db.counts() == dataset.NOTHING
    assert runs(clean_db) == [(1, "running")]

    restarted = await start(clean_db.url)
    # Marked at startup, before any populate.
    assert runs(clean_db) == [(1, "abandoned")]
    assert clean_db.counts() == dataset.NOTHING

    await populated(session, restarted)
    assert runs(clean_db) == [(1, "abandoned"), (2, "succeeded")]
    assert clean_db.counts() == dataset.STORED
    assert clean_db.scalar("SELECT count(*) FROM tweets WHERE run_id = 1") == 0


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

    def since(self, start: float) -> list[tuple[float, float, int, str | None]]:
        return [r for r in self.results if start <= r[0]]

    def answered_ok(self, start: float) -> bool:
        return any(r[2] == 200 for r in self.since(start))


async def cache_unconfirmed(service: ServiceProcess, log_from: int) -> float:
    """When reads stop trusting the cache: CONFIRM_WINDOW after the cache's watcher failed a poll
    (logged after `log_from` characters of the service's log). A failed poll means no poll can
    confirm the generation any more, so a read starting after this moment can only be answered
    by the database, whatever the machine's speed."""
    await eventually(
        lambda: "reads bypass the cache" in service.logs()[log_from:],
        within=WAIT,
        what="the cache watcher logs that it cannot read the view generation",
    )
    unconfirmed = time.monotonic() + CONFIRM_WINDOW
    await asyncio.sleep(CONFIRM_WINDOW)
    return unconfirmed


@pytest.mark.slow
async def test_database_outage_answers_503_fast_and_recovers_without_restart(
    start: Start, session: aiohttp.ClientSession, own_postgres: OwnServer, fake_x: FakeX
) -> None:
    # A stopped server refuses connections at once: no read has anything to wait for. DB_TIMEOUT
    # bounds a read that does wait, so one that took as long shows a wait the outage did not
    # call for; it is long enough that no busy machine comes near it otherwise.
    db_timeout = 10.0
    db = Database(url=own_postgres.url)
    service = await start(db.url, migrate=True, DB_TIMEOUT=str(db_timeout))
    await populated(session, service)
    before = db.counts()
    # New tweets for the populate that the outage interrupts.
    fake_x.add("#devops", [tweet(i, 501, "2026-11-21T10:00:00.000Z") for i in (3001, 3002)])
    reader = Reader(session, service)
    reader.start()
    await eventually(lambda: reader.answered_ok(0), within=WAIT, what="a read answers 200")

    async with populate_held_in_store(session, service, db) as (request, _):
        log_from = len(service.logs())
        await asyncio.to_thread(own_postgres.stop)

    # The populate in flight fails cleanly.
    status, body, _, _ = await request
    assert status == 503, body
    assert body["error"]["code"] == "database_unavailable"

    # Reads may be served from memory while the generation counts as confirmed; then 503.
    unconfirmed = await cache_unconfirmed(service, log_from)
    outage: list[Answer] = []
    for path in ("/api/health", "/ready", "/live", "/api/v1/users?limit=3"):
        outage.append(await fetch(session, "GET", service.url(path)))
    await eventually(
        lambda: len(reader.since(unconfirmed)) >= 20,
        within=WAIT,
        what="20 reads answered during the outage",
    )
    restarted_at = time.monotonic()
    await asyncio.to_thread(own_postgres.start)
    back_at = time.monotonic()

    health, _, _, users = outage
    assert [status for status, *_ in outage] == [500, 503, 200, 503]  # health, ready, live, users
    assert (health[1]["status"], health[1]["database"]["ok"]) == ("degraded", False)
    assert users[1]["error"]["code"] == "database_unavailable"
    assert service.alive()

    down = reader.between(unconfirmed, restarted_at)
    assert len(down) >= 20, "too few reads during the outage"
    assert {(r[2], r[3]) for r in down} == {(503, "database_unavailable")}
    slowest = max(r[1] for r in down)
    assert slowest < db_timeout, f"a read waited {slowest:.1f} s for a refused database"

    # Served again once the database is back, by the same process.
    await eventually(
        lambda: reader.answered_ok(back_at), within=WAIT, what="reads answer 200 again"
    )
    await reader.stop()
    assert service.alive()
    # Nothing of the interrupted run was stored.
    assert db.counts() == before
    assert db.scalar("SELECT count(*) FROM tweets WHERE id IN (3001, 3002)") == 0

    assert (await populated(session, service))["tweets_new"] == 2
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
    start: Start, session: aiohttp.ClientSession, clean_db: Database, fake_x: FakeX
) -> None:
    # In-flight requests get SHUTDOWN_TIMEOUT to finish; the test holds them far less. A process
    # that waited out the timeout instead of exiting once they are done takes this long.
    shutdown_timeout = 60.0
    # The read waits for a lock the test holds: DB_TIMEOUT must outlast the holding.
    service = await start(
        clean_db.url, SHUTDOWN_TIMEOUT=str(shutdown_timeout), DB_TIMEOUT=str(HANG)
    )

    # A plain (not CONCURRENTLY) refresh locks out readers until its transaction ends.
    with clean_db.holding("REFRESH MATERIALIZED VIEW tweets_per_hour"):
        read = asyncio.create_task(fetch(session, "GET", service.url("/api/v1/hour")))
        await waiting_on(clean_db, "tweets_per_hour", "the read waits for the view")
        fake_x.pause()  # the populate is fetching when SIGTERM arrives, and stays so
        request = asyncio.create_task(populate(session, service))
        await eventually(lambda: fake_x.requests, within=WAIT, what="the populate fetches")
        service.send(signal.SIGTERM)
        # It stops accepting at once: while both requests are still held here.
        await eventually(
            lambda: refused(service.url("/live")),
            within=HANG,
            what="the service refuses new connections after SIGTERM",
        )
        assert not read.done()
        assert not request.done()
        fake_x.resume()
    # ... and answers what it had already accepted, normally.
    status, body, _, _ = await read
    assert (status, body) == (200, [])
    status, body, _, _ = await request
    assert status == 201, body

    assert await service.wait_exit(shutdown_timeout / 2) == 0
    assert runs(clean_db) == [(1, "succeeded")]
    assert clean_db.counts() == dataset.STORED
    assert "database pool closed" in service.logs()


@pytest.mark.slow
async def test_sigterm_rolls_back_a_populate_that_outlasts_the_shutdown_timeout(
    start: Start, session: aiohttp.ClientSession, clean_db: Database
) -> None:
    shutdown_timeout = 1.0
    service = await start(clean_db.url, SHUTDOWN_TIMEOUT=str(shutdown_timeout))

    # The populate cannot finish on its own while the lock is held, so it ends only if the
    # shutdown cancels it.
    async with populate_held_in_store(session, service, clean_db) as (request, waiters):
        service.send(signal.SIGTERM)

        status, body, _, _ = await request
        assert status == 503, body
        assert body["error"]["code"] == "service_stopping"
        # Its statement would wait for this lock up to DB_WRITE_TIMEOUT (600 s): exiting
        # within the shutdown timeout and a wide margin means it did not.
        assert await service.wait_exit(shutdown_timeout + HANG) == 0
        # Rolled back while the lock is still held: the backend goes with its transaction
        # and the populate lock, and the run is marked failed.
        await gone_with(clean_db, waiters, "the stopped populate's backend ends")
        assert not populate_lock_held(clean_db)
        run = clean_db.execute("SELECT status, error FROM populate_runs")
        assert len(run) == 1
        assert run[0][0] == "failed"
        assert "stopped" in run[0][1]
    assert clean_db.counts() == dataset.NOTHING
    assert "database pool closed" in service.logs()


@pytest.mark.slow
async def test_replicas_populate_once_and_reads_never_wait_for_a_refresh(
    start: Start, session: aiohttp.ClientSession, clean_db: Database, fake_x: FakeX
) -> None:
    replicas = await asyncio.gather(start(clean_db.url), start(clean_db.url))

    # Six populates at once while X holds its answers: the one that took the lock is still
    # fetching when each of the others asks, so every other one is turned away.
    fake_x.pause()
    populates = [asyncio.create_task(populate(session, replica)) for replica in replicas * 3]
    await eventually(
        lambda: sum(task.done() for task in populates) == 5,
        within=WAIT,
        what="five of the six populates answer while X holds its answers",
    )
    turned_away = [task.result() for task in populates if task.done()]
    assert [status for status, *_ in turned_away] == [409] * 5
    assert {body["error"]["code"] for _, body, *_ in turned_away} == {"populate_in_progress"}
    assert fake_x.searches(), "the populate holding the lock is fetching"
    fake_x.resume()
    results = await asyncio.gather(*populates)
    assert sorted(status for status, *_ in results) == [201, 409, 409, 409, 409, 409]
    assert runs(clean_db) == [(1, "succeeded")]

    # Reads while a populate refreshes the views. The test holds the last view's refresh
    # lock (a REFRESH ... CONCURRENTLY of its own, left open), so the populate has
    # refreshed the other views in its open transaction and waits on this one for as long
    # as the test likes. A plain REFRESH would lock readers out of every view it touched.
    zoe = user(506, "zoe", 10_000_000)
    fake_x.add("#devops", [tweet(3001, 506, "2026-11-21T10:00:00.000Z")], [zoe])
    last = VIEWS[-1]
    with clean_db.holding(f"REFRESH MATERIALIZED VIEW CONCURRENTLY {last}"):
        request = asyncio.create_task(populate(session, replicas[0]))
        refreshing = await waiting_on(clean_db, last, f"the populate waits to refresh {last}")
        # First reads of each `limit` and path on each replica: none is cached, every one
        # is rendered from the views the populate is refreshing, and shows their old rows.
        expected: dict[str, Any] = {
            "/api/v1/hour": dataset.EXPECTED_HOURS,
            "/api/v1/tags": dataset.EXPECTED_TAGS,
        }
        for limit in range(1, 11):
            expected[f"/api/v1/users?limit={limit}"] = dataset.EXPECTED_USERS[:limit]
        for replica in replicas:
            for path, rows in expected.items():
                status, body, _, _ = await fetch(session, "GET", replica.url(path))
                assert (status, body) == (200, rows), (replica.port, path)
        # Every read answered while the populate is provably still waiting on the lock.
        assert not request.done()
        assert await asyncio.to_thread(lock_waiters, clean_db, last) == refreshing
    status, body, _, _ = await request
    assert status == 201, body
    assert body["tweets_new"] == 1
    # The new contents: at once on the replica that populated, soon on the other.
    _, top, _, _ = await fetch(session, "GET", replicas[0].url("/api/v1/users?limit=1"))
    assert top == [{"username": "zoe", "followers": 10_000_000}]

    async def other_replica_top() -> Any:
        _, body, _, _ = await fetch(session, "GET", replicas[1].url("/api/v1/users?limit=1"))
        return body == top

    await eventually(other_replica_top, within=WAIT, what="the other replica serves zoe")


@pytest.mark.slow
async def test_database_hang_answers_503_within_db_timeout_and_recovers(
    start: Start, session: aiohttp.ClientSession, own_postgres: OwnServer
) -> None:
    db_timeout = 2.0
    # A read waits at most DB_TIMEOUT for a connection and DB_TIMEOUT for each statement; the
    # first statement to a frozen server never answers. So 2 x DB_TIMEOUT, plus a wide margin
    # for a busy machine. The freeze lasts until reads have shown it, longer than this bound.
    bound = 2 * db_timeout + 4.0
    service = await start(own_postgres.url, migrate=True, DB_TIMEOUT=str(db_timeout))
    await populated(session, service)
    readers = [Reader(session, service) for _ in range(4)]
    for reader in readers:
        reader.start()
    await eventually(
        lambda: all(reader.answered_ok(0) for reader in readers),
        within=WAIT,
        what="every reader has a read answered",
    )

    # Every PostgreSQL process frozen: connections open, nothing answers (a partition, a
    # stuck server). Only timeouts can end a request now.
    log_from = len(service.logs())
    frozen = await asyncio.to_thread(own_postgres.freeze)
    stopped_at = time.monotonic()
    try:
        unconfirmed = await cache_unconfirmed(service, log_from)
        health = await fetch(session, "GET", service.url("/api/health"))
        await eventually(
            lambda: all(len(reader.since(unconfirmed)) >= 2 for reader in readers),
            within=WAIT,
            what="every reader has two reads answered while the database hangs",
        )
    finally:
        own_postgres.thaw(frozen)
    resumed_at = time.monotonic()

    assert health[0] == 500
    assert health[1]["database"] == {"ok": False, "error": "timeout"}
    assert health[3] < bound
    hung = [r for reader in readers for r in reader.between(unconfirmed, resumed_at)]
    assert len(hung) >= 8, "too few reads completed while the database hung"
    assert {(r[2], r[3]) for r in hung} == {(503, "database_unavailable")}

    await eventually(
        lambda: all(reader.answered_ok(resumed_at) for reader in readers),
        within=WAIT,
        what="reads answer 200 again",
    )
    for reader in readers:
        await reader.stop()
    slowest = max(r[1] for reader in readers for r in reader.results if r[0] >= stopped_at)
    assert slowest < bound, f"a read took {slowest:.2f} s"
    assert service.alive()
