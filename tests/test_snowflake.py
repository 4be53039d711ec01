"""Post ids and their creation time, pinned to facts from outside this code."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service import snowflake


def test_snowflake_epoch_is_twitters_twepoch() -> None:
    # twitter-archive/snowflake IdWorker.scala: twepoch = 1288834974657L.
    moment = datetime(2010, 11, 4, 1, 42, 54, 657_000, tzinfo=UTC)
    assert int(moment.timestamp() * 1000) == snowflake.EPOCH_MS
    assert snowflake.created_ms(0) == snowflake.EPOCH_MS


def test_snowflake_id_round_trips_its_time_and_orders_by_it() -> None:
    ms = int(datetime(2026, 11, 20, 9, tzinfo=UTC).timestamp() * 1000)
    first = snowflake.make_id(ms, (1 << snowflake.LOW_BITS) - 1)
    later = snowflake.make_id(ms + 1, 0)
    assert snowflake.created_ms(first) == ms
    assert snowflake.created_ms(later) == ms + 1
    assert later > first  # since_id works because a newer post has a bigger id
    assert first < 2**63  # fits PostgreSQL's bigint


@pytest.mark.parametrize("low", [-1, 1 << 22])
def test_snowflake_refuses_low_bits_that_would_spill_into_the_time(low: int) -> None:
    with pytest.raises(ValueError, match="low bits"):
        snowflake.make_id(1_700_000_000_000, low)
