"""A clock that moves only when slept on, for XSource's injected `clock` and `sleep`.

The rate-limit tests then wait on nothing real: a 429 whose window resets in two seconds makes
the source "sleep" two seconds of fake time, recorded for the test to check, and ask again.
"""

from __future__ import annotations

import asyncio
import functools
import time

import pytest

from service import app
from service.sources.x import XSource


class FakeTime:
    def __init__(self, start: float) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # still a suspension point, as a real sleep is


def install(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    """Every XSource the app creates from now on uses a fresh FakeTime, which is returned.
    It starts at the real time, whole seconds, so X's reset timestamps mean what they say."""
    fake = FakeTime(float(int(time.time())))
    monkeypatch.setattr(
        app, "XSource", functools.partial(XSource, sleep=fake.sleep, clock=fake.clock)
    )
    return fake
