"""Dependency checks behind /api/health and /ready."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiopg
import psycopg2

from service import metrics, queries
from service.db import connection
from service.sources.base import TweetSource


class HealthChecker:
    """The X API check is cached for `ttl` seconds, so a probe every few seconds costs at most
    one X request per TTL; concurrent callers share one in-flight check."""

    def __init__(
        self, pool: aiopg.Pool, source: TweetSource, *, ttl: float, timeout: float
    ) -> None:
        self._pool = pool
        self._source = source
        self._ttl = ttl
        self._timeout = timeout
        self._x_result: dict[str, Any] | None = None
        self._x_checked_at = 0.0
        self._x_lock = asyncio.Lock()

    async def database(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                async with connection(self._pool, self._timeout) as conn, conn.cursor() as cur:
                    ok = await queries.select_one(cur)
        except (psycopg2.Error, TimeoutError, OSError) as exc:
            metrics.HEALTH_CHECK_UP.labels(check="database").set(0)
            error = "timeout" if isinstance(exc, TimeoutError) else "unavailable"
            return {"ok": False, "error": error}
        metrics.HEALTH_CHECK_UP.labels(check="database").set(int(ok))
        return {"ok": ok, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}

    async def last_populate(self) -> dict[str, Any] | None:
        """The newest populate run; a database failure raises (the middleware answers 503)."""
        async with connection(self._pool, self._timeout) as conn, conn.cursor() as cur:
            return await queries.select_last_run(cur)

    async def last_compliance(self) -> dict[str, Any] | None:
        """The last successful compliance pass (id, finished_at, counts)."""
        async with connection(self._pool, self._timeout) as conn, conn.cursor() as cur:
            return await queries.last_successful_pass(cur)

    async def x_api(self) -> dict[str, Any]:
        async with self._x_lock:
            age = time.monotonic() - self._x_checked_at
            if self._x_result is None or age >= self._ttl:
                try:
                    async with asyncio.timeout(self._timeout * 2):
                        result = await self._source.check()
                except TimeoutError:
                    result = {"ok": False, "source": self._source.name, "error": "timeout"}
                self._x_result = result
                self._x_checked_at = time.monotonic()
                age = 0.0
                metrics.HEALTH_CHECK_UP.labels(check="x_api").set(int(bool(result.get("ok"))))
            return {**self._x_result, "checked_seconds_ago": round(age, 1)}
