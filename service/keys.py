"""Every typed key the app and its requests carry (aiohttp needs AppKey for mypy to see types)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    # Type-only imports: these modules import this one, so a runtime import would be circular.
    import aiopg

    from service.cache import ViewCache
    from service.config import Settings
    from service.health import HealthChecker
    from service.ingestion import Populator
    from service.sources.base import TweetSource

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
POOL: web.AppKey[aiopg.Pool] = web.AppKey("pool")
SOURCE: web.AppKey[TweetSource] = web.AppKey("source")
POPULATOR: web.AppKey[Populator] = web.AppKey("populator")
HEALTH: web.AppKey[HealthChecker] = web.AppKey("health")
CACHE: web.AppKey[ViewCache] = web.AppKey("cache")

REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id")
