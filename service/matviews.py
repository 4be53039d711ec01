"""The materialized views: their names, and their SQL files under migrations/views (Scenic's
layout), read from the installed package."""

from __future__ import annotations

import importlib.resources
from typing import Final

# Refreshed in this order after every successful populate.
VIEWS: Final = ("top_users", "tweets_per_hour", "tweets_per_tag")

# The read-only role analysts and Grafana use; migrations grant it SELECT on the views, and from
# 0003 on author_stats (the per-author numbers top_users no longer holds in full).
ANALYST_ROLE: Final = "analyst"


def view_sql(name: str, version: int) -> str:
    """migrations/views/<name>_vNN.sql. A shipped version is never edited; add the next one."""
    views = importlib.resources.files("service") / "migrations" / "views"
    return (views / f"{name}_v{version:02d}.sql").read_text(encoding="utf-8")


# Grant SELECT on the views to the analyst role, when the deployment created that role.
# Spelled out, not built from VIEWS: no SQL text is ever assembled from strings.
GRANT_SQL: Final = """
DO $grant$
BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'analyst') THEN
    GRANT SELECT ON top_users, tweets_per_hour, tweets_per_tag TO analyst;
  END IF;
END
$grant$;
"""
