"""Waiting for a condition: the one way a test waits for something it does not hold itself.

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


class WaitTimeout(AssertionError):
    """The awaited condition did not hold in time, or the wait was given up."""


def _describe(last: object) -> str:
    text = repr(last)
    return text if len(text) <= 500 else text[:500] + "..."


class _Waiter:
    def __init__(
        self,
        what: str,
        within: float,
        ignore: tuple[type[BaseException], ...],
        give_up: Callable[[], str | None] | None,
    ) -> None:
        self.what = what
        self.within = within
        self.ignore = ignore
        self.give_up = give_up
        self.deadline = time.monotonic() + within
        self.last: object = "(not called)"

    def failed(self, exc: BaseException) -> None:
        self.last = exc

    def check_over(self) -> None:
        if self.give_up is not None:
            reason = self.give_up()
            if reason:
                raise WaitTimeout(f"gave up waiting for {self.what}: {reason}")
        if time.monotonic() > self.deadline:
            raise WaitTimeout(
                f"not within {self.within:g} s: {self.what} (last seen: {_describe(self.last)})"
            )


def wait_until(
    check: Callable[[], T],
    *,
    within: float,
    what: str,
    interval: float = INTERVAL,
    ignore: tuple[type[BaseException], ...] = (),
    give_up: Callable[[], str | None] | None = None,
) -> T:
    """Call `check` until it returns a truthy value, and return that value.

    Exceptions of the `ignore` types count as "not yet" (the last one is reported). `give_up`
    is asked between attempts; a reason it returns ends the wait at once (a dead server is not
    worth waiting for).
    """
    waiter = _Waiter(what, within, ignore, give_up)
    while True:
        try:
            value = check()
        except ignore as exc:
            waiter.failed(exc)
        else:
            if value:
                return value
            waiter.last = value
        waiter.check_over()
        time.sleep(interval)


@overload
async def eventually(
    check: Callable[[], Awaitable[T]],
    *,
    within: float,
    what: str,
    interval: float = ...,
    ignore: tuple[type[BaseException], ...] = ...,
    give_up: Callable[[], str | None] | None = ...,
) -> T: ...


@overload
async def eventually(
    check: Callable[[], T],
    *,
    within: float,
    what: str,
    interval: float = ...,
    ignore: tuple[type[BaseException], ...] = ...,
    give_up: Callable[[], str | None] | None = ...,
) -> T: ...


async def eventually(
    check: Callable[[], Any],
    *,
    within: float,
    what: str,
    interval: float = INTERVAL,
    ignore: tuple[type[BaseException], ...] = (),
    give_up: Callable[[], str | None] | None = None,
) -> Any:
    """`wait_until` for async tests: `check` may be a coroutine function, and the waits between
    attempts let the event loop run. A blocking check belongs in a thread:
    `eventually(lambda: asyncio.to_thread(blocking), ...)`."""
    waiter = _Waiter(what, within, ignore, give_up)
    while True:
        try:
            value: Any = check()
            if inspect.isawaitable(value):
                value = await value
        except ignore as exc:
            waiter.failed(exc)
        else:
            if value:
                return value
            waiter.last = value
        waiter.check_over()
        await asyncio.sleep(interval)
