"""Background tasks that live as long as a block (the cache watcher, the populate and compliance
schedules), and the one way the service stops a task."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import Any

from loguru import logger

from service.errors import InternalError, as_api_error


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
    await run_every(interval, populate, what="populate")


async def run_every(interval: float, work: Callable[[], Awaitable[object]], *, what: str) -> None:
    """Scheduled writes (`what`: populate, compliance). Single-flight like the endpoints: when
    another replica's writer holds the lock (a 409), this tick is skipped; jitter keeps replicas
    from always colliding."""
    while True:
        await asyncio.sleep(interval * random.uniform(0.9, 1.1))  # noqa: S311 - jitter
        try:
            await work()
        except Exception as exc:
            error = as_api_error(exc)
            if error.status == 409:
                logger.bind(event=f"{what}.skipped").debug(
                    "scheduled {what} skipped: busy", what=what
                )
                continue
            failed = logger.bind(event=f"{what}.scheduled_failed")
            if isinstance(error, InternalError):
                failed.opt(exception=exc).error("scheduled {what} failed", what=what)
            else:
                failed.warning("scheduled {what} failed: {code}", what=what, code=error.code)
