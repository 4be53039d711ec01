"""Waiting for a condition: the one way a test or the bench waits for something it does not hold.

`wait_until` (blocking) and `eventually` (async) call a check until it returns something truthy
and hand that back. When `within` seconds pass first, they fail with `WaitTimeout`, naming
what was awaited and the last value (or exception) the check gave. The bound is a failure
limit, never a speed expectation: pick it wide, so that a slow or busy machine only waits
longer, and prove ordering with something the test holds instead.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

INTERVAL = 0.05
GiveUp = Callable[[], str | None]


class WaitTimeout(AssertionError):
    """The awaited condition did not hold in time, or the wait was given up."""


def _check_over(
    what: str, within: float, deadline: float, last: object, give_up: GiveUp | None
) -> None:
    reason = give_up() if give_up is not None else None
    if reason:
        raise WaitTimeout(f"gave up waiting for {what}: {reason}")
    if time.monotonic() > deadline:
        seen = repr(last) if len(repr(last)) <= 500 else repr(last)[:500] + "..."
        raise WaitTimeout(f"not within {within:g} s: {what} (last seen: {seen})")


def wait_until(
    check: Callable[[], T | None],
    *,
    within: float,
    what: str,
    interval: float = INTERVAL,
    ignore: tuple[type[BaseException], ...] = (),
    give_up: GiveUp | None = None,
) -> T:
    """Call `check` until it returns a truthy value, and return that value.

    Exceptions of the `ignore` types count as "not yet" (the last one is reported). `give_up`
    is asked between attempts; a reason it returns ends the wait at once (a dead server is not
    worth waiting for).
    """
    deadline, last = time.monotonic() + within, object()
    while True:
        try:
            last = value = check()
            if value:
                return value
        except ignore as exc:
            last = exc
        _check_over(what, within, deadline, last, give_up)
        time.sleep(interval)


@overload
async def eventually(
    check: Callable[[], Awaitable[T]],
    *,
    within: float,
    what: str,
    interval: float = ...,
    ignore: tuple[type[BaseException], ...] = ...,
    give_up: GiveUp | None = ...,
) -> T: ...


@overload
async def eventually(
    check: Callable[[], T],
    *,
    within: float,
    what: str,
    interval: float = ...,
    ignore: tuple[type[BaseException], ...] = ...,
    give_up: GiveUp | None = ...,
) -> T: ...


async def eventually(
    check: Callable[[], Any],
    *,
    within: float,
    what: str,
    interval: float = INTERVAL,
    ignore: tuple[type[BaseException], ...] = (),
    give_up: GiveUp | None = None,
) -> Any:
    """`wait_until` for async tests: `check` may be a coroutine function, and the waits between
    attempts let the event loop run. A blocking check belongs in a thread:
    `eventually(lambda: asyncio.to_thread(blocking), ...)`."""
    deadline, last = time.monotonic() + within, object()
    while True:
        try:
            value: Any = check()
            last = value = await value if inspect.isawaitable(value) else value
            if value:
                return value
        except ignore as exc:
            last = exc
        _check_over(what, within, deadline, last, give_up)
        await asyncio.sleep(interval)
