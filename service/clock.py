"""Wall-clock time and sleeping, handed to what waits on X (rate-limit windows), so that a test
can run those waits on a fake clock instead of really sleeping."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Final

Sleep = Callable[[float], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class Clock:
    now: Callable[[], float] = time.time  # seconds since the epoch: X's reset headers are in it
    sleep: Sleep = asyncio.sleep


SYSTEM: Final = Clock()
