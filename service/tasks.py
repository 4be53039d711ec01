"""Background tasks that live as long as a block: the cache watcher and the populate schedule."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from loguru import logger


@contextlib.asynccontextmanager
async def background(coro: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """Run `coro` as a task for the duration of the block; stop it for sure on exit."""
    task = asyncio.create_task(coro, name=name)
    try:
        yield
    finally:
        # Cancel until done: a cancellation can be lost in a race inside a library's awaits,
        # and a task that survives it would keep the app's shutdown waiting forever.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1)
        if not task.cancelled() and task.exception() is not None:
            logger.opt(exception=task.exception()).error("background task {name} failed", name=name)
