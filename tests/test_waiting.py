"""The wait helper every test uses: what it returns, and what its failure says."""

from __future__ import annotations

import pytest

from tests.waiting import WaitTimeout, eventually, wait_until


def test_wait_until_returns_the_first_truthy_value() -> None:
    values = iter([0, [], "ready"])

    assert wait_until(lambda: next(values), within=30, what="ready", interval=0) == "ready"


def test_wait_until_names_what_it_awaited_and_the_last_value() -> None:
    with pytest.raises(WaitTimeout, match=r"not within 0 s: the answer \(last seen: \[\]\)"):
        wait_until(lambda: [], within=0, what="the answer")


def test_wait_until_reports_an_ignored_exception_as_the_last_seen() -> None:
    def check() -> bool:
        raise ConnectionRefusedError("nobody home")

    with pytest.raises(WaitTimeout, match="nobody home"):
        wait_until(check, within=0, what="a server", ignore=(OSError,))


def test_wait_until_raises_what_it_does_not_ignore() -> None:
    def check() -> bool:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        wait_until(check, within=30, what="anything", ignore=(OSError,))


def test_wait_until_gives_up_at_once_with_the_reason() -> None:
    with pytest.raises(WaitTimeout, match="gave up waiting for a server: it exited"):
        wait_until(lambda: False, within=30, what="a server", give_up=lambda: "it exited")


async def test_eventually_awaits_a_coroutine_check() -> None:
    calls = 0

    async def check() -> int:
        nonlocal calls
        calls += 1
        return calls if calls >= 3 else 0

    assert await eventually(check, within=30, what="three calls", interval=0) == 3


async def test_eventually_takes_a_plain_check_too() -> None:
    assert await eventually(lambda: "yes", within=0, what="yes") == "yes"

    with pytest.raises(WaitTimeout, match="not within 0 s: no"):
        await eventually(lambda: None, within=0, what="no")
