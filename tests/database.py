"""A real PostgreSQL for the tests: the embedded server, fresh databases, and blocking access.

TEST_DATABASE_URL points the suite at any server (a fresh database is created there and dropped
afterwards); unset, an embedded PostgreSQL (pgserver) is started in a temporary directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
from yarl import URL

TABLES = (
    "tweet_tags, tweets, users, places, populate_runs, "
    "author_stats, hour_stats, tag_stats, tag_hour_stats, tag_author_stats, "
    "compliance_passes, removed_tweets, removed_users"
)


@dataclasses.dataclass
class Database:
    url: str
    server: Any = None  # the pgserver handle when embedded

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with contextlib.closing(psycopg2.connect(self.url)) as conn, conn.cursor() as cur:
            conn.autocommit = True
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []

    @contextlib.contextmanager
    def holding(self, statement: str) -> Iterator[None]:
        """Run `statement` in a transaction kept open, with its locks, until the block ends."""
        conn = psycopg2.connect(self.url)
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
            yield
        finally:
            with contextlib.suppress(psycopg2.Error):
                conn.rollback()
            conn.close()

    def scalar(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        rows = self.execute(sql, params)
        return rows[0][0] if rows else None

    def counts(self) -> dict[str, int]:
        """Row count of every table: the 'nothing was written' check."""
        row = self.execute(
            "SELECT (SELECT count(*) FROM tweets), (SELECT count(*) FROM tweet_tags),"
            " (SELECT count(*) FROM users), (SELECT count(*) FROM places)"
        )[0]
        return dict(zip(("tweets", "tweet_tags", "users", "places"), row, strict=True))


def start_embedded(directory: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' RuntimeDirWarning at import
        import pgserver

    return pgserver.get_server(directory, cleanup_mode="delete")  # type: ignore[attr-defined]


class OwnServer:
    """An embedded PostgreSQL of one test's own, which it may stop, start again and freeze."""

    def __init__(self, directory: Path) -> None:
        self.server = start_embedded(directory)
        self.socket_dir = self.server.get_postmaster_info().socket_dir
        self.url: str = self.server.get_uri()

    def _pg_ctl(self, *args: str) -> None:
        from pgserver import _commands

        # pgserver defines one function per bundled executable at import time. The timeout
        # outlasts pg_ctl's own wait (60 s), so a slow start fails with pg_ctl's message.
        pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]
        pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=90)

    def stop(self) -> None:
        # immediate: no shutdown checkpoint, backends end at once; like a crash or a failover.
        self._pg_ctl("-w", "-m", "immediate", "stop")

    def start(self) -> None:
        # The arguments pgserver starts it with: no TCP, the same socket, so the URL holds.
        socket = f"-k {self.socket_dir}"
        self._pg_ctl("-w", "-o", '-h ""', "-o", socket, "-l", str(self.server.log), "start")

    def freeze(self) -> list[int]:
        """SIGSTOP the postmaster and every process it started: connections stay open and
        nothing answers, as in a partition or a stuck server. The pids, for `thaw`."""
        postmaster = int((self.server.pgdata / "postmaster.pid").read_text().split()[0])
        others = Database(url=self.url).execute(
            "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
        )
        pids = [postmaster, *(int(row[0]) for row in others)]
        self._signal(pids, signal.SIGSTOP)
        return pids

    def thaw(self, pids: list[int]) -> None:
        self._signal(pids, signal.SIGCONT)

    @staticmethod
    def _signal(pids: list[int], sig: signal.Signals) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # a backend that just ended
                os.kill(pid, sig)

    def close(self) -> None:
        # pgserver only stops the server it started itself: a restarted one is stopped here.
        with contextlib.suppress(Exception):
            self._pg_ctl("-w", "-m", "immediate", "stop")
        self.server.cleanup()


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """CREATE DATABASE test_<random> on the server at `server_url`, DROP it afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    server = URL(server_url)
    # with_path drops the query, which holds the socket directory of pgserver's URL (?host=/dir).
    url = str(server.with_path(f"/{name}").with_query(server.query))
    try:
        yield url
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# The full recomputes that both an aggregate and the view over it must equal.
PER_HOUR = "SELECT date_trunc('hour', created_at, 'UTC'), count(*) FROM tweets GROUP BY 1"
PER_TAG = """
    SELECT tt.tag, t.lang, p.country_code, count(*)
      FROM tweet_tags AS tt JOIN tweets AS t ON t.id = tt.tweet_id
      LEFT JOIN places AS p ON p.id = t.place_id
     GROUP BY 1, 2, 3
"""

# Each check: (what the service keeps, the same numbers computed from the stored rows). The
# expected side of the views is their v01 definition (service/migrations/views/*_v01.sql),
# top_users cut at the 1,000 authors its v02 holds.
CHECKS: dict[str, tuple[str, str]] = {
    "author_stats": (
        "SELECT user_id, username, followers, tweets FROM author_stats",
        """
        SELECT u.id, u.username, u.followers_count, count(*)
          FROM users AS u JOIN tweets AS t ON t.author_id = u.id
         GROUP BY 1, 2, 3
        """,
    ),
    "hour_stats": ("SELECT hour, tweets FROM hour_stats", PER_HOUR),
    "tag_stats": ("SELECT tag, language, country, tweets FROM tag_stats", PER_TAG),
    "tag_hour_stats": (
        "SELECT tag, hour, language, country, tweets FROM tag_hour_stats",
        """
        SELECT tt.tag, date_trunc('hour', t.created_at, 'UTC'), t.lang, p.country_code, count(*)
          FROM tweet_tags AS tt JOIN tweets AS t ON t.id = tt.tweet_id
          LEFT JOIN places AS p ON p.id = t.place_id
         GROUP BY 1, 2, 3, 4
        """,
    ),
    "tag_author_stats": (
        "SELECT tag, user_id, tweets FROM tag_author_stats",
        """
        SELECT tt.tag, t.author_id, count(*)
          FROM tweet_tags AS tt JOIN tweets AS t ON t.id = tt.tweet_id
         GROUP BY 1, 2
        """,
    ),
    "top_users": (
        "SELECT user_id, username, followers, tweets FROM top_users",
        """
        SELECT u.id, u.username, u.followers_count, a.tweets
          FROM users AS u
          JOIN (SELECT author_id, count(*) AS tweets FROM tweets GROUP BY author_id) AS a
            ON a.author_id = u.id
         ORDER BY u.followers_count DESC, u.username COLLATE "C", u.id
         LIMIT 1000
        """,
    ),
    "tweets_per_hour": ("SELECT hour, count FROM tweets_per_hour", PER_HOUR),
    "tweets_per_tag": ("SELECT tag, language, country, count FROM tweets_per_tag", PER_TAG),
}


def snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every aggregate and view, rows sorted (repr: country may be NULL)."""
    return {name: sorted(db.execute(actual), key=repr) for name, (actual, _) in CHECKS.items()}


def assert_consistent(db: Database) -> None:
    for name, (actual, expected) in CHECKS.items():
        got = sorted(db.execute(actual), key=repr)
        want = sorted(db.execute(expected), key=repr)
        assert got == want, f"{name} differs from a recompute"
