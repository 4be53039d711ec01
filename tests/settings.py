"""Settings for an app under test: the fake X API, the test's database, fast retries."""

from __future__ import annotations

import dataclasses
from typing import Any

from service.config import Secret, Settings, XCredentials
from testing.fake_x import BEARER, FakeX
from tests.database import Database


def make_settings(database: Database, fake: FakeX | None, **overrides: Any) -> Settings:
    base = Settings(
        database_url=Secret(database.url),
        x_api_base_url=getattr(fake, "base_url", "http://127.0.0.1:9"),
        credentials=XCredentials(bearer_token=Secret(BEARER)),
        tweet_source="x",
        tags=("#devops", "#sre"),
        tweets_per_tag=100,
        x_retry_backoff=0.01,
        migrate_on_start=False,
        db_timeout=5.0,
        health_cache_ttl=0.0,
        compliance_poll=0.01,  # the fake's jobs complete at the second status check
    )
    return dataclasses.replace(base, **overrides)
