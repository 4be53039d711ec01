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
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime
from typing import Any, Final, NamedTuple, TypeVar

import aiopg

from service.model import ComplianceItem, ComplianceKind, Place, Summary, Tweet, User

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
    """Insert or refresh authors, except those a compliance pass removed; the follower count is
    always the latest seen, in users and in author_stats. Call before insert_tweets: an author
    X describes for the first time gets an author_stats row counting the tweets stored before
    (while X omitted the author), and this run's new tweets are added later by
    add_run_to_stats."""
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
                   AS u (id, username, name, followers, following, tweets, location, raw)
             WHERE NOT EXISTS (SELECT FROM removed_users AS r WHERE r.id = u.id)
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
    """Store tweets not seen before; returns how many were new. Known tweets stay as stored,
    and tweets a compliance pass removed (or whose author it removed) are not stored again.
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
             WHERE NOT EXISTS (SELECT FROM removed_tweets AS r
                                WHERE r.id = t.id AND r.action = 'delete')
               AND NOT EXISTS (SELECT FROM removed_users AS r WHERE r.id = t.author_id)
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
            SELECT %(tag)s, ids.id FROM unnest(%(ids)s::bigint[]) AS ids (id)
             -- A tweet insert_tweets refused (a tombstone) has no row to tag.
             WHERE EXISTS (SELECT FROM tweets AS t WHERE t.id = ids.id)
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


# --- compliance (alembic 0004) -------------------------------------------------------------------
# A pass (service/compliance.py) uploads every stored id to X's batch compliance jobs and applies
# what X sends back with apply_compliance, in the transaction that refreshes the views. The work is
# set-based, as add_run_to_stats is: the items go to a temporary table, the removed rows come back
# from DELETE ... RETURNING into two more, and each aggregate loses them in one grouped statement.

# kind -> action -> reason -> rows removed or scrubbed.
Applied = dict[str, dict[str, dict[str, int]]]

# Accounts are the users rows and every author of a stored post without one: X leaves deleted or
# suspended authors out of a search's includes, and their posts are stored all the same. Each
# page is one index range after the last id of the one before (keyset pagination).
_ID_PAGES: Final = {
    "tweets": "SELECT id FROM tweets WHERE id > %(after)s ORDER BY id LIMIT %(batch)s",
    "users": """
        SELECT id FROM (
            (SELECT id FROM users WHERE id > %(after)s ORDER BY id LIMIT %(batch)s)
            UNION
            (SELECT DISTINCT author_id FROM tweets WHERE author_id > %(after)s
              ORDER BY author_id LIMIT %(batch)s)
        ) AS ids (id)
         ORDER BY id LIMIT %(batch)s
    """,
}
_ID_COUNTS: Final = {
    "tweets": "SELECT count(*) FROM tweets",
    "users": "SELECT count(*) FROM (SELECT id FROM users UNION SELECT author_id FROM tweets) AS i",
}


async def iter_ids(
    cur: aiopg.Cursor, kind: ComplianceKind, *, batch: int = 50_000
) -> AsyncIterator[list[int]]:
    """The stored post or account ids, ascending, `batch` at a time. Each page is read whole
    before it is yielded, so the caller may use the cursor between pages."""
    after = -(2**63)
    while True:
        await cur.execute(_ID_PAGES[kind], {"after": after, "batch": batch})
        ids = [int(row[0]) for row in await cur.fetchall()]
        if ids:
            yield ids
        if len(ids) < batch:
            return
        after = ids[-1]


async def count_ids(cur: aiopg.Cursor, kind: ComplianceKind) -> int:
    await cur.execute(_ID_COUNTS[kind])
    row = await cur.fetchone()
    return int(row[0])


async def apply_compliance(cur: aiopg.Cursor, items: Sequence[ComplianceItem]) -> Applied:
    """Apply a compliance job's results; call in the caller's transaction (its views refresh
    follows). tweets/delete removes the post under every tag; users/delete removes the account
    and every post of it; tweets/scrub_geo removes the post's place (column and raw JSON), moving
    its tag counts to no country. Every aggregate is left equal to a GROUP BY over what is stored,
    and tombstones keep later populates from storing the removed again.

    Returns, for every kind, action and reason among the items, the rows removed or scrubbed by
    this call: items for rows no longer stored (a second apply), repeated items and actions this
    code does not know count 0."""
    await cur.execute(_COMPLIANCE_TABLES)
    for batch in batches(items):
        await cur.execute(
            """
            INSERT INTO compliance_items (kind, id, action, reason)
            SELECT * FROM unnest(%(kind)s::text[], %(id)s::bigint[], %(action)s::text[],
                                 %(reason)s::text[])
            ON CONFLICT DO NOTHING
            """,
            {
                "kind": [i.kind for i in batch],
                "id": [i.id for i in batch],
                "action": [i.action for i in batch],
                "reason": [i.reason for i in batch],
            },
        )
    # Temporary tables get no autovacuum statistics; the joins below need row counts.
    await cur.execute("ANALYZE compliance_items")
    for statement in _APPLY:
        await cur.execute(statement)
    await cur.execute(
        """
        SELECT i.kind, i.action, i.reason, count(c.id)
          FROM compliance_items AS i
          LEFT JOIN (SELECT DISTINCT kind, action, id FROM compliance_changed) AS c
            ON (c.kind, c.action, c.id) = (i.kind, i.action, i.id)
         GROUP BY 1, 2, 3
        """
    )
    applied: Applied = {}
    for kind, action, reason, count in await cur.fetchall():
        applied.setdefault(kind, {}).setdefault(action, {})[reason] = int(count)
    return applied


# Created once per pooled connection, like create_run_tables; emptied at the start of every apply
# too, as one transaction may apply several batches of results.
_COMPLIANCE_TABLES: Final = """
CREATE TEMP TABLE IF NOT EXISTS compliance_items (
    kind text, id bigint, action text, reason text, PRIMARY KEY (kind, id, action, reason)
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS compliance_gone_tweets (
    id bigint, author_id bigint, created_at timestamptz, lang text, place_id text
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS compliance_gone_pairs (tag text, tweet_id bigint)
    ON COMMIT DELETE ROWS;
-- Net changes to tag_stats and tag_hour_stats: removed pairs, and scrubbed pairs changing country.
CREATE TEMP TABLE IF NOT EXISTS compliance_moves (
    tag text, hour timestamptz, lang text, country text, tweets bigint
) ON COMMIT DELETE ROWS;
-- What this apply changed, for the counts it returns.
CREATE TEMP TABLE IF NOT EXISTS compliance_changed (kind text, action text, id bigint)
    ON COMMIT DELETE ROWS;
TRUNCATE compliance_items, compliance_gone_tweets, compliance_gone_pairs, compliance_moves,
         compliance_changed;
"""

_APPLY: Final = (
    # Tombstones, whether or not the row is still stored. A delete outranks a scrub_geo recorded
    # before it: only a delete keeps a populate from storing the id again.
    """
    INSERT INTO removed_users (id, reason)
    SELECT DISTINCT ON (id) id, reason FROM compliance_items
     WHERE kind = 'users' AND action = 'delete'
     ORDER BY id, reason
    ON CONFLICT (id) DO NOTHING;

    INSERT INTO removed_tweets AS r (id, action, reason)
    SELECT DISTINCT ON (id) id, action, reason FROM compliance_items
     WHERE kind = 'tweets' AND action IN ('delete', 'scrub_geo')
     ORDER BY id, action = 'delete' DESC, reason
    ON CONFLICT (id) DO UPDATE
       SET action = excluded.action, reason = excluded.reason, removed_at = now()
     WHERE r.action <> 'delete' AND excluded.action = 'delete'
    """,
    # The posts: those X reports deleted, and every post of an account it reports. Their pairs
    # are read in the same statement, which sees tweet_tags as it was before the cascade.
    """
    WITH doomed AS (
        SELECT id FROM compliance_items WHERE kind = 'tweets' AND action = 'delete'
        UNION
        SELECT t.id FROM compliance_items AS i JOIN tweets AS t ON t.author_id = i.id
         WHERE i.kind = 'users' AND i.action = 'delete'
    ), gone AS (
        DELETE FROM tweets AS t USING doomed AS d WHERE t.id = d.id
        RETURNING t.id, t.author_id, t.created_at, t.lang, t.place_id
    ), pairs AS (
        INSERT INTO compliance_gone_pairs (tag, tweet_id)
        SELECT tt.tag, tt.tweet_id FROM tweet_tags AS tt JOIN gone AS g ON g.id = tt.tweet_id
    ), changed AS (
        -- An account whose posts went is gone as a stored account (iter_ids counts authors).
        INSERT INTO compliance_changed (kind, action, id)
        SELECT 'tweets', 'delete', id FROM gone
        UNION ALL
        SELECT DISTINCT 'users', 'delete', author_id FROM gone
    )
    INSERT INTO compliance_gone_tweets SELECT * FROM gone
    """,
    """
    WITH gone AS (
        DELETE FROM users AS u USING compliance_items AS i
         WHERE i.kind = 'users' AND i.action = 'delete' AND u.id = i.id
        RETURNING u.id
    ), stats AS (
        DELETE FROM author_stats AS a USING gone AS g WHERE a.user_id = g.id
    )
    INSERT INTO compliance_changed (kind, action, id) SELECT 'users', 'delete', id FROM gone
    """,
    # Geo of the posts still stored: the place and raw's "geo" go; the post's pairs leave its
    # place's country for no country (NULL), as a recompute joining places would count them.
    """
    WITH target AS MATERIALIZED (
        SELECT t.id, t.place_id, t.created_at, t.lang FROM tweets AS t
         WHERE t.id IN (SELECT id FROM compliance_items
                         WHERE kind = 'tweets' AND action = 'scrub_geo')
           AND (t.place_id IS NOT NULL OR t.raw ? 'geo')
    ), scrubbed AS (
        UPDATE tweets AS t SET place_id = NULL, raw = t.raw - 'geo'
          FROM target AS g WHERE t.id = g.id
        RETURNING t.id
    ), moved AS (
        INSERT INTO compliance_moves (tag, hour, lang, country, tweets)
        SELECT tt.tag, date_trunc('hour', g.created_at, 'UTC'), g.lang, d.country, d.sign
          FROM target AS g
          JOIN tweet_tags AS tt ON tt.tweet_id = g.id
          JOIN places AS p ON p.id = g.place_id
         CROSS JOIN LATERAL (VALUES (p.country_code, -1), (NULL, 1)) AS d (country, sign)
         WHERE p.country_code IS NOT NULL
    )
    INSERT INTO compliance_changed (kind, action, id) SELECT 'tweets', 'scrub_geo', id FROM scrubbed
    """,
    "ANALYZE compliance_gone_tweets, compliance_gone_pairs",
    # The tables whose counts must stay above zero: a key losing all it counted is deleted, the
    # others lose what went (one statement each, the two parts touch different rows).
    """
    WITH gone AS (
        SELECT date_trunc('hour', created_at, 'UTC') AS hour, count(*) AS tweets
          FROM compliance_gone_tweets GROUP BY 1
    ), emptied AS (
        DELETE FROM hour_stats AS s USING gone AS g WHERE s.hour = g.hour AND s.tweets = g.tweets
    )
    UPDATE hour_stats AS s SET tweets = s.tweets - g.tweets
      FROM gone AS g WHERE s.hour = g.hour AND s.tweets <> g.tweets;

    WITH gone AS (
        SELECT author_id, count(*) AS tweets FROM compliance_gone_tweets GROUP BY 1
    ), emptied AS (
        DELETE FROM author_stats AS s USING gone AS g
         WHERE s.user_id = g.author_id AND s.tweets = g.tweets
    )
    UPDATE author_stats AS s SET tweets = s.tweets - g.tweets
      FROM gone AS g WHERE s.user_id = g.author_id AND s.tweets <> g.tweets;

    WITH gone AS (
        SELECT p.tag, t.author_id, count(*) AS tweets
          FROM compliance_gone_pairs AS p JOIN compliance_gone_tweets AS t ON t.id = p.tweet_id
         GROUP BY 1, 2
    ), emptied AS (
        DELETE FROM tag_author_stats AS s USING gone AS g
         WHERE (s.tag, s.user_id) = (g.tag, g.author_id) AND s.tweets = g.tweets
    )
    UPDATE tag_author_stats AS s SET tweets = s.tweets - g.tweets
      FROM gone AS g WHERE (s.tag, s.user_id) = (g.tag, g.author_id) AND s.tweets <> g.tweets
    """,
    # tag_stats and tag_hour_stats take the net change per key through ON CONFLICT, which finds
    # the NULL-country row (NULLS NOT DISTINCT); the keys it leaves at zero are then deleted.
    """
    INSERT INTO compliance_moves (tag, hour, lang, country, tweets)
    SELECT p.tag, date_trunc('hour', t.created_at, 'UTC'), t.lang, pl.country_code, -count(*)
      FROM compliance_gone_pairs AS p JOIN compliance_gone_tweets AS t ON t.id = p.tweet_id
      LEFT JOIN places AS pl ON pl.id = t.place_id
     GROUP BY 1, 2, 3, 4;

    WITH m AS MATERIALIZED (
        SELECT tag, hour, lang, country, sum(tweets) AS tweets FROM compliance_moves
         GROUP BY 1, 2, 3, 4
    ), per_tag AS (
        INSERT INTO tag_stats AS s (tag, language, country, tweets)
        SELECT tag, lang, country, sum(tweets) FROM m GROUP BY 1, 2, 3
        ON CONFLICT ON CONSTRAINT tag_stats_key DO UPDATE SET tweets = s.tweets + excluded.tweets
    )
    INSERT INTO tag_hour_stats AS s (tag, hour, language, country, tweets)
    SELECT tag, hour, lang, country, tweets FROM m
    ON CONFLICT ON CONSTRAINT tag_hour_stats_key
       DO UPDATE SET tweets = s.tweets + excluded.tweets;

    DELETE FROM tag_hour_stats AS s
     USING (SELECT DISTINCT tag, hour, lang, country FROM compliance_moves) AS k
     WHERE (s.tag, s.hour, s.language) = (k.tag, k.hour, k.lang)
       AND s.country IS NOT DISTINCT FROM k.country AND s.tweets = 0;

    DELETE FROM tag_stats AS s
     USING (SELECT DISTINCT tag, lang, country FROM compliance_moves) AS k
     WHERE (s.tag, s.language) = (k.tag, k.lang)
       AND s.country IS NOT DISTINCT FROM k.country AND s.tweets = 0
    """,
)


async def clear_raw_before(cur: aiopg.Cursor, cutoff: datetime) -> int:
    """Retention: clear (to NULL) the text and raw JSON of posts stored before `cutoff` and the
    raw JSON of accounts last seen before it; returns the rows cleared. What the numbers and
    compliance passes read stays: ids, author, time, language, place, tags, handle, followers.
    An account seen again gets its raw JSON back with the rest of what X sent."""
    await cur.execute(
        """
        WITH posts AS (
            UPDATE tweets SET text = NULL, raw = NULL
             WHERE stored_at < %(cutoff)s AND raw IS NOT NULL
            RETURNING 1
        ), accounts AS (
            UPDATE users SET raw = NULL WHERE updated_at < %(cutoff)s AND raw IS NOT NULL
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM posts) + (SELECT count(*) FROM accounts)
        """,
        {"cutoff": cutoff},
    )
    row = await cur.fetchone()
    return int(row[0])


async def insert_pass(cur: aiopg.Cursor) -> int:
    await cur.execute("INSERT INTO compliance_passes DEFAULT VALUES RETURNING id")
    row = await cur.fetchone()
    return int(row[0])


async def finish_pass(
    cur: aiopg.Cursor,
    pass_id: int,
    *,
    job_ids: Sequence[str],
    checked: dict[str, int],
    counts: Applied,
) -> None:
    await cur.execute(
        """
        UPDATE compliance_passes
           SET status = 'succeeded', finished_at = now(), job_ids = %(job_ids)s,
               checked = %(checked)s, counts = %(counts)s
         WHERE id = %(id)s
        """,
        {
            "id": pass_id,
            "job_ids": list(job_ids),
            "checked": json.dumps(checked),
            "counts": json.dumps(counts),
        },
    )


async def fail_pass(cur: aiopg.Cursor, pass_id: int, *, job_ids: Sequence[str], error: str) -> None:
    await cur.execute(
        """
        UPDATE compliance_passes
           SET status = 'failed', finished_at = now(), job_ids = %(job_ids)s, error = %(error)s
         WHERE id = %(id)s AND status = 'running'
        """,
        {"id": pass_id, "job_ids": list(job_ids), "error": error[:2000]},
    )


async def abandon_running_passes(cur: aiopg.Cursor) -> int:
    """Passes left 'running' by a crashed process. Call only while holding the write lock."""
    await cur.execute(
        """
        UPDATE compliance_passes
           SET status = 'abandoned', finished_at = now(),
               error = 'the process running it stopped before it finished'
         WHERE status = 'running'
        """
    )
    return int(cur.rowcount)


async def last_successful_pass(cur: aiopg.Cursor) -> dict[str, Any] | None:
    """{"id", "finished_at" (ISO 8601), "counts"} of the newest succeeded pass."""
    await cur.execute(
        """
        SELECT id, finished_at, counts FROM compliance_passes
         WHERE status = 'succeeded' ORDER BY id DESC LIMIT 1
        """
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return {"id": row[0], "finished_at": _iso(row[1]), "counts": row[2]}


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
