"""The benchmark's PostgreSQL: an embedded server (pgserver) by default, or BENCH_DATABASE_URL.

Every phase works in a database of its own, created here, migrated with the service's alembic
migrations (so it has the production schema, indexes and views) and dropped at the end.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
from yarl import URL

from bench.data import Rows
from service import db
from service.matviews import VIEWS


@contextlib.contextmanager
def server() -> Iterator[tuple[str, str]]:
    """(admin URL, description); an embedded server lives as long as the context."""
    import os

    given = os.environ.get("BENCH_DATABASE_URL", "").strip()
    if given:
        yield given, "BENCH_DATABASE_URL"
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' RuntimeDirWarning at import
        import pgserver

    parent = Path(tempfile.mkdtemp(prefix="hashtag-bench-pg-"))
    handle: Any = pgserver.get_server(parent / "data", cleanup_mode="delete")  # type: ignore[attr-defined]
    try:
        yield str(handle.get_uri()), "embedded pgserver"
    finally:
        handle.cleanup()
        shutil.rmtree(parent, ignore_errors=True)


def execute(url: str, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    with contextlib.closing(psycopg2.connect(url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []


def create(admin_url: str, purpose: str) -> str:
    """CREATE DATABASE bench_<purpose>_<random>, migrated to head; returns its URL."""
    name = f"bench_{purpose}_{uuid.uuid4().hex[:8]}"
    execute(admin_url, f'CREATE DATABASE "{name}"')
    admin = URL(admin_url)
    url = str(admin.with_path(f"/{name}").with_query(admin.query))
    db.upgrade(url)
    return url


def drop(admin_url: str, url: str) -> None:
    name = URL(url).path.lstrip("/")
    execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def version(url: str) -> str:
    return str(execute(url, "SHOW server_version")[0][0])


def counts(url: str) -> dict[str, int]:
    tables = ("tweets", "tweet_tags", "users", "places", *VIEWS)
    sql = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in tables)  # noqa: S608 - fixed names
    row = execute(url, sql)[0]
    return dict(zip(tables, (int(v) for v in row), strict=True))


def settle(url: str) -> None:
    """VACUUM ANALYZE and CHECKPOINT: no autovacuum or checkpoint left over from the previous
    load competes with the next timed one."""
    execute(url, "VACUUM (ANALYZE)")
    execute(url, "CHECKPOINT")


# What two consecutive transactions() calls count by themselves (their own statements).
COUNTING_TRANSACTIONS = 4


def transactions(url: str) -> int:
    """Transactions committed or rolled back so far in this database (pg_stat_database).

    Other backends report theirs when they go idle, at most once a second (and within 10 s),
    so a count over a few seconds is approximate; it tells "a couple per second" (the cache
    watcher) from "one per request" (thousands per second).
    """
    execute(url, "SELECT pg_stat_force_next_flush()")
    rows = execute(
        url,
        "SELECT xact_commit + xact_rollback FROM pg_stat_database"
        " WHERE datname = current_database()",
    )
    return int(rows[0][0])


def refresh_each(url: str) -> dict[str, float]:
    """Seconds of REFRESH MATERIALIZED VIEW CONCURRENTLY for each view, outside a populate."""
    seconds: dict[str, float] = {}
    for view in VIEWS:
        started = time.perf_counter()
        execute(url, f"REFRESH MATERIALIZED VIEW CONCURRENTLY {view}")  # names from VIEWS
        seconds[view] = time.perf_counter() - started
    return seconds


def _text(value: object) -> str:
    """A value in COPY's text format."""
    if value is None:
        return "\\N"
    return (
        str(value)
        .replace("\\", "\\\\")
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )


def copy_rows(url: str, rows: Rows) -> float:
    """The reference: psycopg2 COPY of the same rows into the same (empty) tables, one
    transaction. Timed from the parsed records to the commit, formatting included, as the
    ingest path is timed from the same records."""
    with contextlib.closing(psycopg2.connect(url)) as conn:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO populate_runs (source, tags) VALUES ('copy', '{}') RETURNING id"
            )
            run_id = cur.fetchone()[0]  # type: ignore[index]  # RETURNING gives one row
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur:

            def copy(table: str, lines: list[str]) -> None:
                cur.copy_expert(f"COPY {table} FROM STDIN", io.StringIO("".join(lines)))

            t = _text
            copy(
                "users (id, username, name, followers_count, following_count, tweet_count,"
                " location, raw)",
                [
                    f"{u.id}\t{t(u.username)}\t{t(u.name)}\t{u.followers}\t{u.following}\t"
                    f"{u.tweet_count}\t{t(u.location)}\t{t(u.raw)}\n"
                    for u in rows.users
                ],
            )
            copy(
                "places (id, full_name, country, country_code, raw)",
                [
                    f"{t(p.id)}\t{t(p.full_name)}\t{t(p.country)}\t{t(p.country_code)}\t"
                    f"{t(p.raw)}\n"
                    for p in rows.places
                ],
            )
            copy(
                "tweets (id, author_id, created_at, lang, place_id, text, raw, run_id)",
                [
                    f"{w.id}\t{w.author_id}\t{w.created_at.isoformat()}\t{t(w.lang)}\t"
                    f"{t(w.place_id)}\t{t(w.text)}\t{t(w.raw)}\t{run_id}\n"
                    for w in rows.tweets
                ],
            )
            copy("tweet_tags (tag, tweet_id)", [f"{t(tag)}\t{i}\n" for tag, i in rows.tweet_tags])
        conn.commit()
        return time.perf_counter() - started
