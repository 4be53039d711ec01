"""What every writer of the stored data shares: a populate (service/ingestion.py) and a compliance
pass (service/compliance.py) take the same write lock, refresh the views the same way, record
their failures the same way, clear expired raw data the same way, and are stopped the same
way at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import aiopg
import psycopg2
from loguru import logger

from service import metrics, queries, tasks
from service.config import Settings
from service.db import POPULATE_LOCK, connection
from service.errors import ApiError, InternalError, ServiceStopping, as_api_error
from service.matviews import VIEWS

T = TypeVar("T")

# PostgreSQL notices a closed client connection only when it next talks to it, so without this the
# backend of a killed (or cancelled) writer would finish its statement first (a lock wait, a long
# refresh: up to DB_WRITE_TIMEOUT) while keeping the write lock and its row locks.
_CLIENT_CHECK_MS: Final = 1000


@contextlib.asynccontextmanager
async def write_lock(
    pool: aiopg.Pool, settings: Settings, *, busy: Callable[[], ApiError]
) -> AsyncIterator[aiopg.Cursor]:
    """A cursor on a pooled connection that holds the write lock (db.POPULATE_LOCK) for the block.

    A session advisory lock: single-flight across every replica, and it dies with the
    connection, so a crashed process never leaves it behind. When another writer holds it,
    raises busy().
    """
    async with (
        connection(pool, settings.db_timeout) as conn,
        conn.cursor(timeout=settings.db_write_timeout) as cur,
    ):
        await queries.set_client_connection_check(cur, milliseconds=_CLIENT_CHECK_MS)
        if not await queries.try_advisory_lock(cur, POPULATE_LOCK):
            raise busy()
        try:
            yield cur
        finally:
            if not conn.closed:
                await queries.advisory_unlock(cur, POPULATE_LOCK)


@contextlib.asynccontextmanager
async def if_unlocked(pool: aiopg.Pool, settings: Settings) -> AsyncIterator[aiopg.Cursor | None]:
    """At startup: a cursor holding the write lock, or None when a writer is live somewhere (then
    what it left 'running' is not stale)."""
    async with connection(pool, settings.db_timeout) as conn, conn.cursor() as cur:
        if not await queries.try_advisory_lock(cur, POPULATE_LOCK):
            yield None
            return
        try:
            yield cur
        finally:
            await queries.advisory_unlock(cur, POPULATE_LOCK)


async def refresh_views(cur: aiopg.Cursor, *, event: str) -> None:
    """Every materialized view, in order, inside the caller's transaction."""
    for view in VIEWS:
        # Timed once, for the metric and the log line alike.
        started = time.perf_counter()
        await queries.refresh_view(cur, view)
        seconds = time.perf_counter() - started
        metrics.VIEW_REFRESH_DURATION.labels(view=view).observe(seconds)
        logger.bind(event=event, view=view, duration_ms=round(seconds * 1000, 1)).info(
            "refreshed {view}", view=view
        )


def failure_message(exc: BaseException, *, what: str) -> str:
    """What the audit row says about a failed `what` (a run, a pass)."""
    if isinstance(exc, asyncio.CancelledError):
        return f"cancelled: the service stopped during the {what}"
    error = as_api_error(exc)
    if not isinstance(error, InternalError):
        return f"{error.code}: {error.message}"
    # Unexpected: the audit row names what it was (never its message, which may carry data).
    if isinstance(exc, psycopg2.Error):
        return f"database_error: {exc.pgcode or ''} {type(exc).__name__}".strip()
    return f"internal_error: {type(exc).__name__}"


async def record_failure(
    pool: aiopg.Pool,
    settings: Settings,
    write: Callable[[aiopg.Cursor], Awaitable[None]],
    *,
    cur: aiopg.Cursor | None,
    event: str,
) -> None:
    """Best effort, on `cur` if given, else (or if that fails) on a fresh connection: the
    writer's own may be what failed. When both fail, the next writer marks the record abandoned."""
    if cur is not None:
        try:
            await write(cur)
            return
        except psycopg2.Error:
            pass
    try:
        async with connection(pool, settings.db_timeout) as conn, conn.cursor() as fresh:
            await asyncio.shield(write(fresh))
    except (psycopg2.Error, TimeoutError, asyncio.CancelledError) as exc:
        logger.bind(event=event).warning(
            "could not record a failure: {error}", error=type(exc).__name__
        )


class Runs:
    """The writes in progress, each in a task of its own, so that stop() can end them at
    shutdown and their callers still answer, with ServiceStopping."""

    def __init__(self, what: str) -> None:
        self._what = what  # "populate", "compliance pass": the messages and the log event
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._stopping:
            coro.close()
            raise ServiceStopping(f"the service is shutting down; retry the {self._what}")
        task = asyncio.create_task(coro, name=self._what)
        self._tasks.add(task)
        try:
            return await task
        except asyncio.CancelledError:
            caller = asyncio.current_task()
            if task.cancelled() and self._stopping and not (caller and caller.cancelling()):
                raise ServiceStopping(
                    f"the service shut down before the {self._what} finished; nothing was "
                    f"stored, retry the {self._what}"
                ) from None
            raise
        finally:
            self._tasks.discard(task)

    async def stop(self, grace: float, *, event: str) -> None:
        """At shutdown: writes in progress get `grace` seconds to finish, then are cancelled. A
        cancelled one rolls back and records its failure before this returns, while the pool is
        still open."""
        self._stopping = True
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        if pending:
            logger.bind(event=event).warning(
                "shutting down: cancelling {n} {what}(s) still in progress",
                n=len(pending),
                what=self._what,
            )
            await tasks.cancel(pending)


async def clear_expired_raw(cur: aiopg.Cursor, *, days: int, now: float) -> int:
    """Clear post text and raw JSON stored more than `days` before `now` (seconds since the
    epoch); 0 days keeps everything. Returns the rows cleared."""
    if days == 0:
        return 0
    cutoff = datetime.fromtimestamp(now, UTC) - timedelta(days=days)
    return await queries.clear_raw_before(cur, cutoff)
