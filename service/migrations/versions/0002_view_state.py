"""The view generation: bumped by every populate, so replicas know when cached reads went stale.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(
        """
CREATE TABLE view_state (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    generation   bigint NOT NULL,
    refreshed_at timestamptz
);
COMMENT ON TABLE view_state IS
  'One row: generation counts view refreshes; it changes in the transaction that refreshes them.';
INSERT INTO view_state (generation) VALUES (0);
"""
    )


def downgrade() -> None:
    op.get_bind().exec_driver_sql("DROP TABLE view_state")
