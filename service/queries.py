"""All SQL the service runs. Each function takes a connection (or cursor) first.

Values always travel as %(name)s parameters. Bulk writes send one array per column and let
PostgreSQL unnest them: one round trip per BATCH_ROWS rows instead of one per row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

import aiopg

from service.model import HourCount, Place, TagCount, TopUser, Tweet, User

# Rows per bulk statement. psycopg2 renders every list parameter as an ARRAY[...] literal in the
# statement text, so one statement per table would make a populate of a million tweets send (and
# PostgreSQL parse) a statement of several hundred megabytes. At 5,000 rows a statement is a few
# megabytes and its round trip is noise next to the rows it carries (bench/README.md measures
# 1,000 to 20,000). The caller's transaction spans every batch, so a populate still commits or
# rolls back as a whole.
BATCH_ROWS: Final = 5_000

_T = TypeVar("_T")


def batches(items: Sequence[_T], size: int | None = None) -> Iterator[Sequence[_T]]:
    size = size or BATCH_ROWS  # read per call, so tests can shrink it
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def select_one(cur: aiopg.Cursor) -> bool:
    await cur.execute("SELECT 1")
    row = await cur.fetchone()
    return bool(row and row[0] == 1)


async def set_client_connection_check(cur: aiopg.Cursor, *, milliseconds: int) -> None:
    """For this session, make PostgreSQL check every so often during a statement that the client
    is still connected, and end the backend if it is not (PostgreSQL 14+)."""
    await cur.execute(
        "SELECT set_config('client_connection_check_interval', %(ms)s, false)",
        {"ms": str(milliseconds)},
    )


async def try_advisory_lock(cur: aiopg.Cursor, key: int) -> bool:
    await cur.execute("SELECT pg_try_advisory_lock(%(key)s)", {"key": key})
    row = await cur.fetchone()
    return bool(row and row[0])


async def advisory_unlock(cur: aiopg.Cursor, key: int) -> None:
    await cur.execute("SELECT pg_advisory_unlock(%(key)s)", {"key": key})


async def begin_snapshot(cur: aiopg.Cursor) -> None:
    """Open a read-only transaction whose statements all see one snapshot; end it with
    rollback()."""
    await cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")


async def rollback(cur: aiopg.Cursor) -> None:
    await cur.execute("ROLLBACK")


async def abandon_running_runs(cur: aiopg.Cursor) -> int:
    """Mark runs left 'running' by a crashed process. Call only while holding the populate lock."""
    await cur.execute(
        """
        UPDATE populate_runs
           SET status = 'abandoned', finished_at = now(),
               error = 'the process running it stopped before it finished'
         WHERE status = 'running'
        """
    )
    return int(cur.rowcount)


async def select_newest_tweet_ids(cur: aiopg.Cursor) -> dict[str, int]:
    """The newest stored tweet id per tag: the since_id of an incremental populate."""
    await cur.execute("SELECT tag, max(tweet_id) FROM tweet_tags GROUP BY tag")
    return {row[0]: int(row[1]) for row in await cur.fetchall()}


async def insert_run(cur: aiopg.Cursor, *, source: str, tags: Sequence[str]) -> int:
    await cur.execute(
        "INSERT INTO populate_runs (source, tags) VALUES (%(source)s, %(tags)s) RETURNING id",
        {"source": source, "tags": list(tags)},
    )
    row = await cur.fetchone()
    return int(row[0])


async def finish_run(
    cur: aiopg.Cursor,
    run_id: int,
    *,
    per_tag: dict[str, int],
    tweets_seen: int,
    tweets_new: int,
) -> None:
    await cur.execute(
        """
        UPDATE populate_runs
           SET status = 'succeeded', finished_at = now(), per_tag = %(per_tag)s,
               tweets_seen = %(seen)s, tweets_new = %(new)s
         WHERE id = %(id)s
        """,
        {"id": run_id, "per_tag": json.dumps(per_tag), "seen": tweets_seen, "new": tweets_new},
    )


async def fail_run(cur: aiopg.Cursor, run_id: int, *, error: str) -> None:
    await cur.execute(
        """
        UPDATE populate_runs SET status = 'failed', finished_at = now(), error = %(error)s
         WHERE id = %(id)s AND status = 'running'
        """,
        {"id": run_id, "error": error[:2000]},
    )


async def upsert_users(cur: aiopg.Cursor, users: Sequence[User]) -> None:
    """Insert or refresh authors; the follower count is always the latest seen."""
    for batch in batches(users):
        await _upsert_users(cur, batch)


async def _upsert_users(cur: aiopg.Cursor, users: Sequence[User]) -> None:
    await cur.execute(
        """
        INSERT INTO users (id, username, name, followers_count, following_count, tweet_count,
                           location, raw)
        SELECT * FROM unnest(%(id)s::bigint[], %(username)s::text[], %(name)s::text[],
                             %(followers)s::int[], %(following)s::int[], %(tweets)s::int[],
                             %(location)s::text[], %(raw)s::jsonb[])
        ON CONFLICT (id) DO UPDATE
           SET username = excluded.username, name = excluded.name,
               followers_count = excluded.followers_count,
               following_count = excluded.following_count,
               tweet_count = excluded.tweet_count, location = excluded.location,
               raw = excluded.raw, updated_at = now()
        """,
        {
            "id": [u.id for u in users],
            "username": [u.username for u in users],
            "name": [u.name for u in users],
            "followers": [u.followers for u in users],
            "following": [u.following for u in users],
            "tweets": [u.tweet_count for u in users],
            "location": [u.location for u in users],
            "raw": [u.raw for u in users],
        },
    )


async def upsert_places(cur: aiopg.Cursor, places: Sequence[Place]) -> None:
    for batch in batches(places):
        await _upsert_places(cur, batch)


async def _upsert_places(cur: aiopg.Cursor, places: Sequence[Place]) -> None:
    await cur.execute(
        """
        INSERT INTO places (id, full_name, country, country_code, raw)
        SELECT * FROM unnest(%(id)s::text[], %(full_name)s::text[], %(country)s::text[],
                             %(code)s::text[], %(raw)s::jsonb[])
        ON CONFLICT (id) DO UPDATE
           SET full_name = excluded.full_name, country = excluded.country,
               country_code = excluded.country_code, raw = excluded.raw
        """,
        {
            "id": [p.id for p in places],
            "full_name": [p.full_name for p in places],
            "country": [p.country for p in places],
            "code": [p.country_code for p in places],
            "raw": [p.raw for p in places],
        },
    )


async def insert_tweets(cur: aiopg.Cursor, tweets: Sequence[Tweet], *, run_id: int) -> int:
    """Store tweets not seen before; returns how many were new. Known tweets stay as stored."""
    new = 0
    for batch in batches(tweets):
        new += await _insert_tweets(cur, batch, run_id=run_id)
    return new


async def _insert_tweets(cur: aiopg.Cursor, tweets: Sequence[Tweet], *, run_id: int) -> int:
    await cur.execute(
        """
        WITH inserted AS (
            INSERT INTO tweets (id, author_id, created_at, lang, place_id, text, raw, run_id)
            SELECT id, author_id, created_at, lang, place_id, text, raw, %(run_id)s
              FROM unnest(%(id)s::bigint[], %(author)s::bigint[], %(created)s::timestamptz[],
                          %(lang)s::text[], %(place)s::text[], %(text)s::text[],
                          %(raw)s::jsonb[])
                   AS t (id, author_id, created_at, lang, place_id, text, raw)
            ON CONFLICT (id) DO NOTHING
            RETURNING 1
        )
        SELECT count(*) FROM inserted
        """,
        {
            "run_id": run_id,
            "id": [t.id for t in tweets],
            "author": [t.author_id for t in tweets],
            "created": [t.created_at for t in tweets],
            "lang": [t.lang for t in tweets],
            "place": [t.place_id for t in tweets],
            "text": [t.text for t in tweets],
            "raw": [t.raw for t in tweets],
        },
    )
    row = await cur.fetchone()
    return int(row[0])


async def insert_tweet_tags(cur: aiopg.Cursor, tag: str, tweet_ids: Sequence[int]) -> None:
    for batch in batches(tweet_ids):
        await _insert_tweet_tags(cur, tag, batch)


async def _insert_tweet_tags(cur: aiopg.Cursor, tag: str, tweet_ids: Sequence[int]) -> None:
    await cur.execute(
        """
        INSERT INTO tweet_tags (tag, tweet_id)
        SELECT %(tag)s, id FROM unnest(%(ids)s::bigint[]) AS ids (id)
        ON CONFLICT DO NOTHING
        """,
        {"tag": tag, "ids": list(tweet_ids)},
    )


# Identifiers cannot be parameters; refresh only names from this fixed set.
_REFRESH = {
    "top_users": "REFRESH MATERIALIZED VIEW CONCURRENTLY top_users",
    "tweets_per_hour": "REFRESH MATERIALIZED VIEW CONCURRENTLY tweets_per_hour",
    "tweets_per_tag": "REFRESH MATERIALIZED VIEW CONCURRENTLY tweets_per_tag",
}


async def refresh_view(cur: aiopg.Cursor, view: str) -> None:
    await cur.execute(_REFRESH[view])


async def bump_generation(cur: aiopg.Cursor) -> int:
    """Mark the views refreshed; call in the transaction that refreshed them."""
    await cur.execute(
        """
        UPDATE view_state SET generation = generation + 1, refreshed_at = now()
        RETURNING generation
        """
    )
    row = await cur.fetchone()
    return int(row[0])


async def select_generation(cur: aiopg.Cursor) -> int:
    await cur.execute("SELECT generation FROM view_state")
    row = await cur.fetchone()
    return int(row[0])


async def select_top_users(cur: aiopg.Cursor, *, limit: int) -> list[TopUser]:
    await cur.execute(
        """
        SELECT username, followers FROM top_users
         ORDER BY followers DESC, username COLLATE "C"
         LIMIT %(limit)s
        """,
        {"limit": limit},
    )
    return [TopUser(username=r[0], followers=int(r[1])) for r in await cur.fetchall()]


async def select_tweets_per_hour(cur: aiopg.Cursor) -> list[HourCount]:
    await cur.execute("SELECT hour, count FROM tweets_per_hour ORDER BY hour")
    return [HourCount(hour=r[0], count=int(r[1])) for r in await cur.fetchall()]


async def select_tweets_per_tag(cur: aiopg.Cursor) -> list[TagCount]:
    await cur.execute(
        """
        SELECT tag, language, country, count FROM tweets_per_tag
         ORDER BY tag COLLATE "C", count DESC, language COLLATE "C", country COLLATE "C" NULLS LAST
        """
    )
    return [
        TagCount(tag=r[0], language=r[1], country=r[2], count=int(r[3]))
        for r in await cur.fetchall()
    ]


async def select_last_run(cur: aiopg.Cursor) -> dict[str, Any] | None:
    await cur.execute(
        """
        SELECT id, status, source, started_at, finished_at
          FROM populate_runs ORDER BY id DESC LIMIT 1
        """
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return {
        "run_id": row[0],
        "status": row[1],
        "source": row[2],
        "started_at": _iso(row[3]),
        "finished_at": _iso(row[4]),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
