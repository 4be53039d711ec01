"""Alembic environment: hand-written migrations, no ORM metadata, so no autogenerate.

The URL comes from the service (config.attributes["database_url"]) or from DATABASE_URL.
Migrations run under a PostgreSQL advisory lock, so replicas starting together do not race.
"""

from __future__ import annotations

import os
import sys

from sqlalchemy import create_engine, pool, text

from alembic import context

MIGRATION_LOCK = 0x7A61_0001  # service.db.MIGRATION_LOCK; duplicated so env.py runs on its own


def database_url() -> str:
    url = context.config.attributes.get("database_url") or os.environ.get("DATABASE_URL", "")
    if not url:
        sys.exit("DATABASE_URL: not set (alembic needs the database to migrate)")
    # The service's driver is psycopg2 (through aiopg); SQLAlchemy 2.1 would pick psycopg 3
    # for a bare postgresql://, and rejects the postgres:// spelling that libpq accepts.
    scheme, sep, rest = str(url).partition("://")
    if scheme in ("postgres", "postgresql"):
        scheme = "postgresql+psycopg2"
    return scheme + sep + rest


def run_offline() -> None:
    context.configure(url=database_url(), literal_binds=True, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


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


if context.is_offline_mode():
    run_offline()
else:
    run_online()
