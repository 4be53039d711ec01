"""A clock that moves only when slept on, handed to the app as its `clock`.

The rate-limit tests then wait on nothing real: a 429 whose window resets in two seconds makes
the source "sleep" two seconds of fake time, recorded for the test to check, and ask again.
"""

from __future__ import annotations

import asyncio
import time

from service.clock import Clock


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

    def as_clock(self) -> Clock:
        """For create_app(settings, clock=...)."""
        return Clock(now=self.clock, sleep=self.sleep)


def at_real_time() -> FakeTime:
    """A FakeTime at the real time, whole seconds, so X's reset timestamps mean what they say."""
    return FakeTime(float(int(time.time())))
