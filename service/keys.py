"""Every typed key the app and its requests carry (aiohttp needs AppKey for mypy to see types)."""

from __future__ import annotations

import aiohttp
import aiopg
from aiohttp import web

from service.cache import ViewCache
from service.clock import Clock
from service.compliance import Compliance
from service.config import Settings
from service.health import HealthChecker
from service.ingestion import Populator
from service.sources.base import TweetSource

SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
CLOCK: web.AppKey[Clock] = web.AppKey("clock", Clock)
POOL: web.AppKey[aiopg.Pool] = web.AppKey("pool", aiopg.Pool)
SOURCE: web.AppKey[TweetSource] = web.AppKey("source", TweetSource)
POPULATOR: web.AppKey[Populator] = web.AppKey("populator", Populator)
HEALTH: web.AppKey[HealthChecker] = web.AppKey("health", HealthChecker)
CACHE: web.AppKey[ViewCache] = web.AppKey("cache", ViewCache)
COMPLIANCE: web.AppKey[Compliance] = web.AppKey("compliance", Compliance)
# For the signed URLs of X's compliance jobs: no base-URL rewrite, no X credentials.
STORAGE: web.AppKey[aiohttp.ClientSession] = web.AppKey("storage", aiohttp.ClientSession)

REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
