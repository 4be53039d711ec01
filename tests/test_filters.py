"""Filters: `tag` on the three reads, `since`/`until` on hour and tags, and the read cache's bound.

The hand-made dataset (tests/dataset.py) gives answers worked out by hand; the bundled sample
gives many more, checked against the same numbers computed here from the base tables.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from service import cache
from service.config import DEFAULT_TAGS
from service.keys import CACHE
from tests import dataset
from tests.calls import App, Client, invalid
from tests.database import Database

HOUR = timedelta(hours=1)
HOURS = dataset.EXPECTED_HOURS


async def get_json(client: Client, path: str, **params: str) -> Any:
    response = await client.get(path, params=params)
    assert response.status == 200, (path, params, await response.text())
    assert response.content_type == "application/json"
    return await response.json()


# --- tag ------------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["sre", "#sre", "SRE", "#Sre"])
async def test_tag_filters_each_read_to_that_tags_tweets(loaded: Client, spelling: str) -> None:
    assert await get_json(loaded, "/api/v1/users", tag=spelling) == [
        {"username": "alice", "followers": 5000},
        {"username": "bob", "followers": 120},
        {"username": "dave", "followers": 0},
    ]
    top = await get_json(loaded, "/api/v1/users", tag=spelling, limit="2")
    assert [row["username"] for row in top] == ["alice", "bob"]
    assert await get_json(loaded, "/api/v1/hour", tag=spelling) == [
        {"date": "2026-11-19T23:00:00Z", "count": 1},
        {"date": "2026-11-20T09:00:00Z", "count": 1},
        {"date": "2026-11-20T10:00:00Z", "count": 1},
    ]
    expected = [
        {"tag": "#sre", "language": "en", "country": "BR", "count": 1},
        {"tag": "#sre", "language": "es", "country": "JP", "count": 1},
        {"tag": "#sre", "language": "und", "country": None, "count": 1},
    ]
    assert all(row in dataset.EXPECTED_TAGS for row in expected)
    assert await get_json(loaded, "/api/v1/tags", tag=spelling) == expected
    assert await get_json(loaded, "/api/v1/hour", tag="#devops") == [
        {"date": "2026-11-20T08:00:00Z", "count": 1},
        {"date": "2026-11-20T09:00:00Z", "count": 1},
        {"date": "2026-11-20T10:00:00Z", "count": 3},
    ]
    # Every author tweeted under #devops: the same ranking as without the filter.
    assert await get_json(loaded, "/api/v1/users", tag="devops") == dataset.EXPECTED_USERS


@pytest.mark.parametrize("path", ["/api/v1/users", "/api/v1/hour", "/api/v1/tags"])
@pytest.mark.parametrize("tag", ["oauth", "#nothing_here", "x2"])
async def test_a_tag_not_stored_gives_an_empty_list(loaded: Client, path: str, tag: str) -> None:
    assert await get_json(loaded, path, tag=tag) == []


@pytest.mark.parametrize("path", ["/api/v1/users", "/api/v1/hour", "/api/v1/tags"])
@pytest.mark.parametrize("tag", ["", "#", "dev ops", " sre", "dev-ops", "123", "#a#b", "x" * 102])
async def test_a_tag_that_is_no_hashtag_is_400(client: Client, path: str, tag: str) -> None:
    assert list(await invalid(client, path, tag=tag)) == ["tag"]


# --- since / until ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # An hour is in when it starts in [since, until); only one bound: open on the other side.
        ("since=2026-11-20T09:00:00Z&until=2026-11-20T10:00:00Z", HOURS[2:3]),
        ("since=2026-11-20T09:00:00Z", HOURS[2:]),
        ("until=2026-11-20T09:00:00Z", HOURS[:2]),
        # since=08:30 starts at 09:00 (the 08:00 hour starts before it); until=09:30 ends at
        # 10:00 (the 09:00 hour starts before it, so it is in).
        ("since=2026-11-20T08:30:00Z&until=2026-11-20T09:30:00Z", HOURS[2:3]),
        # Both inside one hour, in order: a valid, empty range.
        ("since=2026-11-20T09:10:00Z&until=2026-11-20T09:40:00Z", []),
        # Offsets; an unencoded "+" arrives as a space and is read as "+".
        ("since=2026-11-20T11:00:00%2B02:00", HOURS[2:]),
        ("since=2026-11-20T11:00:00+02:00", HOURS[2:]),
        ("since=2026-11-20T04:00:00-05:00", HOURS[2:]),
        # What OpenAPI's format date-time allows: lower-case t/z, long fractions, a leap second.
        ("since=2026-11-20t08:59:59.9999999z", HOURS[2:]),
        ("until=2026-11-20T08:59:60Z", HOURS[:2]),
    ],
)
async def test_hour_range_keeps_hours_starting_in_it(
    loaded: Client, query: str, expected: list[dict[str, Any]]
) -> None:
    assert await get_json(loaded, f"/api/v1/hour?{query}") == expected


async def test_tags_range_counts_tweets_created_in_it(loaded: Client) -> None:
    assert await get_json(loaded, "/api/v1/tags", since="2026-11-20T10:00:00Z") == [
        {"tag": "#devops", "language": "en", "country": "BR", "count": 1},
        {"tag": "#devops", "language": "en", "country": "US", "count": 1},
        {"tag": "#devops", "language": "es", "country": None, "count": 1},
        {"tag": "#sre", "language": "en", "country": "BR", "count": 1},
    ]
    assert await get_json(loaded, "/api/v1/tags", tag="devops", until="2026-11-20T09:30:00Z") == [
        {"tag": "#devops", "language": "ar", "country": None, "count": 1},
        {"tag": "#devops", "language": "en", "country": "BR", "count": 1},
    ]
    everything = {"since": "2026-01-01T00:00:00Z", "until": "2027-01-01T00:00:00Z"}
    assert await get_json(loaded, "/api/v1/tags", **everything) == dataset.EXPECTED_TAGS
    # Before year 1 or after 9999 once in UTC: before or after anything stored.
    assert await get_json(
        loaded, "/api/v1/tags", since="0001-01-01T00:00:00+01:00", until="9999-12-31T23:30:00-01:00"
    ) == (dataset.EXPECTED_TAGS)


@pytest.mark.parametrize("path", ["/api/v1/hour", "/api/v1/tags"])
@pytest.mark.parametrize(
    ("params", "named"),
    [
        *(({"since": bad}, "since") for bad in ("2026-11-20T09:00:00", "2026-11-20", "")),
        *(({"since": "1700000000"}, "since"), ({"until": "yesterday"}, "until")),
        ({"until": "2026-13-01T00:00:00Z"}, "until"),
        # since not before until: named as since, the message naming until.
        *(
            ({"since": "2026-11-20T10:00:00Z", "until": until}, "since")
            for until in (
                "2026-11-20T10:00:00Z",
                "2026-11-20T09:00:00Z",
                "2026-11-20T11:30:00+02:00",
            )
        ),
    ],
)
async def test_a_bad_timestamp_or_range_is_400_naming_it(
    client: Client, path: str, params: dict[str, str], named: str
) -> None:
    details = await invalid(client, path, **params)
    assert list(details) == [named]
    if len(params) == 2:
        assert "until" in details["since"][0]


# --- the sample, against the base tables -----------------------------------------------------


def base_rows(database: Database) -> list[dict[str, Any]]:
    """One row per stored (tweet, tag) pair, with what the filters look at."""
    rows = database.execute(
        """
        SELECT tt.tag, t.id, t.created_at, t.lang, p.country_code, u.username, u.followers_count
          FROM tweet_tags tt JOIN tweets t ON t.id = tt.tweet_id
          LEFT JOIN places p ON p.id = t.place_id
          LEFT JOIN users u ON u.id = t.author_id
        """
    )
    keys = ("tag", "id", "created_at", "lang", "country", "username", "followers")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def selected(
    rows: list[dict[str, Any]], tag: str | None, since: datetime, until: datetime
) -> list[dict[str, Any]]:
    return [
        r for r in rows if (tag is None or r["tag"] == tag) and since <= r["created_at"] < until
    ]


def expected_hours(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    tweets = {r["id"]: r["created_at"] for r in rows}
    hours = Counter(
        at.astimezone(UTC).replace(minute=0, second=0, microsecond=0) for at in tweets.values()
    )
    return [
        {"date": hour.strftime("%Y-%m-%dT%H:%M:%SZ"), "count": count}
        for hour, count in sorted(hours.items())
    ]


def expected_tags(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    counts = Counter((r["tag"], r["lang"], r["country"]) for r in rows)
    found = [
        {"tag": t, "language": lang, "country": country, "count": n}
        for (t, lang, country), n in counts.items()
    ]
    # tag, count descending, language, country (null last), all in byte order.
    return sorted(
        found,
        key=lambda r: (r["tag"], -r["count"], r["language"], r["country"] is None, r["country"]),
    )


def expected_users(rows: list[dict[str, Any]], tag: str, limit: int) -> list[dict[str, Any]]:
    authors = {(r["username"], r["followers"]) for r in rows if r["tag"] == tag and r["username"]}
    ranked = sorted(authors, key=lambda a: (-a[1], a[0].encode()))
    return [{"username": name, "followers": n} for name, n in ranked[:limit]]


async def test_sample_filters_equal_the_base_tables(app: App, clean_db: Database) -> None:
    client = await app(tweet_source="sample", tags=DEFAULT_TAGS)
    assert (await client.post("/api/v1/populate")).status == 201
    rows = base_rows(clean_db)
    newest = max(r["created_at"] for r in rows).replace(minute=0, second=0, microsecond=0)
    start, end = newest - timedelta(days=8), newest + HOUR
    ranges = [(start, end), (newest - timedelta(days=1) + HOUR, end)]
    ranges += [(newest - timedelta(hours=h + 30), newest - timedelta(hours=h)) for h in (7, 50)]

    for tag in (None, *DEFAULT_TAGS):
        for since, until in ranges:
            params = {"since": since.isoformat(), "until": until.isoformat()}
            if tag is not None:
                params["tag"] = tag
            chosen = selected(rows, tag, since, until)
            hours = await get_json(client, "/api/v1/hour", **params)
            assert hours == expected_hours(chosen), params
            tags = await get_json(client, "/api/v1/tags", **params)
            assert tags == expected_tags(chosen), params
        if tag is not None:
            users = await get_json(client, "/api/v1/users", tag=tag, limit="100")
            assert users == expected_users(rows, tag, 100), tag
    # The rare tag has tweets and the empty one has none: both cases were exercised.
    assert await get_json(client, "/api/v1/tags", tag="logmonitoring")
    assert await get_json(client, "/api/v1/hour", tag="opentracing") == []


# --- the cache stays bounded ---------------------------------------------------------------


async def test_cache_is_bounded_whatever_clients_send(
    loaded: Client,
    app: App,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    del loaded
    monkeypatch.setattr(cache, "MAX_ENTRIES", 8)
    client = await app()  # a replica with an empty cache
    entries = client.app[CACHE]
    plain = await get_json(client, "/api/v1/hour")

    start = datetime(2026, 11, 1, tzinfo=UTC)
    for hours in range(40):  # 40 distinct ranges: 40 distinct entries asked for
        since = (start + timedelta(hours=hours)).isoformat()
        assert await get_json(client, "/api/v1/tags", since=since) == dataset.EXPECTED_TAGS
        await get_json(client, "/api/v1/hour")  # the popular read stays the most recent
        assert len(entries) <= 8

    assert await get_json(client, "/api/v1/hour") == plain


async def test_unknown_tags_and_equivalent_parameters_share_one_entry(loaded: Client) -> None:
    client = loaded
    entries = client.app[CACHE]
    await get_json(client, "/api/v1/users", tag="first_unknown")
    before = len(entries)
    for n in range(30):
        assert await get_json(client, "/api/v1/users", tag=f"other{n}") == []
    assert len(entries) == before, "tags not configured"

    first = await client.get("/api/v1/hour", params={"tag": "sre", "since": "2026-11-20T09:00Z"})
    etag = first.headers["ETag"]
    size = len(entries)
    for query in (
        {"tag": "#SRE", "since": "2026-11-20T08:00:01Z"},  # rounds up to 09:00
        {"tag": "Sre", "since": "2026-11-20T11:00:00+02:00"},
        {"tag": "sre", "since": "2026-11-20T09:00:00.000Z", "cache_buster": "1"},
    ):
        again = await client.get(f"/api/v1/hour?{urlencode(query)}")
        assert again.headers["ETag"] == etag, query
    assert len(entries) == size
