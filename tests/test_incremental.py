"""Incremental populate (since_id), --full, scheduled populates, stale-run clean-up."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from service.snowflake import EPOCH_MS
from testing.fake_x import FakeX, iso, tweet, user
from testing.waiting import eventually
from tests import dataset
from tests.calls import App, Client
from tests.database import Database


def snowflake(seconds_ago: float, sequence: int = 0) -> tuple[int, str]:
    """A realistic X id and its created_at, `seconds_ago` before now."""
    ms = int((time.time() - seconds_ago) * 1000)
    return ((ms - EPOCH_MS) << 22) | sequence, iso(datetime.fromtimestamp(ms / 1000, UTC))


def recent(fake: FakeX, query: str, seconds_ago: list[float]) -> list[int]:
    ids = []
    for n, ago in enumerate(seconds_ago):
        tweet_id, created = snowflake(ago, n)
        fake.add(query, [tweet(tweet_id, 42, created)], [user(42, "recent_author", 10)])
        ids.append(tweet_id)
    return ids


async def test_repeat_populate_asks_only_for_newer_tweets(client: Client, fake_x: FakeX) -> None:
    first_ids = recent(fake_x, "#devops", [3600, 1800])
    assert (await client.post("/api/v1/populate")).status == 201
    newer = recent(fake_x, "#devops", [60])

    response = await client.post("/api/v1/populate")

    body = await response.json()
    assert response.status == 201
    assert body["per_tag"] == {"#devops": 1, "#sre": 0}
    assert body["tweets_new"] == 1
    second = fake_x.searches("#devops")[-1]
    assert second.params["since_id"] == str(max(first_ids))
    assert "since_id" not in fake_x.searches("#sre")[-1].params  # nothing stored for it yet
    hours = await (await client.get("/api/v1/hour")).json()
    assert sum(h["count"] for h in hours) == 3
    assert newer[0] > max(first_ids)

    # ?full=true asks for everything again.
    full = await client.post("/api/v1/populate?full=true")
    assert (await full.json())["per_tag"]["#devops"] == 3
    assert "since_id" not in fake_x.searches("#devops")[-1].params


async def test_since_id_older_than_the_search_window_is_not_sent(
    client: Client, fake_x: FakeX
) -> None:
    # X rejects a since_id older than its 7-day recent-search window with a 400.
    old_id, created = snowflake(8 * 86_400)
    fake_x.add("#devops", [tweet(old_id, 42, created)], [user(42, "old_author", 1)])
    await client.post("/api/v1/populate")

    response = await client.post("/api/v1/populate")

    assert response.status == 201
    assert "since_id" not in fake_x.searches("#devops")[-1].params


async def test_sample_source_honours_since_id(app: App, clean_db: Database) -> None:
    client = await app(tweet_source="sample", tags=("#devops",))
    first = await (await client.post("/api/v1/populate")).json()
    clean_db.execute(
        "DELETE FROM tweet_tags WHERE tweet_id IN "
        "(SELECT tweet_id FROM tweet_tags WHERE tag = '#devops' ORDER BY tweet_id DESC LIMIT 3)"
    )

    second = await (await client.post("/api/v1/populate")).json()

    assert first["per_tag"] == {"#devops": 100}
    assert second["per_tag"] == {"#devops": 3}  # only the three newer than the newest kept


async def test_scheduled_populate_runs_on_its_interval(
    app: App, fake_x: FakeX, clean_db: Database
) -> None:
    dataset.load(fake_x)
    await app(populate_interval=0.2)

    def two_succeeded() -> bool:
        succeeded = "SELECT count(*) FROM populate_runs WHERE status = 'succeeded'"
        return int(clean_db.scalar(succeeded)) >= 2

    await eventually(
        lambda: asyncio.to_thread(two_succeeded),
        within=60,
        what="two scheduled populates succeed",
    )
    assert clean_db.counts()["tweets"] == 7


async def test_startup_marks_runs_of_dead_processes_abandoned(app: App, clean_db: Database) -> None:
    clean_db.execute("INSERT INTO populate_runs (source, tags) VALUES ('x', '{#devops}')")

    await app()

    [(status, error)] = clean_db.execute("SELECT status, error FROM populate_runs")
    assert status == "abandoned"
    assert "stopped" in error
