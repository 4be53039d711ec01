"""Compliance: the record of every pass, tombstones, and post text and raw JSON that can be cleared.

X's batch compliance jobs say which stored posts and accounts are gone (deleted, suspended,
protected, deactivated) or lost their geo information; service/queries.apply_compliance removes
them, and the tombstones keep later populates from storing them again. RAW_RETENTION_DAYS clears
tweets.text, tweets.raw and users.raw (to NULL) once old; what the numbers and later passes read
(ids, author, time, language, place, tags, handle and follower count) stays.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
CREATE TABLE compliance_passes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    status      text NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'succeeded', 'failed', 'abandoned')),
    job_ids     text[] NOT NULL DEFAULT '{}',
    checked     jsonb,
    counts      jsonb,
    error       text
);
COMMENT ON TABLE compliance_passes IS
  'Audit of every compliance pass: when, which X jobs, what it checked and removed, or why '
  'it failed.';
COMMENT ON COLUMN compliance_passes.job_ids IS 'X batch compliance job ids the pass created.';
COMMENT ON COLUMN compliance_passes.checked IS
  'Ids uploaded per job type, e.g. {"tweets": 120, "users": 40}.';
COMMENT ON COLUMN compliance_passes.counts IS
  'Rows removed or scrubbed per type, action and reason, e.g. '
  '{"tweets": {"delete": {"deleted": 3}}, "users": {"delete": {"suspended": 1}}}.';

CREATE TABLE removed_tweets (
    id         bigint PRIMARY KEY,
    action     text NOT NULL,
    reason     text NOT NULL,
    removed_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE removed_tweets IS
  'Posts X reported in a compliance job: action delete keeps a populate from storing the id '
  'again; scrub_geo records that its place was removed.';

CREATE TABLE removed_users (
    id         bigint PRIMARY KEY,
    reason     text NOT NULL,
    removed_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE removed_users IS
  'Accounts X reported for deletion (deleted, suspended, protected, deactivated): a populate '
  'stores neither the account nor any post of it again.';

-- Cleared to NULL after RAW_RETENTION_DAYS (queries.clear_raw_before).
ALTER TABLE tweets ALTER COLUMN text DROP NOT NULL, ALTER COLUMN raw DROP NOT NULL;
ALTER TABLE users ALTER COLUMN raw DROP NOT NULL;
COMMENT ON COLUMN tweets.text IS 'The post text; NULL once older than RAW_RETENTION_DAYS.';
COMMENT ON COLUMN tweets.raw IS 'X''s JSON for the post; NULL once older than RAW_RETENTION_DAYS.';
COMMENT ON COLUMN users.raw IS
  'X''s JSON for the account; NULL once not seen for RAW_RETENTION_DAYS.';
-- Each populate clears what has just passed the cutoff: these find those rows without reading
-- the ones cleared already (nearly all of them, in a database older than the retention).
CREATE INDEX tweets_raw_kept_idx ON tweets (stored_at) WHERE raw IS NOT NULL;
CREATE INDEX users_raw_kept_idx ON users (updated_at) WHERE raw IS NOT NULL;
"""

DOWNGRADE = """
DROP INDEX tweets_raw_kept_idx, users_raw_kept_idx;
UPDATE tweets SET text = coalesce(text, ''), raw = coalesce(raw, '{}')
 WHERE text IS NULL OR raw IS NULL;
UPDATE users SET raw = '{}' WHERE raw IS NULL;
ALTER TABLE tweets ALTER COLUMN text SET NOT NULL, ALTER COLUMN raw SET NOT NULL;
ALTER TABLE users ALTER COLUMN raw SET NOT NULL;
COMMENT ON COLUMN tweets.text IS NULL;
COMMENT ON COLUMN tweets.raw IS NULL;
COMMENT ON COLUMN users.raw IS NULL;
DROP TABLE removed_users, removed_tweets, compliance_passes;
"""


def upgrade() -> None:
    op.get_bind().exec_driver_sql(UPGRADE)


def downgrade() -> None:
    op.get_bind().exec_driver_sql(DOWNGRADE)
