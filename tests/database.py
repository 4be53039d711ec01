"""A real PostgreSQL for the tests: the embedded server, fresh databases, and blocking access.

TEST_DATABASE_URL points the suite at any server (a fresh database is created there and dropped
afterwards); unset, an embedded PostgreSQL (pgserver) is started in a temporary directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
from yarl import URL

TABLES = (
    "tweet_tags, tweets, users, places, populate_runs, "
    "author_stats, hour_stats, tag_stats, tag_hour_stats, tag_author_stats"
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

    def scalar(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        rows = self.execute(sql, params)
        return rows[0][0] if rows else None

    def counts(self) -> dict[str, int]:
        """Row count of every table: the 'nothing was written' check."""
        return {
            table: int(self.scalar(f"SELECT count(*) FROM {table}"))  # fixed table names
            for table in ("tweets", "tweet_tags", "users", "places")
        }


def start_embedded(directory: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' RuntimeDirWarning at import
        import pgserver

    return pgserver.get_server(directory, cleanup_mode="delete")  # type: ignore[attr-defined]


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
