"""All SQL the service runs. Each function takes a connection (or cursor) first.

Values always travel as %(name)s parameters. Bulk writes send one array per column and let
PostgreSQL unnest them: one round trip per BATCH_ROWS rows instead of one per row.

The *_stats tables (alembic 0003) are kept by a populate in its own transaction from what it
newly inserted: the tweet and tweet-tag inserts copy what their RETURNING reports into two
temporary tables (create_run_tables), and add_run_to_stats adds those rows to the aggregates,
each key once per run. A tweet or a pair already stored changes nothing, and the work follows
the rows of the run, not the rows stored. Each aggregate equals a GROUP BY over the stored rows
(rebuild_stats() in 0003; tests/test_aggregates.py compares them after every populate).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Final, NamedTuple, TypeVar

import aiopg

from service.model import Place, Summary, Tweet, User

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


async def select_newest_tweet_ids(cur: aiopg.Cursor, tags: Sequence[str]) -> dict[str, int]:
    """The newest stored tweet id per tag: the since_id of an incremental populate. One descent
    of the (tag, tweet_id) primary key per tag, where a GROUP BY would read every stored pair."""
    await cur.execute(
        """
        SELECT s.tag, (SELECT max(tt.tweet_id) FROM tweet_tags AS tt WHERE tt.tag = s.tag)
          FROM unnest(%(tags)s::text[]) AS s (tag)
        """,
        {"tags": list(tags)},
    )
    return {row[0]: int(row[1]) for row in await cur.fetchall() if row[1] is not None}


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
    """Insert or refresh authors; the follower count is always the latest seen, in users and in
    author_stats. Call before insert_tweets: an author X describes for the first time gets an
    author_stats row counting the tweets stored before (while X omitted the author), and this
    run's new tweets are added later by add_run_to_stats."""
    for batch in batches(users):
        await _upsert_users(cur, batch)


async def _upsert_users(cur: aiopg.Cursor, users: Sequence[User]) -> None:
    await cur.execute(
        """
        WITH known AS (
            SELECT id FROM users WHERE id = ANY(%(id)s::bigint[])
        ), upserted AS (
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
            RETURNING id, username, followers_count
        ), synced AS (
            UPDATE author_stats AS a
               SET username = u.username, followers = u.followers_count
              FROM upserted AS u
             WHERE a.user_id = u.id
               AND (a.username, a.followers) IS DISTINCT FROM (u.username, u.followers_count)
        ), first_described AS (
            SELECT u.id, u.username, u.followers_count,
                   (SELECT count(*) FROM tweets AS t WHERE t.author_id = u.id) AS tweets
              FROM upserted AS u
             WHERE u.id NOT IN (SELECT id FROM known)
        )
        INSERT INTO author_stats (user_id, username, followers, tweets)
        SELECT * FROM first_described WHERE tweets > 0
        ON CONFLICT (user_id) DO NOTHING
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


@dataclasses.dataclass(frozen=True, slots=True)
class CountryChange:
    """A place whose country code a populate set or changed (None: none known)."""

    place_id: str
    old: str | None
    new: str | None


async def upsert_places(cur: aiopg.Cursor, places: Sequence[Place]) -> list[CountryChange]:
    """Insert or refresh places; returns those whose country code is not what it was (a place
    seen for the first time had none)."""
    changes: list[CountryChange] = []
    for batch in batches(places):
        changes += await _upsert_places(cur, batch)
    return changes


async def _upsert_places(cur: aiopg.Cursor, places: Sequence[Place]) -> list[CountryChange]:
    # Every part of one statement sees the same snapshot: `old` reads the rows as they were.
    await cur.execute(
        """
        WITH old AS (
            SELECT id, country_code FROM places WHERE id = ANY(%(id)s::text[])
        ), upserted AS (
            INSERT INTO places (id, full_name, country, country_code, raw)
            SELECT * FROM unnest(%(id)s::text[], %(full_name)s::text[], %(country)s::text[],
                                 %(code)s::text[], %(raw)s::jsonb[])
            ON CONFLICT (id) DO UPDATE
               SET full_name = excluded.full_name, country = excluded.country,
                   country_code = excluded.country_code, raw = excluded.raw
            RETURNING id, country_code
        )
        SELECT u.id, o.country_code, u.country_code
          FROM upserted AS u LEFT JOIN old AS o ON o.id = u.id
         WHERE o.country_code IS DISTINCT FROM u.country_code
        """,
        {
            "id": [p.id for p in places],
            "full_name": [p.full_name for p in places],
            "country": [p.country for p in places],
            "code": [p.country_code for p in places],
            "raw": [p.raw for p in places],
        },
    )
    return [CountryChange(place_id=r[0], old=r[1], new=r[2]) for r in await cur.fetchall()]


async def move_place_counts(cur: aiopg.Cursor, changes: Sequence[CountryChange]) -> None:
    """Move the stored tweet-tag pairs of places whose country changed to their new country in
    tag_stats and tag_hour_stats, as a recompute would (the views join places as they are now).
    Call before inserting this run's tweets: the pairs counted here are the ones stored before."""
    if not changes:
        return
    # One row per key with the net change; ON CONFLICT adds it (an existing row may go to zero:
    # no CHECK on the counts for that reason), and rows left at zero are removed.
    await cur.execute(
        """
        WITH changed AS (
            SELECT * FROM unnest(%(place)s::text[], %(old)s::text[], %(new)s::text[])
                       AS c (place_id, old, new)
        ), moved AS MATERIALIZED (
            SELECT tt.tag, date_trunc('hour', t.created_at, 'UTC') AS hour, t.lang,
                   d.country, d.sign
              FROM changed AS c
              JOIN tweets AS t ON t.place_id = c.place_id
              JOIN tweet_tags AS tt ON tt.tweet_id = t.id
             CROSS JOIN LATERAL (VALUES (c.old, -1), (c.new, 1)) AS d (country, sign)
        ), per_tag AS (
            INSERT INTO tag_stats AS s (tag, language, country, tweets)
            SELECT tag, lang, country, sum(sign) FROM moved GROUP BY 1, 2, 3
            ON CONFLICT ON CONSTRAINT tag_stats_key
               DO UPDATE SET tweets = s.tweets + excluded.tweets
        ), per_tag_hour AS (
            INSERT INTO tag_hour_stats AS s (tag, hour, language, country, tweets)
            SELECT tag, hour, lang, country, sum(sign) FROM moved GROUP BY 1, 2, 3, 4
            ON CONFLICT ON CONSTRAINT tag_hour_stats_key
               DO UPDATE SET tweets = s.tweets + excluded.tweets
        )
        SELECT count(*) FROM moved
        """,
        {
            "place": [c.place_id for c in changes],
            "old": [c.old for c in changes],
            "new": [c.new for c in changes],
        },
    )
    row = await cur.fetchone()
    if not row[0]:
        return  # the usual case: places new to the database, named by no stored tweet
    # Rare (a place described after tweets that named it, or a new code), so a scan of these
    # tables, which grow with tags and hours and not with tweets, is affordable.
    await cur.execute("DELETE FROM tag_stats WHERE tweets = 0")
    await cur.execute("DELETE FROM tag_hour_stats WHERE tweets = 0")


async def insert_tweets(cur: aiopg.Cursor, tweets: Sequence[Tweet], *, run_id: int) -> int:
    """Store tweets not seen before; returns how many were new. Known tweets stay as stored.
    The new ones are noted in run_new_tweets (create_run_tables) for add_run_to_stats."""
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
            RETURNING id, author_id, created_at, lang, place_id
        )
        INSERT INTO run_new_tweets SELECT * FROM inserted
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
    return int(cur.rowcount)


async def insert_tweet_tags(cur: aiopg.Cursor, tag: str, tweet_ids: Sequence[int]) -> None:
    for batch in batches(tweet_ids):
        await _insert_tweet_tags(cur, tag, batch)


async def _insert_tweet_tags(cur: aiopg.Cursor, tag: str, tweet_ids: Sequence[int]) -> None:
    await cur.execute(
        """
        WITH inserted AS (
            INSERT INTO tweet_tags (tag, tweet_id)
            SELECT %(tag)s, id FROM unnest(%(ids)s::bigint[]) AS ids (id)
            ON CONFLICT DO NOTHING
            RETURNING tag, tweet_id
        )
        INSERT INTO run_new_tweet_tags SELECT * FROM inserted
        """,
        {"tag": tag, "ids": list(tweet_ids)},
    )


async def create_run_tables(cur: aiopg.Cursor) -> None:
    """The rows a populate newly inserts, for add_run_to_stats; call in its transaction, first.

    Temporary, so each session has its own; created once per pooled connection and emptied by
    every commit (ON COMMIT DELETE ROWS), or gone with a rollback, so each run starts empty and
    no run creates catalog entries after the first."""
    await cur.execute(
        """
        CREATE TEMP TABLE IF NOT EXISTS run_new_tweets (
            id bigint, author_id bigint, created_at timestamptz, lang text, place_id text
        ) ON COMMIT DELETE ROWS;
        CREATE TEMP TABLE IF NOT EXISTS run_new_tweet_tags (tag text, tweet_id bigint)
            ON COMMIT DELETE ROWS;
        """
    )


async def add_run_to_stats(cur: aiopg.Cursor) -> None:
    """Add this run's new tweets and tweet-tag pairs to the aggregates: one upsert per key.
    Call after every insert of the run, in its transaction."""
    # Temporary tables get no autovacuum statistics; the joins below need row counts.
    await cur.execute("ANALYZE run_new_tweets, run_new_tweet_tags")
    await cur.execute(
        """
        WITH per_hour AS (
            INSERT INTO hour_stats AS s (hour, tweets)
            SELECT date_trunc('hour', created_at, 'UTC'), count(*) FROM run_new_tweets GROUP BY 1
            ON CONFLICT (hour) DO UPDATE SET tweets = s.tweets + excluded.tweets
        )
        -- Authors X has described (upsert_users ran first); the others are counted once it does.
        INSERT INTO author_stats AS s (user_id, username, followers, tweets)
        SELECT u.id, u.username, u.followers_count, n.tweets
          FROM (SELECT author_id, count(*) AS tweets FROM run_new_tweets GROUP BY 1) AS n
          JOIN users AS u ON u.id = n.author_id
        ON CONFLICT (user_id) DO UPDATE SET tweets = s.tweets + excluded.tweets
        """
    )
    # A new pair is counted with its tweet as stored (a known tweet keeps its first copy) and
    # its place's country as it is now, as a recompute would. Most pairs belong to this run's
    # new tweets; the others (a stored tweet found by another tag) are read from tweets.
    await cur.execute(
        """
        WITH pairs AS MATERIALIZED (
            SELECT p.tag, n.author_id, n.created_at, n.lang, n.place_id
              FROM run_new_tweet_tags AS p JOIN run_new_tweets AS n ON n.id = p.tweet_id
            UNION ALL
            SELECT p.tag, t.author_id, t.created_at, t.lang, t.place_id
              FROM run_new_tweet_tags AS p JOIN tweets AS t ON t.id = p.tweet_id
             WHERE NOT EXISTS (SELECT FROM run_new_tweets AS n WHERE n.id = p.tweet_id)
        ), counted AS MATERIALIZED (
            SELECT pairs.tag, date_trunc('hour', pairs.created_at, 'UTC') AS hour, pairs.lang,
                   pl.country_code AS country, count(*) AS tweets
              FROM pairs LEFT JOIN places AS pl ON pl.id = pairs.place_id
             GROUP BY 1, 2, 3, 4
        ), per_tag AS (
            INSERT INTO tag_stats AS s (tag, language, country, tweets)
            SELECT tag, lang, country, sum(tweets) FROM counted GROUP BY 1, 2, 3
            ON CONFLICT ON CONSTRAINT tag_stats_key
               DO UPDATE SET tweets = s.tweets + excluded.tweets
        ), per_tag_hour AS (
            INSERT INTO tag_hour_stats AS s (tag, hour, language, country, tweets)
            SELECT tag, hour, lang, country, tweets FROM counted
            ON CONFLICT ON CONSTRAINT tag_hour_stats_key
               DO UPDATE SET tweets = s.tweets + excluded.tweets
        )
        INSERT INTO tag_author_stats AS s (tag, user_id, tweets)
        SELECT tag, author_id, count(*) FROM pairs GROUP BY 1, 2
        ON CONFLICT (tag, user_id) DO UPDATE SET tweets = s.tweets + excluded.tweets
        """
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


# --- the three analytics reads (service/reads.py) ----------------------------------------------
# Each has a statement over its materialized view (every tag, every hour) and one over the
# aggregate tables every populate keeps (alembic 0003), for a tag and/or a range of UTC hours;
# both give the same columns, in the same order. A range is [since, until) on hour starts: both
# bounds arrive rounded up to an hour start (or None), so "an hour whose start lies in the range"
# and "a tweet created in the range" are the same test at the tables' hour granularity.


class Filters(NamedTuple):
    tag: str | None  # None: every tag
    since: datetime | None
    until: datetime | None
    limit: int | None  # None: every row


Row = tuple[Any, ...]


async def select_top_users(cur: aiopg.Cursor, filters: Filters) -> list[Row]:
    await cur.execute(
        """
        SELECT username, followers FROM top_users
         ORDER BY followers DESC, username COLLATE "C"
         LIMIT %(limit)s
        """,
        {"limit": filters.limit},
    )
    return list(await cur.fetchall())


async def select_top_users_by_tag(cur: aiopg.Cursor, filters: Filters) -> list[Row]:
    """Authors of the tag's stored tweets, ranked as select_top_users ranks everyone."""
    await cur.execute(
        """
        SELECT a.username, a.followers
          FROM tag_author_stats AS ta JOIN author_stats AS a USING (user_id)
         WHERE ta.tag = %(tag)s
         ORDER BY a.followers DESC, a.username COLLATE "C"
         LIMIT %(limit)s
        """,
        {"tag": filters.tag, "limit": filters.limit},
    )
    return list(await cur.fetchall())


async def select_tweets_per_hour(cur: aiopg.Cursor, filters: Filters) -> list[Row]:
    del filters  # every tag, every hour
    await cur.execute("SELECT hour, count FROM tweets_per_hour ORDER BY hour")
    return list(await cur.fetchall())


async def select_tweets_per_hour_in(cur: aiopg.Cursor, filters: Filters) -> list[Row]:
    """Tweets per UTC hour in [since, until), only those with the tag when one is given."""
    params = {"tag": filters.tag, "since": filters.since, "until": filters.until}
    if filters.tag is None:
        await cur.execute(
            """
            SELECT hour, tweets FROM hour_stats
             WHERE (%(since)s::timestamptz IS NULL OR hour >= %(since)s)
               AND (%(until)s::timestamptz IS NULL OR hour < %(until)s)
             ORDER BY hour
            """,
            params,
        )
    else:
        await cur.execute(
            """
            SELECT hour, sum(tweets) FROM tag_hour_stats
             WHERE tag = %(tag)s
               AND (%(since)s::timestamptz IS NULL OR hour >= %(since)s)
               AND (%(until)s::timestamptz IS NULL OR hour < %(until)s)
             GROUP BY hour
             ORDER BY hour
            """,
            params,
        )
    return list(await cur.fetchall())


async def select_tweets_per_tag(cur: aiopg.Cursor, filters: Filters) -> list[Row]:
    del filters  # every tag, every hour
    await cur.execute(
        """
        SELECT tag, language, country, count FROM tweets_per_tag
         ORDER BY tag COLLATE "C", count DESC, language COLLATE "C", country COLLATE "C" NULLS LAST
        """
    )
    return list(await cur.fetchall())


async def select_tweets_per_tag_in(cur: aiopg.Cursor, filters: Filters) -> list[Row]:
    """select_tweets_per_tag's rows for one tag and/or the tweets created in [since, until)."""
    params = {"tag": filters.tag, "since": filters.since, "until": filters.until}
    if filters.since is None and filters.until is None:
        await cur.execute(
            """
            SELECT tag, language, country, tweets FROM tag_stats
             WHERE tag = %(tag)s
             ORDER BY tag COLLATE "C", tweets DESC, language COLLATE "C",
                      country COLLATE "C" NULLS LAST
            """,
            params,
        )
    else:
        await cur.execute(
            """
            SELECT tag, language, country, sum(tweets) FROM tag_hour_stats
             WHERE (%(tag)s::text IS NULL OR tag = %(tag)s)
               AND (%(since)s::timestamptz IS NULL OR hour >= %(since)s)
               AND (%(until)s::timestamptz IS NULL OR hour < %(until)s)
             GROUP BY tag, language, country
             ORDER BY tag COLLATE "C", sum(tweets) DESC, language COLLATE "C",
                      country COLLATE "C" NULLS LAST
            """,
            params,
        )
    return list(await cur.fetchall())


async def select_summary(cur: aiopg.Cursor) -> Summary:
    """Totals from the views (authors from author_stats: top_users holds the first 1,000), and
    the last successful populate: the one the reads show, as only a success changes them."""
    await cur.execute(
        """
        SELECT h.tweets, (SELECT count(*) FROM author_stats),
               (SELECT count(DISTINCT tag) FROM tweets_per_tag), h.first_hour, h.last_hour,
               r.id, r.source, r.finished_at
          FROM (SELECT coalesce(sum(count), 0), min(hour), max(hour) FROM tweets_per_hour)
               AS h (tweets, first_hour, last_hour)
          LEFT JOIN (SELECT id, source, finished_at FROM populate_runs
                      WHERE status = 'succeeded' ORDER BY id DESC LIMIT 1) AS r ON true
        """
    )
    row = await cur.fetchone()
    return Summary(
        tweets=int(row[0]),
        authors=int(row[1]),
        tags=int(row[2]),
        first_hour=row[3],
        last_hour=row[4],
        run_id=row[5],
        source=row[6],
        finished_at=row[7],
    )


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
