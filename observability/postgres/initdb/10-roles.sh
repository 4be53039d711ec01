#!/bin/sh
# Runs once, on an empty data directory (the postgres image's /docker-entrypoint-initdb.d).
#
#   app      LOGIN, owns the `tweets` database: the API connects and migrates as this role.
#   analyst  LOGIN, read-only: CONNECT on the database and USAGE on its schema. The migrations
#            grant SELECT on the three materialized views and on author_stats (every author's
#            numbers, of which top_users keeps the first 1,000) to this role; it sees no other
#            table.
#
# Passwords arrive as psql variables (:'name' quotes them), never inside the SQL text.
set -eu

: "${APP_DB_PASSWORD:?APP_DB_PASSWORD is not set}"
: "${ANALYST_DB_PASSWORD:?ANALYST_DB_PASSWORD is not set}"
APP_DB_NAME="${APP_DB_NAME:-tweets}"

psql --set ON_ERROR_STOP=1 --no-psqlrc \
    --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set app_password="$APP_DB_PASSWORD" \
    --set analyst_password="$ANALYST_DB_PASSWORD" \
    --set db="$APP_DB_NAME" <<'SQL'
CREATE ROLE app LOGIN PASSWORD :'app_password';
CREATE ROLE analyst LOGIN PASSWORD :'analyst_password';
-- Belt and braces: even a mistaken grant cannot make an analyst session write.
ALTER ROLE analyst SET default_transaction_read_only = on;
ALTER ROLE analyst SET statement_timeout = '30s';

CREATE DATABASE :"db" OWNER app;
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO analyst;
-- Neither login role has business in the maintenance database.
REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;

\connect :"db"
-- PostgreSQL 15+ no longer lets PUBLIC create in `public`; the app owns what it creates.
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT ALL ON SCHEMA public TO app;
GRANT USAGE ON SCHEMA public TO analyst;
SQL
