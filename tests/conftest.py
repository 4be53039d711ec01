"""Fixtures: a real PostgreSQL (embedded by default), the fake X API, and the real app.

TEST_DATABASE_URL points the suite at any server (a fresh database is created there and dropped
afterwards); unset, an embedded PostgreSQL (pgserver) is started in a temporary directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from loguru import logger
from pytest_aiohttp import AiohttpClient, AiohttpServer
from yarl import URL

from service import db, log
from service.app import create_app
from service.config import Secret, Settings, XCredentials
from service.matviews import VIEWS
from tests.fake_x import BEARER, FakeX
from tests.service_process import ServiceProcess, leaks

TABLES = "tweet_tags, tweets, users, places, populate_runs"


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


@pytest.fixture(scope="session")
def pg_server() -> Iterator[tuple[str, Any]]:
    """(server URL, pgserver handle or None)."""
    given = os.environ.get("TEST_DATABASE_URL", "").strip()
    if given:
        yield given, None
        return
    # Not under tmp_path_factory: every pytest run resets pytest-of-<user> to mode 0700, which
    # locks out the unprivileged account pgserver runs postgres as when the suite runs as root,
    # and prunes old numbered directories; either breaks a server another run still uses.
    directory = Path(tempfile.mkdtemp(prefix="pgserver-"))
    server = start_embedded(directory / "data")
    try:
        yield server.get_uri(), server
    finally:
        server.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def database(pg_server: tuple[str, Any]) -> Iterator[Database]:
    server_url, server = pg_server
    with fresh_database(server_url) as url:
        db.upgrade(url)
        yield Database(url=url, server=server)


@pytest.fixture
def clean_db(database: Database) -> Database:
    database.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    for view in VIEWS:  # a materialized view keeps its rows until refreshed
        database.execute(f"REFRESH MATERIALIZED VIEW {view}")
    database.execute("UPDATE view_state SET generation = generation + 1")
    return database


@pytest.fixture
async def fake_x(aiohttp_server: AiohttpServer) -> FakeX:
    fake = FakeX()
    server = await aiohttp_server(fake.app())
    fake.base_url = str(server.make_url("")).rstrip("/")
    return fake


def make_settings(database: Database, fake: FakeX | None, **overrides: Any) -> Settings:
    base = Settings(
        database_url=Secret(database.url),
        x_api_base_url=getattr(fake, "base_url", "http://127.0.0.1:9"),
        credentials=XCredentials(bearer_token=Secret(BEARER)),
        tweet_source="x",
        tags=("#devops", "#sre"),
        tweets_per_tag=100,
        x_retry_backoff=0.01,
        migrate_on_start=False,
        db_timeout=5.0,
        health_cache_ttl=0.0,
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture
def settings(clean_db: Database, fake_x: FakeX) -> Settings:
    return make_settings(clean_db, fake_x)


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, settings: Settings) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(settings))


async def start_client(
    aiohttp_client: AiohttpClient, settings: Settings
) -> TestClient[web.Request, web.Application]:
    return await aiohttp_client(create_app(settings))


class CapturedLogs(io.StringIO):
    """A StringIO that first flushes the buffered request log lines when read."""

    def getvalue(self) -> str:
        log.ACCESS.flush()
        return super().getvalue()

    def lines(self) -> list[str]:
        return self.getvalue().splitlines()


@pytest.fixture
def captured_logs(settings: Settings) -> Iterator[CapturedLogs]:
    """Every log line the service writes during the test, through the production JSON sink."""
    stream = CapturedLogs()
    log.configure(dataclasses.replace(settings, log_level="DEBUG"), stream=stream)
    yield stream
    log.ACCESS.configure([], "INFO", [])
    logger.remove()


Spawn = Callable[..., ServiceProcess]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start server processes; every one is gone after the test, and none leaked a secret."""
    started: list[ServiceProcess] = []

    def start(env: dict[str, str], *, migrate: bool = False) -> ServiceProcess:
        log_path = tmp_path / f"service-{len(started)}.log"
        process = ServiceProcess(env, log_path, migrate=migrate).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
    for process in started:
        assert not leaks(process.logs()), f"a secret in the log of {process.log_path}"


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m service ARGS` in a clean environment: no credentials, DATABASE_URL or TEST_*
    leak in from the caller, and the working directory holds no twitter_keys file."""
    base = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


__all__ = ["AiohttpServer", "Database", "TestServer"]
