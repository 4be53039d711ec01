"""Populate: fetch every tag, store the run in one transaction, refresh the views.

Order matters for the guarantees:
1. The write lock (service/writes.py), a session advisory lock on one pooled connection, makes
   the run single-flight across every replica, compliance passes included; it dies with the
   connection, so a crashed process never leaves it behind.
2. The run is recorded ('running') before any fetch, in its own statement, so failures are audited.
3. Everything is fetched (service/fetch.py) before the write transaction opens, keeping that
   transaction short.
4. Tweets, tags, users, places, the aggregate (*_stats) tables, the view refreshes and the run's
   'succeeded' mark commit together: a failure anywhere leaves the database exactly as it was,
   and readers never see half a run (REFRESH ... CONCURRENTLY lets them read the old view
   contents until the commit).
5. The aggregates grow by what this run newly inserted (queries.py), and the views read them, so
   the transaction costs what the run brought, not what is stored.
6. Post text and raw JSON older than RAW_RETENTION_DAYS are cleared in the same transaction
   (writes.clear_expired_raw).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable

import aiopg
from loguru import logger

from service import metrics, queries
from service.clock import SYSTEM, Clock
from service.config import Settings
from service.errors import PopulateInProgress
from service.fetch import TagDone, fetch
from service.model import Place, PopulateResult, TagBatch, Tweet, User
from service.sources.base import TweetSource
from service.writes import (
    Runs,
    clear_expired_raw,
    failure_message,
    if_unlocked,
    record_failure,
    refresh_views,
    write_lock,
)


class Populator:
    """Runs populates: the lock, the run's record, the fetch (service/fetch.py) and the one
    transaction that stores it."""

    def __init__(
        self,
        pool: aiopg.Pool,
        source: TweetSource,
        settings: Settings,
        *,
        on_refreshed: Callable[[int], None] | None = None,
        clock: Clock = SYSTEM,
    ) -> None:
        self._pool = pool
        self._clock = clock  # what "older than RAW_RETENTION_DAYS" is measured from
        self._source = source
        self._settings = settings
        # Told the new view generation once a run has committed (the read cache listens).
        self._on_refreshed = on_refreshed
        metrics.start_tags_at_zero(settings.tags)
        self._runs = Runs("populate")

    async def run(
        self, *, full: bool = False, on_tag_done: TagDone | None = None
    ) -> PopulateResult:
        """Fetch and store. Incremental unless `full`: each tag asks only for tweets newer than
        the newest one stored for it (since_id), as every post read from X is billed.

        The work runs in a task of its own, so that stop() can end it at shutdown and the
        caller still answers, with ServiceStopping."""
        return await self._runs.run(self._run(full, on_tag_done))

    async def stop(self, grace: float) -> None:
        """At shutdown: runs in progress get `grace` seconds to finish, then are cancelled. A
        cancelled run rolls back and records its failure before this returns, while the pool
        is still open."""
        await self._runs.stop(grace, event="populate.stopping")

    async def _run(self, full: bool, on_tag_done: TagDone | None) -> PopulateResult:
        started = time.perf_counter()
        async with write_lock(self._pool, self._settings, busy=_busy) as cur:
            return await self._locked_run(cur, started, full, on_tag_done)

    async def abandon_stale_runs(self) -> None:
        """At startup: runs left 'running' by a process that died are marked abandoned, unless a
        populate is in progress somewhere (then its lock is held and the run is live)."""
        async with if_unlocked(self._pool, self._settings) as cur:
            if cur is not None:
                await _abandon_running_runs(cur)

    async def _locked_run(
        self, cur: aiopg.Cursor, started: float, full: bool, on_tag_done: TagDone | None
    ) -> PopulateResult:
        await _abandon_running_runs(cur)
        settings = self._settings
        run_id = await queries.insert_run(cur, source=self._source.name, tags=list(settings.tags))
        with logger.contextualize(run_id=run_id):  # every line of the run, its fetches' too
            logger.bind(event="populate.start").info(
                "populate run {run_id} started: {n} tags from {source}",
                run_id=run_id,
                n=len(settings.tags),
                source=self._source.name,
            )
            since = {} if full else await queries.select_newest_tweet_ids(cur, settings.tags)
            try:
                with metrics.POPULATE_STEP_DURATION.labels(step="fetch").time():
                    batches = await fetch(
                        self._source,
                        settings.tags,
                        per_tag=settings.tweets_per_tag,
                        concurrency=settings.x_concurrency,
                        since=since,
                        on_tag_done=on_tag_done,
                    )
                result = await self._store(cur, run_id, batches, started)
            except BaseException as exc:
                outcome = failure_message(exc, what="run")
                # The run's own connection, while usable: with a pool of one there is no other.
                # A cancellation may have left a statement in flight on it.
                usable = not isinstance(exc, asyncio.CancelledError) and not cur.connection.closed
                await record_failure(
                    self._pool,
                    settings,
                    functools.partial(queries.fail_run, run_id=run_id, error=outcome),
                    cur=cur if usable else None,
                    event="populate.audit_failed",
                )
                duration = time.perf_counter() - started
                metrics.POPULATE_RUNS.labels(outcome="failed").inc()
                metrics.POPULATE_DURATION.labels(outcome="failed").observe(duration)
                logger.bind(event="populate.failed", duration_ms=round(duration * 1000)).error(
                    "populate run {run_id} failed, nothing stored: {error}",
                    run_id=run_id,
                    error=outcome,
                )
                raise
            metrics.POPULATE_RUNS.labels(outcome="succeeded").inc()
            metrics.POPULATE_DURATION.labels(outcome="succeeded").observe(result.duration_ms / 1000)
            metrics.POPULATE_LAST_SUCCESS.set(time.time())
            metrics.TWEETS_STORED.inc(result.tweets_new)
            logger.bind(
                event="populate.done",
                duration_ms=result.duration_ms,
                tweets_new=result.tweets_new,
                tweets_seen=result.tweets_seen,
            ).info(
                "populate run {run_id} stored {new} new of {seen} tweets",
                run_id=run_id,
                new=result.tweets_new,
                seen=result.tweets_seen,
            )
        return result

    async def _store(
        self, cur: aiopg.Cursor, run_id: int, batches: list[TagBatch], started: float
    ) -> PopulateResult:
        tweets: dict[int, Tweet] = {}
        users: dict[int, User] = {}
        places: dict[str, Place] = {}
        for batch in batches:
            tweets.update((t.id, t) for t in batch.tweets)
            users.update((u.id, u) for u in batch.users)
            places.update((p.id, p) for p in batch.places)
        per_tag = {batch.tag: len(batch.tweets) for batch in batches}

        store_started = time.perf_counter()
        async with cur.begin():
            await queries.create_run_tables(cur)
            # Sorted ids: rows are locked in one global order, the classic deadlock guard.
            await queries.upsert_users(cur, [users[k] for k in sorted(users)])
            changes = await queries.upsert_places(cur, [places[k] for k in sorted(places)])
            # Before this run's tweets exist: it moves the pairs stored earlier.
            await queries.move_place_counts(cur, changes)
            tweets_new = await queries.insert_tweets(
                cur, [tweets[k] for k in sorted(tweets)], run_id=run_id
            )
            for batch in batches:
                await queries.insert_tweet_tags(cur, batch.tag, [t.id for t in batch.tweets])
            await queries.add_run_to_stats(cur)
            raw_cleared = await clear_expired_raw(
                cur, days=self._settings.raw_retention_days, now=self._clock.now()
            )
            store_seconds = time.perf_counter() - store_started
            metrics.POPULATE_STEP_DURATION.labels(step="store").observe(store_seconds)
            logger.bind(
                event="populate.store",
                duration_ms=round(store_seconds * 1000),
                tweets_new=tweets_new,
                raw_cleared=raw_cleared,
            ).info(
                "stored {seen} tweets ({new} new), {users} users, {places} places",
                seen=len(tweets),
                new=tweets_new,
                users=len(users),
                places=len(places),
            )
            with metrics.POPULATE_STEP_DURATION.labels(step="refresh").time():
                await refresh_views(cur, event="populate.refresh")
            generation = await queries.bump_generation(cur)
            duration_ms = round((time.perf_counter() - started) * 1000)
            await queries.finish_run(
                cur, run_id, per_tag=per_tag, tweets_seen=len(tweets), tweets_new=tweets_new
            )
        if self._on_refreshed is not None:
            self._on_refreshed(generation)
        return PopulateResult(
            run_id=run_id,
            source=self._source.name,
            per_tag=per_tag,
            tweets_new=tweets_new,
            tweets_seen=len(tweets),
            duration_ms=duration_ms,
        )


def _busy() -> PopulateInProgress:
    metrics.POPULATE_RUNS.labels(outcome="conflict").inc()
    return PopulateInProgress(
        "another populate or a compliance pass is running; retry when it has finished"
    )


async def _abandon_running_runs(cur: aiopg.Cursor) -> None:
    """Runs left 'running' by a process that died; call only while holding the populate lock."""
    abandoned = await queries.abandon_running_runs(cur)
    if abandoned:
        logger.bind(event="populate.abandoned").warning(
            "marked {n} unfinished run(s) as abandoned", n=abandoned
        )
