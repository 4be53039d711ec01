"""Failure semantics: crash, database outage, graceful shutdown, replicas.

Most tests here run the real server process (`python -m service serve`) and do to it what
production does: SIGKILL, SIGTERM, a PostgreSQL that stops, two replicas on one database.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import aiopg
import pytest

from service.cache import ViewCache, background, watching
from service.config import Settings
from service.ingestion import Populator
from service.sources.sample import SampleSource


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
