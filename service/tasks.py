"""Background tasks that live as long as a block (the cache watcher, the populate schedule), and
the one way the service stops a task."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import Any

from loguru import logger

from service.errors import InternalError, PopulateInProgress, as_api_error


async def cancel(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` and return once every one is done.

    Cancelled again every second: a cancellation can be lost in a race inside a library's awaits
    (on Python 3.11, wait_for, which aiopg uses, can swallow one), and a task that survives it
    would keep the app's shutdown waiting forever.
    """
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1)


@contextlib.asynccontextmanager
async def background(coro: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """Run `coro` as a task for the duration of the block; stop it for sure on exit."""
    task = asyncio.create_task(coro, name=name)
    try:
        yield
    finally:
        await cancel({task})
        if not task.cancelled() and task.exception() is not None:
            logger.opt(exception=task.exception()).error("background task {name} failed", name=name)


async def populate_every(interval: float, populate: Callable[[], Awaitable[object]]) -> None:
    """Scheduled populates. Single-flight like the endpoint: when another replica's run holds the
    lock, this tick is skipped; jitter keeps replicas from always colliding."""
    while True:
        await asyncio.sleep(interval * random.uniform(0.9, 1.1))  # noqa: S311 - jitter
        try:
            await populate()
        except PopulateInProgress:
            logger.bind(event="populate.skipped").debug("scheduled populate skipped: busy")
        except Exception as exc:
            error = as_api_error(exc)
            failed = logger.bind(event="populate.scheduled_failed")
            if isinstance(error, InternalError):
                failed.opt(exception=exc).error("scheduled populate failed")
            else:
                failed.warning("scheduled populate failed: {code}", code=error.code)
