"""Alembic migrations on fresh databases: schema, view indexes and comments, grants, locking."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import pytest
from alembic.script import ScriptDirectory

from service import db
from service.matviews import ANALYST_ROLE, VIEWS
from testing.waiting import wait_until
from tests.database import CHECKS, Database, assert_consistent, fresh_database, snapshot

STATS = {"author_stats", "hour_stats", "tag_stats", "tag_hour_stats", "tag_author_stats"}
COMPLIANCE = {"compliance_passes", "removed_tweets", "removed_users"}
TABLES = {
    "populate_runs",
    "users",
    "places",
    "tweets",
    "tweet_tags",
    "view_state",
    *STATS,
    *COMPLIANCE,
}
VIEW_COLUMNS = {
    "top_users": ["user_id", "username", "followers", "tweets"],
    "tweets_per_hour": ["hour", "count"],
    "tweets_per_tag": ["tag", "language", "country", "count"],
}
WAITING_FOR_MIGRATION_LOCK = """
SELECT count(*) FROM pg_locks
 WHERE locktype = 'advisory' AND NOT granted
   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


@pytest.fixture
def migrated_db(empty_db: Database) -> Database:
    db.upgrade(empty_db.url)
    return empty_db


def tables(database: Database) -> set[str]:
    rows = database.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> %(v)s",
        {"v": "alembic_version"},
    )
    return {name for (name,) in rows}


def matviews(database: Database) -> set[str]:
    rows = database.execute("SELECT matviewname FROM pg_matviews WHERE schemaname = 'public'")
    return {name for (name,) in rows}


def version(database: Database) -> list[str]:
    return [v for (v,) in database.execute("SELECT version_num FROM alembic_version")]


def schema(database: Database) -> tuple[set[str], set[str], list[str]]:
    return tables(database), matviews(database), version(database)


def refresh(database: Database, how: str = "") -> None:
    for view in VIEWS:
        database.execute(f"REFRESH MATERIALIZED VIEW {how}{view}")  # fixed names


with db.alembic_config("unused") as config:
    HEAD = list(ScriptDirectory.from_config(config).get_heads())
AT_HEAD = (TABLES, set(VIEWS), HEAD)


def fill(database: Database, *, more: bool = False) -> None:
    """A little of everything the views read, including tweets without a place (NULL country).
    With `more`, also a tweet whose author X never described, one naming a place it never
    described, a place without a country code, and a second run's tweets in several hours."""
    database.execute(
        """
        INSERT INTO populate_runs (source, tags) VALUES ('sample', ARRAY['#a', '#b']);
        INSERT INTO users (id, username, name, followers_count, following_count, tweet_count, raw)
        VALUES (1, 'ann', 'Ann', 10, 0, 0, '{}'), (2, 'bob', 'Bob', 20, 0, 0, '{}');
        INSERT INTO places (id, country_code, raw) VALUES ('p1', 'BR', '{}');
        INSERT INTO tweets (id, author_id, created_at, lang, place_id, text, raw, run_id) VALUES
          (11, 1, '2026-11-20T09:10:00Z', 'en', 'p1', 't', '{}', 1),
          (12, 1, '2026-11-20T09:20:00Z', 'en', NULL, 't', '{}', 1),
          (13, 2, '2026-11-20T10:00:00Z', 'en', NULL, 't', '{}', 1);
        INSERT INTO tweet_tags (tag, tweet_id)
        VALUES ('#a', 11), ('#a', 12), ('#a', 13), ('#b', 13);
        """
    )
    if more:
        database.execute(
            """
            INSERT INTO populate_runs (source, tags) VALUES ('x', ARRAY['#a', '#b']);
            INSERT INTO users (id, username, name, followers_count, following_count, tweet_count,
                               raw)
            VALUES (3, 'cy', 'Cy', 20, 0, 0, '{}');
            INSERT INTO places (id, country_code, raw) VALUES ('p2', NULL, '{}');
            INSERT INTO tweets (id, author_id, created_at, lang, place_id, text, raw, run_id)
            VALUES (21, 9, '2026-11-20T09:30:00Z', 'pt', 'p1', 't', '{}', 2),
                   (22, 3, '2026-11-21T00:00:00Z', 'und', 'p-unknown', 't', '{}', 2),
                   (23, 3, '2026-11-21T00:59:59Z', 'en', 'p2', 't', '{}', 2),
                   (24, 2, '2026-11-21T01:00:00Z', 'en', 'p1', 't', '{}', 2);
            INSERT INTO tweet_tags (tag, tweet_id)
            VALUES ('#a', 21), ('#b', 21), ('#b', 22), ('#a', 23), ('#b', 23), ('#b', 24);
            """
        )
    if "author_stats" in tables(database):  # from 0003 the views read the aggregates
        database.execute("SELECT rebuild_stats()")


# --- upgrade -------------------------------------------------------------------------------------


def test_upgrade_head_creates_tables_and_commented_views_that_refresh_concurrently(
    migrated_db: Database,
) -> None:
    assert schema(migrated_db) == AT_HEAD
    assert set(VIEWS) == set(VIEW_COLUMNS)
    # Every view and view column, with its comment (pg_description), in order.
    columns = migrated_db.execute(
        """
        SELECT c.relname, obj_description(c.oid, 'pg_class'), a.attname,
               col_description(c.oid, a.attnum)
          FROM pg_class AS c JOIN pg_attribute AS a ON a.attrelid = c.oid
         WHERE c.relkind = 'm' AND c.relnamespace = 'public'::regnamespace
           AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY c.relname, a.attnum
        """
    )
    found: dict[str, list[str]] = {}
    for view, view_comment, column, comment in columns:
        found.setdefault(view, []).append(column)
        assert len(view_comment.strip()) > 20, view
        assert comment.strip(), f"{view}.{column} has no comment"
    assert found == VIEW_COLUMNS
    # A plain unique index on each, so REFRESH ... CONCURRENTLY works.
    unique = migrated_db.execute(
        """
        SELECT c.relname FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indrelid
         WHERE c.relkind = 'm' AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
        """
    )
    assert sorted(name for (name,) in unique) == sorted(VIEWS)

    fill(migrated_db)
    refresh(migrated_db, "CONCURRENTLY ")

    assert migrated_db.execute(
        "SELECT username, followers, tweets FROM top_users ORDER BY user_id"
    ) == [("ann", 10, 2), ("bob", 20, 1)]
    hours = migrated_db.execute(
        "SELECT to_char(hour AT TIME ZONE 'UTC', 'HH24'), count FROM tweets_per_hour ORDER BY 1"
    )
    assert hours == [("09", 2), ("10", 1)]
    per_tag = migrated_db.execute(
        "SELECT tag, language, country, count FROM tweets_per_tag ORDER BY 1, 3 NULLS LAST"
    )
    assert per_tag == [("#a", "en", "BR", 1), ("#a", "en", None, 2), ("#b", "en", None, 1)]

    # A second concurrent refresh has to match the NULL-country rows against the old contents.
    migrated_db.execute(
        """
        INSERT INTO tweets (id, author_id, created_at, lang, text, raw, run_id)
        VALUES (14, 2, '2026-11-20T10:30:00Z', 'en', 't', '{}', 1);
        INSERT INTO tweet_tags (tag, tweet_id) VALUES ('#a', 14);
        SELECT rebuild_stats();
        """
    )
    refresh(migrated_db, "CONCURRENTLY ")

    per_tag = migrated_db.execute(
        "SELECT tag, language, country, count FROM tweets_per_tag ORDER BY 1, 3 NULLS LAST"
    )
    assert per_tag == [("#a", "en", "BR", 1), ("#a", "en", None, 3), ("#b", "en", None, 1)]
    assert migrated_db.scalar("SELECT count FROM tweets_per_hour ORDER BY hour DESC LIMIT 1") == 2


# --- downgrade -----------------------------------------------------------------------------------


def test_downgrade_base_removes_everything_and_upgrade_works_again(migrated_db: Database) -> None:
    fill(migrated_db)

    db.downgrade(migrated_db.url, "base")

    assert schema(migrated_db) == (set(), set(), [])
    indexes = migrated_db.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename <> %(v)s",
        {"v": "alembic_version"},
    )
    assert indexes == []

    db.upgrade(migrated_db.url)

    assert schema(migrated_db) == AT_HEAD
    assert migrated_db.counts() == {"tweets": 0, "tweet_tags": 0, "users": 0, "places": 0}


# --- concurrency ---------------------------------------------------------------------------------


class ArrivalLock:
    """db._ALEMBIC_LOCK, counting the threads that have come to take it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.arrived = 0

    def __enter__(self) -> None:
        self.arrived += 1
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


# The migrations' advisory lock, held until its session ends, so migrators pile up behind it.
MIGRATION_LOCK_HELD = f"SELECT pg_advisory_lock({db.MIGRATION_LOCK})"


def test_upgrade_from_two_threads_at_once(
    empty_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(2)
    alembic_lock = ArrivalLock()
    monkeypatch.setattr(db, "_ALEMBIC_LOCK", alembic_lock)

    def migrate() -> None:
        start.wait()
        try:
            db.upgrade(empty_db.url)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(2)]
    with empty_db.holding(MIGRATION_LOCK_HELD):
        for thread in threads:
            thread.start()
        # One thread waits for the advisory lock, the other for the first to finish.
        wait_until(
            lambda: empty_db.scalar(WAITING_FOR_MIGRATION_LOCK) >= 1,
            within=60,
            what="a migrator waits for the advisory lock",
        )
        wait_until(
            lambda: alembic_lock.arrived == 2, within=60, what="both threads reach the upgrade"
        )
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert not any(thread.is_alive() for thread in threads)
    assert schema(empty_db) == AT_HEAD


def migrate_cli(database_url: str, cwd: Path) -> subprocess.Popen[str]:
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "HOME": str(cwd)}
    return subprocess.Popen(
        [sys.executable, "-m", "service", "migrate"],
        env={**env, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_migrate_cli_from_two_processes_waits_on_the_advisory_lock_and_is_idempotent(
    empty_db: Database, tmp_path: Path
) -> None:
    with empty_db.holding(MIGRATION_LOCK_HELD):
        processes = [migrate_cli(empty_db.url, tmp_path) for _ in range(2)]
        try:
            # Both block on the advisory lock: neither has touched the schema yet.
            wait_until(
                lambda: empty_db.scalar(WAITING_FOR_MIGRATION_LOCK) == 2,
                within=60,
                what="two migrators wait for the advisory lock",
            )
            assert tables(empty_db) == set()
        except BaseException:
            for process in processes:
                process.kill()
            raise
    outputs = [process.communicate(timeout=60) for process in processes]

    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert (process.returncode, stdout) == (0, ""), stderr
        assert "Traceback" not in stderr
    assert schema(empty_db) == AT_HEAD

    # Once more, at head: it changes nothing.
    fill(empty_db)
    again = migrate_cli(empty_db.url, tmp_path)
    stdout, stderr = again.communicate(timeout=60)
    assert (again.returncode, stdout) == (0, ""), stderr
    assert "Traceback" not in stderr
    assert schema(empty_db) == AT_HEAD
    assert empty_db.counts() == {"tweets": 3, "tweet_tags": 4, "users": 2, "places": 1}
    assert not (tmp_path / ".data").exists()  # DATABASE_URL was used, not the embedded server


# --- the analyst role ----------------------------------------------------------------------------


@pytest.fixture
def analyst_db(pg_server: tuple[str, Any]) -> Iterator[Database]:
    """A fresh database migrated while the role `analyst` exists; the role is dropped afterwards
    if this fixture created it (roles are server-wide, databases are not)."""
    server_url = pg_server[0]
    admin = Database(url=server_url)
    created = False
    try:
        # Identifiers cannot be parameters; ANALYST_ROLE is a constant.
        admin.execute(f"CREATE ROLE {ANALYST_ROLE} NOLOGIN")
        created = True
    except (psycopg2.errors.DuplicateObject, psycopg2.errors.UniqueViolation):
        pass  # it exists already (a deployment's, or a concurrent test run's): leave it be
    try:
        with fresh_database(server_url) as url:
            db.upgrade(url)
            yield Database(url=url)
        # Dropping the database dropped every grant in it.
    finally:
        if created:
            with contextlib.suppress(psycopg2.errors.DependentObjectsStillExist):
                admin.execute(f"DROP ROLE IF EXISTS {ANALYST_ROLE}")


def as_analyst(database: Database, sql: str) -> list[tuple[Any, ...]]:
    """Run `sql` as the analyst role, in a transaction that is rolled back."""
    with contextlib.closing(psycopg2.connect(database.url)) as conn, conn.cursor() as cur:
        try:
            cur.execute(f"SET LOCAL ROLE {ANALYST_ROLE}")
            cur.execute(sql)
            return list(cur.fetchall())
        finally:
            conn.rollback()


def test_upgrade_grants_the_analyst_role_the_views_and_author_stats_only(
    analyst_db: Database,
) -> None:
    fill(analyst_db)
    refresh(analyst_db)

    for view in VIEWS:
        rows = as_analyst(analyst_db, f"SELECT count(*) FROM {view}")  # noqa: S608 - fixed names
        assert rows[0][0] > 0, view
    # The complete per-author numbers, now that top_users holds the first 1,000 only.
    assert as_analyst(analyst_db, "SELECT count(*) FROM author_stats") == [(2,)]
    for table in sorted(TABLES - {"author_stats"}):
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            as_analyst(analyst_db, f"SELECT 1 FROM {table} LIMIT 1")  # noqa: S608 - fixed names
    # rebuild_stats() is the owner's: EXECUTE is revoked from PUBLIC, which functions get.
    assert (
        analyst_db.scalar(
            "SELECT has_function_privilege(%(role)s, 'rebuild_stats()', 'EXECUTE')",
            {"role": ANALYST_ROLE},
        )
        is False
    )
    # Every grant to the role or to PUBLIC (grantee 0) in the schema.
    granted = analyst_db.execute(
        """
        SELECT c.relname, a.grantee = 0, a.privilege_type
          FROM pg_class AS c, aclexplode(c.relacl) AS a
         WHERE c.relnamespace = 'public'::regnamespace
           AND a.grantee IN (%(role)s::regrole::oid, 0)
         ORDER BY 1, 2, 3
        """,
        {"role": ANALYST_ROLE},
    )
    assert granted == [(name, False, "SELECT") for name in sorted({*VIEWS, "author_stats"})]


# --- 0003: the aggregates ------------------------------------------------------------------------


def view_rows(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    return {view: sorted(database.execute(CHECKS[view][0]), key=repr) for view in VIEWS}


def test_upgrade_to_0003_keeps_every_view_answer_and_downgrade_restores_v01(
    empty_db: Database,
) -> None:
    db.upgrade(empty_db.url, "0002")
    fill(empty_db, more=True)
    refresh(empty_db)
    before = view_rows(empty_db)
    assert len(before["top_users"]) == 3
    assert len(before["tweets_per_tag"]) == 7

    db.upgrade(empty_db.url, "0003")

    assert version(empty_db) == ["0003"]
    assert view_rows(empty_db) == before
    assert_consistent(empty_db)  # every aggregate against a GROUP BY of the stored rows
    assert empty_db.scalar("SELECT count(*) FROM author_stats") == 3  # author 9 has no users row
    # Refreshed as a populate does, the views still give the same rows.
    refresh(empty_db, "CONCURRENTLY ")
    assert view_rows(empty_db) == before

    db.downgrade(empty_db.url, "0002")

    assert version(empty_db) == ["0002"]
    assert tables(empty_db) == TABLES - STATS - COMPLIANCE
    assert matviews(empty_db) == set(VIEWS)
    assert view_rows(empty_db) == before
    definition = empty_db.scalar("SELECT pg_get_viewdef('top_users'::regclass)")
    assert "GROUP BY" in definition  # v01 again: computed from the tweets
    assert empty_db.scalar("SELECT to_regproc('rebuild_stats')") is None
    assert empty_db.scalar("SELECT to_regclass('tweets_place_id_idx')") is None
    # The v01 views keep following the base tables after the downgrade.
    empty_db.execute(
        """
        INSERT INTO tweets (id, author_id, created_at, lang, text, raw, run_id)
        VALUES (25, 1, '2026-11-21T01:30:00Z', 'en', 't', '{}', 2);
        INSERT INTO tweet_tags (tag, tweet_id) VALUES ('#a', 25);
        """
    )
    refresh(empty_db, "CONCURRENTLY ")
    assert empty_db.scalar("SELECT tweets FROM top_users WHERE username = 'ann'") == 3

    db.upgrade(empty_db.url)

    assert version(empty_db) == HEAD
    assert_consistent(empty_db)
    assert empty_db.scalar("SELECT tweets FROM author_stats WHERE username = 'ann'") == 3


# --- 0004: compliance ----------------------------------------------------------------------------


def test_upgrade_to_0004_keeps_every_number_and_downgrade_restores_not_null(
    empty_db: Database,
) -> None:
    db.upgrade(empty_db.url, "0003")
    fill(empty_db, more=True)
    refresh(empty_db)
    assert_consistent(empty_db)
    numbers = snapshot(empty_db)

    db.upgrade(empty_db.url, "0004")

    assert version(empty_db) == ["0004"]
    assert snapshot(empty_db) == numbers
    nullable = """
        SELECT table_name || '.' || column_name FROM information_schema.columns
         WHERE table_schema = 'public' AND column_name IN ('text', 'raw') AND is_nullable = 'YES'
         ORDER BY 1
    """
    assert empty_db.execute(nullable) == [("tweets.raw",), ("tweets.text",), ("users.raw",)]
    empty_db.execute("UPDATE tweets SET text = NULL, raw = NULL WHERE id < 20")
    empty_db.execute("UPDATE users SET raw = NULL")
    empty_db.execute("INSERT INTO removed_users (id, reason) VALUES (5, 'suspended')")

    db.downgrade(empty_db.url, "0003")

    assert tables(empty_db) == TABLES - COMPLIANCE
    assert empty_db.execute(nullable) == []
    assert empty_db.execute("SELECT DISTINCT text, raw::text FROM tweets WHERE id < 20") == [
        ("", "{}")
    ]
    assert_consistent(empty_db)
    db.upgrade(empty_db.url)
    assert version(empty_db) == HEAD
