"""Compliance passes: ask X which stored posts and accounts are gone, and forget them.

One pass is a `tweets` job over every stored post id and a `users` job over every stored account
id, through X's batch compliance endpoints (developer.x.com/en/docs/x-api/compliance/
batch-compliance/introduction and quick-start), each:
1. create: POST /2/compliance/jobs through the X source (tweepy, X_API_BASE_URL, app-only auth);
2. upload: PUT the ids as text/plain, one a line, to the job's upload_url, a signed Google Cloud
   Storage URL on another host. It is used exactly as given (never re-encoded, never rewritten to
   X_API_BASE_URL) on a session of its own with no X credentials: the signature is the
   authorization. X lets it live 15 minutes, so the upload follows the create at once. The ids
   stream from the database page by page (queries.iter_ids), chunked transfer encoding, which
   Cloud Storage accepts on a PUT ("Streaming uploads" in its docs): never all in memory;
3. poll GET /2/compliance/jobs/:id with backoff (COMPLIANCE_POLL, doubling to a minute: far
   inside X's 150 requests per 15 minutes) until `complete`; `failed`, `expired` or the deadline
   (COMPLIANCE_TIMEOUT from the start of the pass) fail the pass;
4. download the results from download_url (valid a week), streamed: JSON lines with id, action,
   created_at, redacted_at (not always) and reason, one for each uploaded id that needs an
   action and none for the others.
X allows one concurrent job per type, so the jobs run one after the other. X's pages state no
per-job limit on ids or bytes (only "large datasets", "millions of IDs"); COMPLIANCE_JOB_MAX_IDS
(5,000,000 ids, about 100 MB of text) bounds each upload so that it ends well within the
15 minutes its URL lives, and more ids of a type are split across jobs.

The results of all the jobs are kept (they name only what must go, a small share of what is
stored) and applied in ONE transaction with the aggregates (queries.apply_compliance), the
raw-data retention (queries.clear_raw_before), the view refresh, the generation bump and the
pass's 'succeeded' mark: a pass that fails anywhere applies nothing, and is recorded as failed.

The write lock (service/writes.py) is held for the whole pass, so no populate stores anything
between the upload of the ids and the apply, on any replica.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol, runtime_checkable

import aiohttp
import aiopg
from loguru import logger
from yarl import URL

from service import metrics, queries
from service.clock import SYSTEM, Clock
from service.config import Settings
from service.db import connection
from service.errors import (
    ComplianceJobFailed,
    ComplianceStorageError,
    ComplianceTimeout,
    ComplianceUnavailable,
    UpstreamBadResponse,
    WriteInProgress,
)
from service.model import ComplianceItem, ComplianceKind
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

KINDS: Final[tuple[ComplianceKind, ...]] = ("tweets", "users")
_POLL_CAP: Final = 60.0


@runtime_checkable
class ComplianceApi(Protocol):
    """What a source offers to run compliance jobs (sources/x.py's XSource does)."""

    @property
    def can_comply(self) -> bool: ...

    async def create_compliance_job(self, kind: str, *, name: str) -> dict[str, Any]: ...

    async def get_compliance_job(self, job_id: str) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class PassResult:
    pass_id: int
    job_ids: list[str]
    checked: dict[str, int]  # ids uploaded per kind
    applied: dict[str, dict[str, dict[str, int]]]  # kind -> action -> reason -> rows changed
    raw_cleared: int  # rows whose raw JSON and text the retention cleared
    duration_ms: int


class Compliance:
    """Runs compliance passes: the lock, the pass's record, the jobs and the one transaction."""

    def __init__(
        self,
        pool: aiopg.Pool,
        source: TweetSource,
        storage: aiohttp.ClientSession | None,
        settings: Settings,
        *,
        clock: Clock = SYSTEM,
        on_refreshed: Callable[[int], None] | None = None,
    ) -> None:
        self._pool = pool
        self._x = source if isinstance(source, ComplianceApi) else None
        self._storage = storage  # no base-URL rewrite, no X credentials: see the docstring
        self._settings = settings
        self._clock = clock
        self._on_refreshed = on_refreshed
        self._runs = Runs("compliance pass")

    @property
    def interval(self) -> float:
        """Seconds between scheduled passes: COMPLIANCE_INTERVAL, 0 when passes cannot run."""
        return self._settings.compliance_interval if self.unavailable() is None else 0.0

    def unavailable(self) -> str | None:
        """Why this deployment cannot run a pass, or None when it can."""
        if self._x is None or self._storage is None:
            return (
                "compliance passes ask the X API about the stored posts and accounts; this "
                "service reads the bundled sample (set X credentials to use the X API)"
            )
        if not self._x.can_comply:
            return (
                "X's batch compliance endpoints take app-only auth: set TWITTER_BEARER_TOKEN "
                "(OAuth 1.0a keys are not enough)"
            )
        return None

    async def run(self) -> PassResult:
        why = self.unavailable()
        if why is not None:
            raise ComplianceUnavailable(why)
        return await self._runs.run(self._run())

    async def stop(self, grace: float) -> None:
        await self._runs.stop(grace, event="compliance.stopping")

    async def abandon_stale_passes(self) -> None:
        """At startup: passes left 'running' by a process that died are marked abandoned, unless
        a writer is live somewhere (then its lock is held and the pass may be live)."""
        async with if_unlocked(self._pool, self._settings) as cur:
            if cur is not None:
                await _abandon_running_passes(cur)

    async def show_last_success(self) -> None:
        """At startup: the metric starts from the last successful pass on record, so a restart
        does not make an old pass look new or a recent one look missing."""
        async with connection(self._pool, self._settings.db_timeout) as conn, conn.cursor() as cur:
            found = await queries.last_successful_pass(cur)
        if found is not None and found["finished_at"] is not None:
            finished = datetime.fromisoformat(found["finished_at"])
            metrics.COMPLIANCE_LAST_SUCCESS.set(finished.timestamp())

    async def _run(self) -> PassResult:
        started = time.perf_counter()
        async with write_lock(self._pool, self._settings, busy=_busy) as cur:
            await _abandon_running_passes(cur)
            pass_id = await queries.insert_pass(cur)
            with logger.contextualize(pass_id=pass_id):
                return await self._locked_run(cur, pass_id, started)

    async def _locked_run(self, cur: aiopg.Cursor, pass_id: int, started: float) -> PassResult:
        logger.bind(event="compliance.start").info("compliance pass {id} started", id=pass_id)
        job_ids: list[str] = []
        try:
            checked, items = await self._ask_x(cur, pass_id, job_ids)
            result = await self._apply(cur, pass_id, job_ids, checked, items, started)
        except BaseException as exc:
            error = failure_message(exc, what="pass")
            # Its own connection, while usable; a cancellation may have left a statement on it.
            usable = not isinstance(exc, asyncio.CancelledError) and not cur.connection.closed
            await record_failure(
                self._pool,
                self._settings,
                functools.partial(queries.fail_pass, pass_id=pass_id, job_ids=job_ids, error=error),
                cur=cur if usable else None,
                event="compliance.audit_failed",
            )
            duration_ms = round((time.perf_counter() - started) * 1000)
            metrics.COMPLIANCE_PASSES.labels(outcome="failed").inc()
            logger.bind(event="compliance.failed", duration_ms=duration_ms).error(
                "compliance pass {id} failed, nothing applied: {error}", id=pass_id, error=error
            )
            raise
        metrics.COMPLIANCE_PASSES.labels(outcome="succeeded").inc()
        metrics.COMPLIANCE_LAST_SUCCESS.set(time.time())
        logger.bind(
            event="compliance.done",
            duration_ms=result.duration_ms,
            checked=result.checked,
            applied=result.applied,
        ).info(
            "compliance pass {id} checked {tweets} posts and {users} accounts, changed {n} rows",
            id=pass_id,
            tweets=result.checked.get("tweets", 0),
            users=result.checked.get("users", 0),
            n=sum(n for a in result.applied.values() for r in a.values() for n in r.values()),
        )
        return result

    async def _ask_x(
        self, cur: aiopg.Cursor, pass_id: int, job_ids: list[str]
    ) -> tuple[dict[str, int], list[ComplianceItem]]:
        deadline = self._clock.now() + self._settings.compliance_timeout
        checked: dict[str, int] = {}
        items: list[ComplianceItem] = []
        for kind in KINDS:
            ids = _Ids(queries.iter_ids(cur, kind))
            checked[kind] = 0
            while await ids.more():  # nothing stored of a kind: no job for it
                x = self._api()
                job = await x.create_compliance_job(kind, name=f"hashtag-analytics-{pass_id}")
                job_ids.append(job["id"])
                checked[kind] += await self._upload(job, ids)
                job = await self._wait(job, deadline)
                items.extend(await self._download(kind, job))
        return checked, items

    def _api(self) -> ComplianceApi:
        assert self._x is not None  # run() checked unavailable()  # noqa: S101
        return self._x

    def _session(self) -> aiohttp.ClientSession:
        assert self._storage is not None  # run() checked unavailable()  # noqa: S101
        return self._storage

    async def _upload(self, job: dict[str, Any], ids: _Ids) -> int:
        url = _signed_url(job, "upload_url")
        sent = ids.take(self._settings.compliance_job_max_ids)
        try:
            async with self._session().put(
                url, data=sent.chunks(), headers={"Content-Type": "text/plain"}
            ) as response:
                if response.status >= 300:
                    raise ComplianceStorageError(
                        f"the upload of compliance job {job['id']}'s ids was refused: "
                        f"HTTP {response.status}"
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ComplianceStorageError(
                f"the upload of compliance job {job['id']}'s ids failed: {type(exc).__name__}"
            ) from None
        logger.bind(event="compliance.upload", job_id=job["id"], ids=sent.count).info(
            "uploaded {n} {kind} ids to compliance job {job}",
            n=sent.count,
            kind=job.get("type"),
            job=job["id"],
        )
        return sent.count

    async def _wait(self, job: dict[str, Any], deadline: float) -> dict[str, Any]:
        wait = self._settings.compliance_poll
        job_id = job["id"]
        while True:
            status = job.get("status")
            if status == "complete":
                return job
            if status in ("failed", "expired"):
                raise ComplianceJobFailed(f"X compliance job {job_id} ended {status}")
            now = self._clock.now()
            if now >= deadline:
                raise ComplianceTimeout(
                    f"X compliance job {job_id} was not complete within COMPLIANCE_TIMEOUT "
                    f"({self._settings.compliance_timeout:g} s); it stayed {status}"
                )
            await self._clock.sleep(min(wait, deadline - now))
            wait = min(_POLL_CAP, wait * 2)
            job = await self._api().get_compliance_job(job_id)

    async def _download(self, kind: ComplianceKind, job: dict[str, Any]) -> list[ComplianceItem]:
        url = _signed_url(job, "download_url")
        items: list[ComplianceItem] = []
        try:
            async with self._session().get(url) as response:
                if response.status != 200:
                    raise ComplianceStorageError(
                        f"the results of compliance job {job['id']} could not be downloaded: "
                        f"HTTP {response.status}"
                    )
                async for line in response.content:  # one line at a time, as they arrive
                    if line.strip():
                        items.append(_item(kind, line))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ComplianceStorageError(
                f"the results of compliance job {job['id']} could not be downloaded: "
                f"{type(exc).__name__}"
            ) from None
        for item in items:
            metrics.COMPLIANCE_ITEMS.labels(kind=kind, action=item.action, reason=item.reason).inc()
        return items

    async def _apply(
        self,
        cur: aiopg.Cursor,
        pass_id: int,
        job_ids: list[str],
        checked: dict[str, int],
        items: list[ComplianceItem],
        started: float,
    ) -> PassResult:
        async with cur.begin():
            applied = await queries.apply_compliance(cur, items)
            cleared = await clear_expired_raw(
                cur, days=self._settings.raw_retention_days, now=self._clock.now()
            )
            # Always, even when nothing changed: the pass's record is part of what the summary
            # shows, and every replica's cache turns over as after a populate.
            await refresh_views(cur, event="compliance.refresh")
            generation = await queries.bump_generation(cur)
            await queries.finish_pass(
                cur, pass_id, job_ids=job_ids, checked=checked, counts=applied
            )
        if self._on_refreshed is not None:
            self._on_refreshed(generation)
        return PassResult(
            pass_id=pass_id,
            job_ids=list(job_ids),
            checked=checked,
            applied=applied,
            raw_cleared=cleared,
            duration_ms=round((time.perf_counter() - started) * 1000),
        )


class _Ids:
    """The stored ids of one kind, page by page from the database, handed out to one upload
    after another: at most one page is held at a time."""

    def __init__(self, pages: AsyncIterator[list[int]]) -> None:
        self._pages = pages
        self._buffer: list[int] = []
        self._done = False

    async def more(self) -> bool:
        while not self._buffer and not self._done:
            try:
                self._buffer = await anext(self._pages)
            except StopAsyncIteration:
                self._done = True
        return bool(self._buffer)

    def take(self, limit: int) -> _Upload:
        return _Upload(self, limit)

    async def _next(self, limit: int) -> list[int]:
        if not await self.more():
            return []
        chunk, self._buffer = self._buffer[:limit], self._buffer[limit:]
        return chunk


class _Upload:
    """At most `limit` ids as the text X takes, one id a line; `count` says how many went."""

    def __init__(self, ids: _Ids, limit: int) -> None:
        self._ids = ids
        self._left = limit
        self.count = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        while self._left > 0:
            chunk = await self._ids._next(self._left)
            if not chunk:
                return
            self._left -= len(chunk)
            self.count += len(chunk)
            yield "".join(f"{i}\n" for i in chunk).encode()


def _signed_url(job: dict[str, Any], field: str) -> URL:
    value = job.get(field)
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise UpstreamBadResponse(f"X compliance job {job['id']} has no {field}")
    # encoded=True: the URL goes out byte for byte as X signed it.
    return URL(value, encoded=True)


def _item(kind: ComplianceKind, line: bytes) -> ComplianceItem:
    try:
        found = json.loads(line)
        action = str(found["action"])
        reason = str(found.get("reason") or action)
        # X's pages give a geo scrub both as `action: scrub_geo` and as `action: delete` with
        # `reason: scrub_geo`. Either way the post still exists and only its place must go:
        # deleting it would take more than X asks.
        if kind == "tweets" and "scrub_geo" in (action, reason):
            action = "scrub_geo"
        return ComplianceItem(kind=kind, id=int(found["id"]), action=action, reason=reason)
    except (ValueError, KeyError, TypeError):
        raise UpstreamBadResponse("X compliance results have a malformed line") from None


def _busy() -> WriteInProgress:
    metrics.COMPLIANCE_PASSES.labels(outcome="conflict").inc()
    return WriteInProgress(
        "a populate or another compliance pass is running; retry when it has finished"
    )


async def _abandon_running_passes(cur: aiopg.Cursor) -> None:
    """Passes left 'running' by a process that died; call only while holding the write lock."""
    abandoned = await queries.abandon_running_passes(cur)
    if abandoned:
        logger.bind(event="compliance.abandoned").warning(
            "marked {n} unfinished compliance pass(es) as abandoned", n=abandoned
        )
