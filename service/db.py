"""Database access: the pool, connections with a deadline, migrations, the embedded server."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Final

import aiopg
import psycopg2
from loguru import logger

from service import metrics
from service.config import Settings

# pg_advisory_lock keys, fixed so that every replica of the service agrees on them.
MIGRATION_LOCK: Final = 0x7A61_0001
POPULATE_LOCK: Final = 0x7A61_0002

# Alembic keeps the running command's context in module globals (alembic.context, alembic.op),
# so two commands at once in one process tear down each other's; the advisory lock in env.py
# only serializes processes.
_ALEMBIC_LOCK: Final = threading.Lock()


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL under `data_dir`; blocking. Returns its URL."""
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI); harmless.
        warnings.simplefilter("ignore")
        import pgserver  # imported here: it is only needed when DATABASE_URL is unset

    data_dir.mkdir(parents=True, exist_ok=True)
    # 'stop' keeps the data across restarts and stops the server when the last process
    # using it exits.
    server = pgserver.get_server(  # type: ignore[attr-defined]  # re-exported without __all__
        data_dir.resolve() / "pgdata", cleanup_mode="stop"
    )
    return str(server.get_uri())


async def resolve_url(settings: Settings) -> str:
    if settings.database_url is not None:
        return settings.database_url.reveal()
    url = await asyncio.to_thread(start_embedded, settings.data_dir)
    logger.bind(event="db.embedded").info(
        "no DATABASE_URL: using the embedded PostgreSQL in {dir}; connect with: psql '{url}'",
        dir=str(settings.data_dir.resolve()),
        url=url,
    )
    return url


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations; blocking. env.py serializes concurrent callers with an advisory lock."""

    from alembic import command

    with _ALEMBIC_LOCK, alembic_config(url) as config:
        command.upgrade(config, revision)


def downgrade(url: str, revision: str) -> None:
    from alembic import command

    with _ALEMBIC_LOCK, alembic_config(url) as config:
        command.downgrade(config, revision)


@contextlib.contextmanager
def alembic_config(url: str) -> Iterator[Any]:
    """Alembic's configuration for the migrations shipped inside this package (migrations/), so
    an installed wheel migrates from any working directory; no alembic.ini is involved."""
    from alembic.config import Config

    migrations = importlib.resources.files("service") / "migrations"
    with importlib.resources.as_file(migrations) as path:
        config = Config()
        config.set_main_option("script_location", str(path))
        # An attribute, not a main option: ConfigParser would choke on a '%' in a password.
        config.attributes["database_url"] = url
        yield config


async def create_pool(url: str, settings: Settings) -> aiopg.Pool:
    return await aiopg.create_pool(
        url,
        minsize=1,
        maxsize=settings.db_pool_size,
        # aiopg applies this to connecting and to every statement on the pool's connections.
        timeout=settings.db_timeout,
        pool_recycle=300,
        enable_hstore=False,  # saves a catalog query per new connection
        enable_uuid=False,
    )


async def close_pool(pool: aiopg.Pool, wait: float) -> None:
    """Close the pool once the connections in use are back, waiting at most `wait` seconds.

    Not pool.wait_closed() alone: aiopg wakes it only when an open connection comes back, so a
    connection released already closed (its statement was cancelled or timed out, which makes
    aiopg close it) left it waiting forever, and the process never exited.
    """
    pool.close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    # Polled: aiopg signals nothing a waiter could use here (see above).
    while pool.size > pool.freesize and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    pool.terminate()  # closes any connection still out: its user is past waiting for
    await pool.wait_closed()


@contextlib.asynccontextmanager
async def connection(pool: aiopg.Pool, wait: float) -> AsyncIterator[aiopg.Connection]:
    """A pooled connection, failing with TimeoutError when none frees up within `wait` seconds.

    A connection-level failure drops the idle connections too: after a database restart they
    are all dead, and the next request should not have to discover that one at a time.
    """
    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
    # races the acquire, or drop a connection acquired just as the timeout fired (a pool leak).
    async with asyncio.timeout(wait):
        conn = await pool.acquire()
    _observe(pool)
    try:
        yield conn
    except (psycopg2.OperationalError, psycopg2.InterfaceError):
        if not conn.closed:
            conn.close()
        await pool.clear()
        raise
    finally:
        await pool.release(conn)
        _observe(pool)


def _observe(pool: aiopg.Pool) -> None:
    metrics.DB_POOL_CONNECTIONS.labels(state="in_use").set(pool.size - pool.freesize)
    metrics.DB_POOL_CONNECTIONS.labels(state="idle").set(pool.freesize)
    metrics.DB_POOL_CONNECTIONS.labels(state="max").set(pool.maxsize or 0)
