"""Aggregate tables kept by every populate; the materialized views redefined over them (v02).

Until 0002 every populate refreshed the views from all stored tweets, so its cost grew with the
history. The *_stats tables hold the same counts, updated inside the populate transaction from the
rows that run newly inserted (service/queries.py); the views read them, so a refresh costs what the
views hold. The upgrade fills the tables from the stored data: an existing database keeps its
numbers.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

from service.matviews import GRANT_SQL, VIEWS, view_sql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = """
CREATE TABLE author_stats (
    user_id   bigint PRIMARY KEY,
    username  text NOT NULL,
    followers bigint NOT NULL,
    tweets    bigint NOT NULL CHECK (tweets > 0)
);
-- top_users (v02) reads the first 1,000 rows of this order; the API's ranking is the same.
CREATE INDEX author_stats_rank_idx ON author_stats (followers DESC, username COLLATE "C", user_id);
COMMENT ON TABLE author_stats IS
  'Every author of stored tweets that X described (a users row): username and follower count '
  'as last seen, stored tweets over all tags. Kept by every populate; top_users holds its first '
  '1,000 by followers.';
COMMENT ON COLUMN author_stats.user_id IS 'X user id of the author.';
COMMENT ON COLUMN author_stats.username IS 'X handle, without the @, as last seen.';
COMMENT ON COLUMN author_stats.followers IS 'Follower count as last seen by a populate.';
COMMENT ON COLUMN author_stats.tweets IS 'Number of stored tweets by this author, over all tags.';

CREATE TABLE hour_stats (
    hour   timestamptz PRIMARY KEY,
    tweets bigint NOT NULL CHECK (tweets > 0)
);
COMMENT ON TABLE hour_stats IS
  'Stored tweets per UTC hour of creation, each tweet once. Kept by every populate.';

-- country is NULL for tweets without a place; NULLS NOT DISTINCT (PostgreSQL 15+) makes that one
-- key, so ON CONFLICT finds the row to add to. No CHECK on these two counts: moving the tweets of
-- a place to its new country proposes negative rows to ON CONFLICT, and PostgreSQL checks a
-- proposed row before it looks for the conflict (queries.move_place_counts).
CREATE TABLE tag_stats (
    tag      text NOT NULL,
    language text NOT NULL,
    country  text,
    tweets   bigint NOT NULL,
    CONSTRAINT tag_stats_key UNIQUE NULLS NOT DISTINCT (tag, language, country)
);
COMMENT ON TABLE tag_stats IS
  'Stored tweets per searched tag, language and country of the place (tweet-tag pairs). '
  'Kept by every populate.';

CREATE TABLE tag_hour_stats (
    tag      text NOT NULL,
    hour     timestamptz NOT NULL,
    language text NOT NULL,
    country  text,
    tweets   bigint NOT NULL,
    CONSTRAINT tag_hour_stats_key UNIQUE NULLS NOT DISTINCT (tag, hour, language, country)
);
COMMENT ON TABLE tag_hour_stats IS
  'tag_stats split by UTC hour of creation: tweet-tag pairs per tag, hour, language and '
  'country. Kept by every populate.';

CREATE TABLE tag_author_stats (
    tag     text NOT NULL,
    user_id bigint NOT NULL,
    tweets  bigint NOT NULL CHECK (tweets > 0),
    PRIMARY KEY (tag, user_id)
);
COMMENT ON TABLE tag_author_stats IS
  'Stored tweets per searched tag and author id (whether or not X described the author). '
  'Kept by every populate.';

-- A place that gets (or changes) its country moves the counts of the tweets already stored with
-- it; this finds them without reading every tweet. Most tweets have no place.
CREATE INDEX tweets_place_id_idx ON tweets (place_id) WHERE place_id IS NOT NULL;
"""

# The same counts as a GROUP BY over the stored rows. The upgrade fills the tables with it; an
# operator who edited tweets, tweet_tags, users or places by hand runs SELECT rebuild_stats().
REBUILD = """
CREATE FUNCTION rebuild_stats() RETURNS void LANGUAGE plpgsql AS $rebuild$
BEGIN
  TRUNCATE author_stats, hour_stats, tag_stats, tag_hour_stats, tag_author_stats;

  INSERT INTO author_stats (user_id, username, followers, tweets)
  SELECT u.id, u.username, u.followers_count, a.tweets
    FROM users AS u
    JOIN (SELECT author_id, count(*) AS tweets FROM tweets GROUP BY author_id) AS a
      ON a.author_id = u.id;

  INSERT INTO hour_stats (hour, tweets)
  SELECT date_trunc('hour', created_at, 'UTC'), count(*) FROM tweets GROUP BY 1;

  INSERT INTO tag_hour_stats (tag, hour, language, country, tweets)
  SELECT tt.tag, date_trunc('hour', t.created_at, 'UTC'), t.lang, p.country_code, count(*)
    FROM tweet_tags AS tt
    JOIN tweets AS t ON t.id = tt.tweet_id
    LEFT JOIN places AS p ON p.id = t.place_id
   GROUP BY 1, 2, 3, 4;

  INSERT INTO tag_stats (tag, language, country, tweets)
  SELECT tag, language, country, sum(tweets)::bigint FROM tag_hour_stats GROUP BY 1, 2, 3;

  INSERT INTO tag_author_stats (tag, user_id, tweets)
  SELECT tt.tag, t.author_id, count(*)
    FROM tweet_tags AS tt
    JOIN tweets AS t ON t.id = tt.tweet_id
   GROUP BY 1, 2;
END
$rebuild$;
COMMENT ON FUNCTION rebuild_stats() IS
  'Recomputes every *_stats table from tweets, tweet_tags, users and places (then refresh the '
  'views). Populates keep them current; this is for a database whose base tables were edited '
  'by hand.';
-- Functions are executable by PUBLIC unless revoked; this one is for the owner.
REVOKE EXECUTE ON FUNCTION rebuild_stats() FROM PUBLIC;
"""

# The complete per-author numbers stay readable for analysts, now that top_users is bounded.
GRANT_AUTHOR_STATS = """
DO $grant$
BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'analyst') THEN
    GRANT SELECT ON author_stats TO analyst;
  END IF;
END
$grant$;
"""

DROP_VIEWS = "DROP MATERIALIZED VIEW tweets_per_tag, tweets_per_hour, top_users"


def upgrade() -> None:
    bind = op.get_bind()
    bind.exec_driver_sql(TABLES)
    bind.exec_driver_sql(REBUILD)
    bind.exec_driver_sql("SELECT rebuild_stats()")
    bind.exec_driver_sql(DROP_VIEWS)
    for name in VIEWS:
        bind.exec_driver_sql(view_sql(name, 2))
    bind.exec_driver_sql(GRANT_SQL)  # dropping the views dropped their grants
    bind.exec_driver_sql(GRANT_AUTHOR_STATS)


def downgrade() -> None:
    bind = op.get_bind()
    bind.exec_driver_sql(DROP_VIEWS)
    for name in VIEWS:
        bind.exec_driver_sql(view_sql(name, 1))
    bind.exec_driver_sql(GRANT_SQL)
    bind.exec_driver_sql("DROP FUNCTION rebuild_stats()")
    bind.exec_driver_sql("DROP INDEX tweets_place_id_idx")
    bind.exec_driver_sql(
        "DROP TABLE tag_author_stats, tag_hour_stats, tag_stats, hour_stats, author_stats"
    )
