"""The aggregate tables (alembic 0003) and the views over them equal a GROUP BY over the stored
rows after every populate and every compliance pass: new tweets, duplicates, tweets under
several tags, authors and places that X describes late or differently, failed and abandoned
runs, full refetches; deleted posts, removed accounts with many posts under several tags,
scrubbed places, repeated and stale compliance items.

Everything goes through the real app, the real tweepy client and the fake X API."""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from service import queries
from service.app import create_app
from service.config import Settings
from service.model import ComplianceItem
from service.snowflake import EPOCH_MS
from testing.fake_x import UNAUTHORIZED, FakeX, iso, place, tweet, user
from tests.calls import Client, get, populate, populated
from tests.database import Database, assert_consistent, snapshot
from tests.settings import make_settings

# Snowflake ids carry their time; the service sends since_id only for ids within X's window.
TAGS = ("#devops", "#sre", "#k8s")


class World:
    """What the fake X API knows, changed a little before every populate."""

    def __init__(self, fake: FakeX, rng: random.Random) -> None:
        self.fake = fake
        self.rng = rng
        self.sequence = 0
        self.tweets: list[tuple[str, dict[str, Any]]] = []  # (tag, tweet) as served
        # Authors 1-30; X describes 1-25 from the start, 26-30 only later (or never).
        for user_id in range(1, 26):
            self.describe_user(user_id)
        # Places p1-p4 from the start; p5 and p6 are named by tweets before X describes them.
        for n, code in enumerate(("BR", "JP", "US", "DE"), start=1):
            fake.places[f"p{n}"] = place(f"p{n}", code)

    def describe_user(self, user_id: int) -> None:
        followers = self.rng.choice([0, 10, 10, 500, 5000, self.rng.randrange(1_000_000)])
        name = f"user{user_id}" if self.rng.random() < 0.8 else f"renamed{user_id}"
        self.fake.users[str(user_id)] = user(user_id, name, followers)

    def new_tweet(self) -> dict[str, Any]:
        # Created within the last three days, so hours repeat, and its id carries that time.
        ms = int((time.time() - self.rng.uniform(60, 3 * 86_400)) * 1000)
        self.sequence += 1
        tweet_id = ((ms - EPOCH_MS) << 22) | self.sequence
        created = iso(datetime.fromtimestamp(ms / 1000, UTC))
        where = self.rng.choice([None, None, None, "p1", "p2", "p3", "p4", "p5", "p6"])
        lang = self.rng.choice(["en", "en", "pt", "es", "und"])
        return tweet(tweet_id, self.rng.randint(1, 30), created, lang=lang, place_id=where)

    def serve(self, tag: str, body: dict[str, Any]) -> None:
        self.fake.add(tag, [body])
        self.tweets.append((tag, body))

    def step(self) -> None:
        rng = self.rng
        for _ in range(rng.randint(0, 12)):
            body = self.new_tweet()
            for tag in rng.sample(TAGS, rng.choice([1, 1, 1, 2, 3])):  # cross-tag tweets
                self.serve(tag, body)
        if self.tweets and rng.random() < 0.4:
            # A tweet already served (maybe stored) now also found under another tag: only a
            # new (tag, tweet) pair counts, and the tweet itself once.
            tag, body = rng.choice(self.tweets)
            self.serve(rng.choice([t for t in TAGS if t != tag]), body)
        if rng.random() < 0.4:  # follower counts and handles change; the latest seen wins
            for user_id in rng.sample(range(1, 26), 5):
                self.describe_user(user_id)
        if rng.random() < 0.2:  # an author X did not describe before
            self.describe_user(rng.randint(26, 29))
        if rng.random() < 0.2:  # a place described late, or its country code changing
            name = rng.choice(["p1", "p5", "p6"])
            self.fake.places[name] = place(name, rng.choice(["BR", "PT", "NZ"]))


def compliance_items(
    db: Database, rng: random.Random, earlier: list[ComplianceItem]
) -> list[ComplianceItem]:
    """What a compliance job might report now: deleted posts (some found under several tags),
    scrubbed places, an account among those with the most posts; X may repeat a line,
    report what an earlier pass removed, or name an action this code does not know."""
    rows = db.execute(
        """
        SELECT t.id, t.author_id, t.place_id IS NOT NULL,
               (SELECT count(*) FROM tweet_tags WHERE tweet_id = t.id) > 1
          FROM tweets AS t ORDER BY t.id
        """
    )
    if not rows:
        return []

    def some(pool: list[Any], n: int) -> list[Any]:
        return rng.sample(pool, min(n, len(pool)))

    ids, cross, placed = ([r[0] for r in rows if r[k]] for k in (0, 3, 2))
    items = [ComplianceItem("tweets", i, "delete", "deleted") for i in some(ids + cross, 4)]
    items += [ComplianceItem("tweets", i, "scrub_geo", "scrub_geo") for i in some(placed, 3)]
    busiest = [a for a, _ in Counter(r[1] for r in rows).most_common(3)]
    reason = rng.choice(["deleted", "suspended", "protected", "deactivated"])
    items.append(ComplianceItem("users", rng.choice(busiest), "delete", reason))
    items.append(ComplianceItem("tweets", rng.choice(ids), "some_new_action", "x"))
    items += some(items, 3) + some(earlier, 3)
    rng.shuffle(items)
    return items


async def assert_filtered_reads_recompute(client: Client, db: Database) -> None:
    """The filtered reads (from the aggregate tables) against a GROUP BY over the stored rows."""
    since = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
    for tag in TAGS:
        params = {"tag": tag, "since": since}
        hours = db.execute(
            """
            SELECT date_trunc('hour', t.created_at, 'UTC'), count(*)
              FROM tweet_tags AS tt JOIN tweets AS t ON t.id = tt.tweet_id
             WHERE tt.tag = %(tag)s GROUP BY 1 ORDER BY 1
            """,
            params,
        )
        assert await get(client, "/api/v1/hour", tag=tag) == [
            {"date": f"{h.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}", "count": n} for h, n in hours
        ]
        per_tag = db.execute(
            """
            SELECT tt.tag, t.lang, p.country_code, count(*)
              FROM tweet_tags AS tt JOIN tweets AS t ON t.id = tt.tweet_id
              LEFT JOIN places AS p ON p.id = t.place_id
             WHERE tt.tag = %(tag)s AND t.created_at >= %(since)s GROUP BY 1, 2, 3
            """,
            params,
        )
        got = await get(client, "/api/v1/tags", tag=tag, since=since.isoformat())
        assert sorted((tuple(r.values()) for r in got), key=repr) == sorted(per_tag, key=repr)
        users = db.execute(
            """
            SELECT u.username, u.followers_count FROM users AS u
             WHERE u.id IN (SELECT t.author_id
                              FROM tweet_tags AS tt JOIN tweets AS t ON t.id = tt.tweet_id
                             WHERE tt.tag = %(tag)s)
             ORDER BY 2 DESC, u.username COLLATE "C" LIMIT 100
            """,
            params,
        )
        got = await get(client, "/api/v1/users", tag=tag, limit="100")
        assert [(u["username"], u["followers"]) for u in got] == users


@pytest.fixture
def settings(clean_db: Database, fake_x: FakeX) -> Settings:
    return make_settings(clean_db, fake_x, tags=TAGS)


@pytest.mark.slow
async def test_aggregates_equal_a_recompute_after_every_populate(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    fake_x: FakeX,
    clean_db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(queries, "BATCH_ROWS", 7)  # several statements per table and run
    rng = random.Random(20261201)
    world = World(fake_x, rng)
    client = await aiohttp_client(create_app(settings))
    outcomes: dict[str, int] = {}

    earlier: list[ComplianceItem] = []
    kinds = ["new", "new", "new", "full", "x_fails", "store_fails", "abandoned"]
    for _ in range(50):
        world.step()
        before = snapshot(clean_db)
        kind = rng.choice([*kinds, "compliance", "compliance"])
        outcomes[kind] = outcomes.get(kind, 0) + 1
        if kind == "compliance":
            # A real pass through the fake X API's compliance jobs; X reports an id once.
            items = compliance_items(clean_db, rng, earlier)
            reported: dict[tuple[str, int], tuple[str, str]] = {
                (i.kind, i.id): (i.action, i.reason) for i in reversed(items)
            }
            fake_x.compliance.results = reported
            before_ids = {i for (i,) in clean_db.execute("SELECT id FROM tweets")}
            response = await client.post("/api/v1/compliance")
            assert response.status == 201, await response.text()
            applied = (await response.json())["applied"]
            # The fake X API keeps serving what was removed: the tombstones keep it out.
            deleted = {i for (k, i), (a, _) in reported.items() if (k, a) == ("tweets", "delete")}
            assert applied["tweets"]["delete"]["deleted"] == len(deleted & before_ids)
            assert applied["tweets"].get("some_new_action", {}).get("x", 0) == 0
            earlier += items
            await assert_filtered_reads_recompute(client, clean_db)
        elif kind == "x_fails":
            fake_x.fail(401, UNAUTHORIZED, query=rng.choice(TAGS))
            assert (await populate(client)).status == 502
            assert snapshot(clean_db) == before
        elif kind == "store_fails":
            # Once the aggregates are written, or once the views are refreshed too:
            # the rollback has to take every aggregate back with it.
            name = rng.choice(["add_run_to_stats", "bump_generation"])
            real = getattr(queries, name)

            async def fail(*args: Any, real: Any = real, name: str = name) -> Any:
                await real(*args)
                raise RuntimeError(f"{name} fails after writing")

            with monkeypatch.context() as patch:
                patch.setattr(queries, name, fail)
                assert (await populate(client)).status == 500
            assert snapshot(clean_db) == before
        else:
            if kind == "abandoned":  # as a process that died mid-run leaves it
                clean_db.execute(
                    "INSERT INTO populate_runs (source, tags) VALUES ('x', %(tags)s)",
                    {"tags": list(TAGS)},
                )
            assert (await populate(client, full=kind == "full")).status == 201
        assert_consistent(clean_db)
        assert clean_db.execute(
            """
            SELECT (SELECT count(*) FROM tweets WHERE author_id IN (SELECT id FROM removed_users)
                       OR id IN (SELECT id FROM removed_tweets WHERE action = 'delete')),
                   (SELECT count(*) FROM users WHERE id IN (SELECT id FROM removed_users)),
                   (SELECT count(*) FROM tweets WHERE raw ? 'geo'
                       AND id IN (SELECT id FROM removed_tweets))
            """
        ) == [(0, 0, 0)], "a removed post, account or location is stored"

    # The run covered what it is about.
    assert set(outcomes) == {*kinds, "compliance"}
    removed = """
        SELECT count(*) FILTER (WHERE action = 'delete'),
               count(*) FILTER (WHERE action = 'scrub_geo'),
               (SELECT count(*) FROM removed_users) FROM removed_tweets
    """
    assert min(clean_db.execute(removed)[0]) > 1
    tweets, cross_tag, undescribed_author, late_place = clean_db.execute(
        """
        SELECT count(*),
               count(*) FILTER (WHERE (SELECT count(*) FROM tweet_tags WHERE tweet_id = t.id) > 1),
               count(*) FILTER (WHERE author_id NOT IN (SELECT id FROM users)),
               count(*) FILTER (WHERE place_id IN ('p5', 'p6'))
          FROM tweets AS t
        """
    )[0]
    assert tweets > 100
    assert cross_tag > 10
    assert undescribed_author > 0
    assert late_place > 0
    assert clean_db.scalar("SELECT count(*) FROM populate_runs WHERE status = 'abandoned'") > 0


async def test_follower_count_and_handle_are_the_latest_seen(
    aiohttp_client: AiohttpClient, settings: Settings, fake_x: FakeX, clean_db: Database
) -> None:
    t1, t2 = (tweet(100 + n, 7, "2026-11-20T10:00:00.000Z") for n in range(2))
    fake_x.add("#devops", [t1], [user(7, "seven", 10)])
    client = await aiohttp_client(create_app(settings))
    await populated(client, full=True)
    fake_x.add("#sre", [t2], [user(7, "seven_renamed", 99)])

    await populated(client, full=True)

    assert clean_db.execute("SELECT user_id, username, followers, tweets FROM author_stats") == [
        (7, "seven_renamed", 99, 2)
    ]
    assert clean_db.execute("SELECT username, followers, tweets FROM top_users") == [
        ("seven_renamed", 99, 2)
    ]


async def test_an_author_or_place_described_late_counts_the_tweets_stored_before(
    aiohttp_client: AiohttpClient, settings: Settings, fake_x: FakeX, clean_db: Database
) -> None:
    # X omits a deleted or suspended author from includes, and may name a place it does not
    # describe; the tweet is stored without them.
    fake_x.add("#devops", [tweet(201, 9, "2026-11-20T10:00:00.000Z", place_id="pz")])
    client = await aiohttp_client(create_app(settings))
    await populated(client, full=True)
    assert clean_db.execute("SELECT * FROM author_stats") == []
    assert clean_db.execute("SELECT tag, user_id, tweets FROM tag_author_stats") == [
        ("#devops", 9, 1)
    ]
    assert clean_db.execute("SELECT tag, language, country, count FROM tweets_per_tag") == [
        ("#devops", "en", None, 1)
    ]
    later = tweet(202, 9, "2026-11-20T10:05:00.000Z", place_id="pz")
    fake_x.add("#sre", [later], [user(9, "nine", 5)], [place("pz", "NZ")])

    await populated(client, full=True)

    assert clean_db.execute("SELECT user_id, username, followers, tweets FROM author_stats") == [
        (9, "nine", 5, 2)
    ]
    assert clean_db.execute(
        "SELECT tag, language, country, count FROM tweets_per_tag ORDER BY tag"
    ) == [("#devops", "en", "NZ", 1), ("#sre", "en", "NZ", 1)]
    assert clean_db.scalar("SELECT count(*) FROM tag_hour_stats WHERE country IS NULL") == 0
    assert_consistent(clean_db)


async def test_top_users_holds_the_first_thousand_authors_and_author_stats_all(
    aiohttp_client: AiohttpClient, clean_db: Database, fake_x: FakeX
) -> None:
    authors = 1_050
    fake_x.add(
        "#devops",
        [tweet(1000 + n, n, "2026-11-20T10:00:00.000Z") for n in range(1, authors + 1)],
        # Ties on followers: the handle decides, in C collation ("user10" before "user9").
        [user(n, f"user{n}", n // 3) for n in range(1, authors + 1)],
    )
    settings = make_settings(clean_db, fake_x, tags=("#devops",), tweets_per_tag=authors)
    client = await aiohttp_client(create_app(settings))

    await populated(client)

    assert clean_db.scalar("SELECT count(*) FROM author_stats") == authors
    assert clean_db.scalar("SELECT count(*) FROM top_users") == 1000
    assert_consistent(clean_db)  # top_users against the first 1,000 of a recompute
    users = await get(client, "/api/v1/users", limit="100")
    ranked = sorted(range(1, authors + 1), key=lambda n: (-(n // 3), f"user{n}"))
    assert [u["username"] for u in users] == [f"user{n}" for n in ranked[:100]]
