"""Tables for tweets, users, places, tags and populate runs; the three materialized views.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

from service.matviews import GRANT_SQL, VIEWS, view_sql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = """
CREATE TABLE populate_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    status      text NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'succeeded', 'failed', 'abandoned')),
    source      text NOT NULL,
    tags        text[] NOT NULL,
    per_tag     jsonb,
    tweets_seen integer,
    tweets_new  integer,
    error       text
);
COMMENT ON TABLE populate_runs IS
  'Audit of every populate: when, from which source, what it stored or why it failed.';

CREATE TABLE users (
    id              bigint PRIMARY KEY,
    username        text NOT NULL,
    name            text NOT NULL,
    followers_count integer NOT NULL,
    following_count integer NOT NULL,
    tweet_count     integer NOT NULL,
    location        text,
    raw             jsonb NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE users IS
  'Authors as last seen by a populate (follower counts are the latest seen).';

CREATE TABLE places (
    id           text PRIMARY KEY,
    full_name    text,
    country      text,
    country_code text,
    raw          jsonb NOT NULL
);
COMMENT ON TABLE places IS 'Places of geo-tagged tweets.';

-- author_id and place_id carry no foreign key: X may omit an include (a deleted author), and
-- the tweet is kept without it.
CREATE TABLE tweets (
    id         bigint PRIMARY KEY,
    author_id  bigint NOT NULL,
    created_at timestamptz NOT NULL,
    lang       text NOT NULL,
    place_id   text,
    text       text NOT NULL,
    raw        jsonb NOT NULL,
    run_id     bigint NOT NULL REFERENCES populate_runs (id),
    stored_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tweets_author_id_idx ON tweets (author_id);
COMMENT ON TABLE tweets IS 'Each tweet once, with the raw JSON X returned for it.';
COMMENT ON COLUMN tweets.run_id IS 'The populate run that first stored this tweet.';

CREATE TABLE tweet_tags (
    tag      text NOT NULL,
    tweet_id bigint NOT NULL REFERENCES tweets (id) ON DELETE CASCADE,
    PRIMARY KEY (tag, tweet_id)
);
CREATE INDEX tweet_tags_tweet_id_idx ON tweet_tags (tweet_id);
COMMENT ON TABLE tweet_tags IS 'Which searched hashtags returned which tweet.';
"""


def upgrade() -> None:
    bind = op.get_bind()
    bind.exec_driver_sql(TABLES)
    for name in VIEWS:
        bind.exec_driver_sql(view_sql(name, 1))
    bind.exec_driver_sql(GRANT_SQL)


def downgrade() -> None:
    bind = op.get_bind()
    bind.exec_driver_sql("DROP MATERIALIZED VIEW tweets_per_tag, tweets_per_hour, top_users")
    bind.exec_driver_sql("DROP TABLE tweet_tags, tweets, places, users, populate_runs")
