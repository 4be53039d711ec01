"""Populate through the real tweepy client against the fake X API, then read the three views."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service import queries
from service.config import Secret
from testing.fake_x import BEARER, FakeX, tweet, user
from testing.waiting import eventually
from tests import dataset
from tests.calls import App, Client, get, populate, populated, reads
from tests.database import Database


async def test_populate_asks_as_documented_stores_and_serves_hand_computed_aggregates(
    client: Client, fake_x: FakeX, clean_db: Database
) -> None:
    dataset.load(fake_x)

    status, body, _ = await populate(client)

    assert status == 201, body
    assert body["source"] == "x"
    assert body["per_tag"] == {"#devops": 5, "#sre": 3}
    assert body["tweets_seen"] == 7
    assert body["tweets_new"] == 7
    assert isinstance(body["run_id"], int)
    assert isinstance(body["duration_ms"], int)
    assert await reads(client) == dataset.EXPECTED_READS
    assert clean_db.counts() == dataset.STORED
    run = clean_db.execute("SELECT status, source, per_tag, tweets_new FROM populate_runs")
    assert run == [("succeeded", "x", {"#devops": 5, "#sre": 3}, 7)]
    # Bad limits: tests/test_api.py.
    assert await get(client, "/api/v1/users?limit=2") == dataset.EXPECTED_USERS[:2]
    assert await get(client, "/api/v1/users?limit=100") == dataset.EXPECTED_USERS
    # Unicode stored exactly.
    texts = dict(clean_db.execute("SELECT id, text FROM tweets"))
    assert texts[1002] == "مرحبا بالجميع #devops 🚀"
    assert texts[1006] == "café ☕ #devops"
    names = dict(clean_db.execute("SELECT username, name FROM users"))
    assert names["carol"] == "Carol 👩‍💻"
    raw = clean_db.scalar("SELECT raw->>'text' FROM tweets WHERE id = 1003")
    assert raw == "guardia #sre 日本"
    # The documented search request.
    searches = {r.query: r for r in fake_x.searches()}
    assert set(searches) == {"#devops", "#sre"}
    params = searches["#devops"].params
    assert params["max_results"] == "100"
    assert set(params["tweet.fields"].split(",")) == {
        "created_at",
        "lang",
        "author_id",
        "geo",
        "public_metrics",
        "entities",
    }
    assert set(params["expansions"].split(",")) == {"author_id", "geo.place_id"}
    assert set(params["user.fields"].split(",")) >= {"username", "public_metrics"}
    assert set(params["place.fields"].split(",")) >= {"country_code"}
    assert searches["#devops"].authorization == f"Bearer {BEARER}"


async def test_populate_follows_next_token_until_the_count(app: App, fake_x: FakeX) -> None:
    dataset.load(fake_x)
    fake_x.page_cap = 2  # X may return fewer tweets than asked for
    client = await app(tweets_per_tag=4)

    status, body, _ = await populate(client)

    assert status == 201, body
    assert body["per_tag"] == {"#devops": 4, "#sre": 3}
    devops = fake_x.searches("#devops")
    assert len(devops) == 2
    assert "next_token" not in devops[0].params
    assert devops[1].params["next_token"]
    # The second request asks only for what is still missing, within X's 10..100 bounds.
    assert devops[1].params["max_results"] == "10"
    assert len(fake_x.searches("#sre")) == 2  # 2 + 1 tweets, then no next_token
    # The four newest #devops tweets: 1007, 1006, 1005, 1004; 1002 (erin) is not stored.
    users = await get(client, "/api/v1/users")
    assert "erin" not in [u["username"] for u in users]


async def test_populate_in_small_batches_then_again_changes_no_counts_and_updates_followers(
    client: Client, fake_x: FakeX, clean_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "BATCH_ROWS", 2)  # every table takes several statements
    dataset.load(fake_x)
    assert (await populated(client))["tweets_new"] == 7  # summed over the batches
    assert await reads(client) == dataset.EXPECTED_READS
    fake_x.users["502"] = user(502, "bob", 130_000)  # bob gained followers since

    body = await populated(client, full=True)

    assert body["tweets_new"] == 0
    assert body["tweets_seen"] == 7
    assert await get(client, "/api/v1/hour") == dataset.EXPECTED_HOURS
    assert await get(client, "/api/v1/tags") == dataset.EXPECTED_TAGS
    top = await get(client, "/api/v1/users")
    assert top[1] == {"username": "bob", "followers": 130_000}
    assert clean_db.counts() == dataset.STORED
    assert clean_db.scalar("SELECT count(*) FROM populate_runs WHERE status = 'succeeded'") == 2


async def test_populate_failing_in_a_later_batch_writes_nothing(
    client: Client, fake_x: FakeX, clean_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "BATCH_ROWS", 2)
    dataset.load(fake_x)
    real = queries._insert_tweet_tags
    calls = 0

    async def fail_on_third(cur: Any, tag: str, ids: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:  # users, places, tweets and two tag batches are already sent
            raise RuntimeError("the third tag batch fails")
        await real(cur, tag, ids)

    monkeypatch.setattr(queries, "_insert_tweet_tags", fail_on_third)

    status, _, _ = await populate(client)

    assert status == 500
    assert calls == 3
    assert clean_db.counts() == dataset.NOTHING
    assert clean_db.scalar("SELECT status FROM populate_runs") == "failed"


async def test_populate_keeps_tweet_when_author_include_is_missing(
    client: Client, fake_x: FakeX, clean_db: Database
) -> None:
    # X returns a partial error when an author was deleted: the tweet stays, its user does not.
    fake_x.add("#devops", [tweet(2001, 999, "2026-11-20T12:00:00.000Z")], [])

    status, body, _ = await populate(client)

    assert status == 201, body
    assert clean_db.counts()["tweets"] == 1
    assert await get(client, "/api/v1/users") == []  # no known author to rank
    assert await get(client, "/api/v1/hour") == [{"date": "2026-11-20T12:00:00Z", "count": 1}]


async def test_concurrent_populates_run_once(app: App, fake_x: FakeX, clean_db: Database) -> None:
    dataset.load(fake_x)
    # Two app instances on one database behave as two replicas.
    first, second = await app(), await app()
    fake_x.pause()  # the first populate stays in its fetch, holding the lock, until resumed

    running = asyncio.create_task(populate(first))
    await eventually(lambda: fake_x.searches(), within=30, what="the first populate fetches")
    others = await asyncio.gather(populate(second), populate(first))
    fake_x.resume()
    status, body, _ = await running

    assert status == 201, body
    assert [answer.status for answer in others] == [409, 409]
    assert {answer.body["error"]["code"] for answer in others} == {"populate_in_progress"}
    assert clean_db.scalar("SELECT count(*) FROM populate_runs") == 1
    # The lock is released: the next populate runs.
    status, _, _ = await populate(second)
    assert status == 201


async def test_populate_requires_the_api_token_compared_in_constant_time(
    app: App, fake_x: FakeX, clean_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `==` on strings stops at the first differing character, which a client can time.
    import hmac

    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # routes calls hmac.compare_digest
    dataset.load(fake_x)
    client = await app(api_token=Secret("right-token-1"))

    # Every malformed or wrong Authorization: tests/test_bad_input.py.
    refused = await client.post(
        "/api/v1/populate", headers={"Authorization": "Bearer wrong-token-1"}
    )
    assert refused.status == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await refused.json())["error"]["code"] == "unauthorized"
    assert clean_db.scalar("SELECT count(*) FROM populate_runs") == 0

    status, _, _ = await populate(client, headers={"Authorization": "Bearer right-token-1"})
    assert status == 201
    assert compared == [(b"wrong-token-1", b"right-token-1"), (b"right-token-1", b"right-token-1")]
    # Reads stay public.
    assert await get(client, "/api/v1/users") == dataset.EXPECTED_USERS
