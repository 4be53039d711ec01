"""Alembic environment: hand-written migrations, no ORM metadata, so no autogenerate.

The service runs it (service.db.upgrade) with the URL in config.attributes["database_url"].
Migrations run under a PostgreSQL advisory lock, so replicas starting together do not race.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from service.db import MIGRATION_LOCK


def database_url() -> str:
    url = str(context.config.attributes["database_url"])
    # The service's driver is psycopg2 (through aiopg); SQLAlchemy 2.1 would pick psycopg 3
    # for a bare postgresql://, and rejects the postgres:// spelling that libpq accepts.
    scheme, sep, rest = url.partition("://")
    if scheme in ("postgres", "postgresql"):
        scheme = "postgresql+psycopg2"
    return scheme + sep + rest


def run_online() -> None:
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        # A session-level lock: held across the per-migration transactions below.
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
        connection.commit()
        try:
            context.configure(connection=connection, transaction_per_migration=True)
            with context.begin_transaction():
                context.run_migrations()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            connection.commit()
    engine.dispose()


run_online()
