"""Fixtures: a real PostgreSQL (embedded by default), the fake X API, and the real app."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from loguru import logger
from pytest_aiohttp import AiohttpClient, AiohttpServer

from service import db, log
from service.app import create_app
from service.clock import SYSTEM, Clock
from service.config import Settings
from service.matviews import VIEWS
from testing.fake_x import FakeX
from tests import dataset
from tests.calls import App
from tests.database import TABLES, Database, OwnServer, fresh_database, start_embedded
from tests.fake_time import FakeTime, at_real_time
from tests.logs import CapturedLogs
from tests.service_process import ServiceProcess, Spawn, leaks
from tests.settings import make_settings


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
    with tempfile.TemporaryDirectory(prefix="pgserver-", ignore_cleanup_errors=True) as directory:
        server = start_embedded(Path(directory) / "data")
        try:
            yield server.get_uri(), server
        finally:
            server.cleanup()


@pytest.fixture(scope="session")
def database(pg_server: tuple[str, Any]) -> Iterator[Database]:
    server_url, server = pg_server
    with fresh_database(server_url) as url:
        db.upgrade(url)
        yield Database(url=url, server=server)


@pytest.fixture
def empty_db(pg_server: tuple[str, Any]) -> Iterator[Database]:
    """A database of its own, not migrated, dropped afterwards."""
    with fresh_database(pg_server[0]) as url:
        yield Database(url=url)


@pytest.fixture
def clean_db(database: Database) -> Database:
    database.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    for view in VIEWS:  # a materialized view keeps its rows until refreshed
        database.execute(f"REFRESH MATERIALIZED VIEW {view}")
    database.execute("UPDATE view_state SET generation = generation + 1")
    return database


@pytest.fixture
async def fake_x(aiohttp_server: AiohttpServer) -> AsyncIterator[FakeX]:
    fake = FakeX()
    server = await aiohttp_server(fake.app())
    fake.base_url = str(server.make_url("")).rstrip("/")
    storage = await aiohttp_server(fake.compliance.storage_app())
    fake.compliance.storage_url = str(storage.make_url("")).rstrip("/")
    yield fake
    fake.resume()  # a search the test left paused must not hold the server's shutdown
    fake.compliance.resume()


@pytest.fixture
def fake_time() -> FakeTime:
    """A fake clock for create_app(settings, clock=fake_time.as_clock()) (tests/fake_time.py)."""
    return at_real_time()


@pytest.fixture
def settings(clean_db: Database, fake_x: FakeX) -> Settings:
    return make_settings(clean_db, fake_x)


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, settings: Settings) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(settings))


@pytest.fixture
def app(aiohttp_client: AiohttpClient, settings: Settings) -> App:
    """Another app on the test's database and fake X API; keyword arguments change its
    settings, `clock` is the one it reads the time from (a FakeTime's as_clock())."""

    async def start(*, clock: Clock = SYSTEM, **changes: Any) -> TestClient[Any, Any]:
        return await aiohttp_client(
            create_app(dataclasses.replace(settings, **changes), clock=clock)
        )

    return start


@pytest.fixture
async def loaded(client: TestClient[Any, Any], fake_x: FakeX) -> TestClient[Any, Any]:
    """The app after one populate of the hand-made dataset (tests/dataset.py)."""
    dataset.load(fake_x)
    assert (await client.post("/api/v1/populate")).status == 201
    return client


@pytest.fixture
def captured_logs(settings: Settings) -> Iterator[CapturedLogs]:
    """Every log line the service writes during the test, through the production JSON sink."""
    stream = CapturedLogs()
    log.configure(dataclasses.replace(settings, log_level="DEBUG"), stream=stream)
    yield stream
    log.ACCESS.configure([], "INFO")
    logger.remove()


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


@pytest.fixture
def own_postgres() -> Iterator[OwnServer]:
    """A PostgreSQL server of the test's own, which it may stop, start and freeze."""
    # Not under tmp_path, for the reason given in pg_server.
    with tempfile.TemporaryDirectory(prefix="pgserver-own-", ignore_cleanup_errors=True) as path:
        server = OwnServer(Path(path) / "data")
        try:
            yield server
        finally:
            server.close()
