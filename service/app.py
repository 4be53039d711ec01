"""create_app: the only wiring. It takes its settings and does no I/O until the app starts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from loguru import logger

from service import dashboard, db, errors, metrics, openapi
from service.cache import ViewCache, watching
from service.clock import SYSTEM, Clock
from service.compliance import Compliance
from service.config import Settings
from service.health import HealthChecker
from service.ingestion import Populator
from service.keys import (
    CACHE,
    CLOCK,
    COMPLIANCE,
    HEALTH,
    POOL,
    POPULATOR,
    REQUEST_ID,
    SETTINGS,
    SOURCE,
    STORAGE,
)
from service.log import ACCESS
from service.middlewares import AccessLogger, telemetry
from service.routes import setup_routes
from service.sources.base import TweetSource
from service.sources.sample import SampleSource
from service.sources.x import XSource, create_session, create_storage_session
from service.tasks import background, run_every

VERSION = "0.1.0"


def create_app(settings: Settings, *, clock: Clock = SYSTEM) -> web.Application:
    """The app, wired; no I/O until it starts. `clock` is what the X source reads the time from
    and sleeps on while it waits for a rate-limit window (tests pass a fake one)."""
    app = web.Application(
        # Outermost first: telemetry counts and logs the status the error middleware answers
        # with, and that one answers for invalid input too.
        middlewares=[telemetry, errors.middleware(REQUEST_ID), openapi.validation_middleware],
        # Here, not in run_app: every runner of the app (the CLI, tests, bench) logs requests.
        handler_args={"access_log_class": AccessLogger},
        # No route takes a body; 64 KiB bounds what a client can make the server buffer.
        client_max_size=64 * 1024,
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app.on_shutdown.extend([_stop_writers, _flush_logs])
    app.cleanup_ctx.extend([database_ctx, source_ctx, services_ctx])
    setup_routes(app)
    dashboard.setup(app)
    openapi.setup(
        app, title="Hashtag analytics API", version=VERSION, secured=settings.api_token is not None
    )
    return app


@contextlib.asynccontextmanager
async def _scheduled(
    what: str, work: Callable[[], Awaitable[object]], interval: float
) -> AsyncIterator[None]:
    if interval <= 0:
        yield
        return
    logger.bind(event=f"{what}.schedule").info("{what} every {s:g} s", what=what, s=interval)
    async with background(run_every(interval, work, what=what), f"scheduled-{what}"):
        yield


async def _stop_writers(app: web.Application) -> None:
    # on_shutdown runs once the server has stopped accepting and before the cleanup contexts
    # close the pool: a run or pass still going past SHUTDOWN_TIMEOUT is cancelled (it rolls
    # back) and records its failure here, and its request answers 503 instead of being cut off.
    grace = app[SETTINGS].shutdown_timeout
    writers = [w for w in (app.get(POPULATOR), app.get(COMPLIANCE)) if w is not None]
    await asyncio.gather(*(w.stop(grace) for w in writers))


async def _flush_logs(app: web.Application) -> None:
    del app
    ACCESS.flush()


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    url = await db.resolve_url(settings)
    if settings.migrate_on_start:
        await asyncio.to_thread(db.upgrade, url)
        logger.bind(event="db.migrated").info("database schema is up to date")
    pool = await db.create_pool(url, settings)
    app[POOL] = pool
    yield
    await db.close_pool(pool, settings.db_timeout)
    logger.bind(event="db.closed").info("database pool closed")


async def source_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.tweet_source == "sample":
        app[SOURCE] = SampleSource(settings.sample_dir)
        why = "TWEET_SOURCE=sample" if settings.source_explicit else "no X credentials configured"
        logger.bind(event="source.sample").warning(
            "OFFLINE: tweets come from the bundled sample, not the X API ({why})", why=why
        )
        yield
        return
    session = create_session(settings)
    app[STORAGE] = storage = create_storage_session(settings)
    clock = app[CLOCK]
    source: TweetSource = XSource(settings, session, sleep=clock.sleep, clock=clock.now)
    app[SOURCE] = source
    auth = "OAuth 1.0a user context" if settings.credentials.user_auth else "app-only bearer token"
    logger.bind(event="source.x").info(
        "tweets come from the X API at {base} ({auth})", base=settings.x_api_base_url, auth=auth
    )
    yield
    await session.close()
    await storage.close()


async def services_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    cache = ViewCache(app[POOL], timeout=settings.db_timeout)
    app[CACHE] = cache
    app[POPULATOR] = Populator(
        app[POOL], app[SOURCE], settings, on_refreshed=cache.observe, clock=app[CLOCK]
    )
    app[HEALTH] = HealthChecker(
        app[POOL], app[SOURCE], ttl=settings.health_cache_ttl, timeout=settings.db_timeout
    )
    app[COMPLIANCE] = compliance = Compliance(
        app[POOL],
        app[SOURCE],
        app.get(STORAGE),
        settings,
        clock=app[CLOCK],
        on_refreshed=cache.observe,
    )
    await app[POPULATOR].abandon_stale_runs()
    await compliance.abandon_stale_passes()
    await compliance.show_last_success()
    metrics.COMPLIANCE_INTERVAL.set(compliance.interval)
    why = compliance.unavailable()
    if why is not None and settings.tweet_source == "x":
        # With the X API and no pass possible, the stored data drifts from X's: say so loudly.
        logger.bind(event="compliance.unavailable").warning(
            "no compliance pass can run: {why}", why=why
        )
    async with (
        watching(cache),
        _scheduled("populate", app[POPULATOR].run, settings.populate_interval),
        _scheduled("compliance", compliance.run, compliance.interval),
    ):
        yield
