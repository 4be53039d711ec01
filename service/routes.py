"""HTTP handlers: read validated input, call queries or the populator, return JSON."""

from __future__ import annotations

import asyncio
import hmac
import json
import re
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Final

import aiopg
from aiohttp import web
from aiohttp_apispec import docs, querystring_schema, response_schema
from loguru import logger

from service import metrics, queries
from service.cache import Loader, Rendered
from service.errors import Unauthorized
from service.keys import CACHE, HEALTH, POPULATOR, REQUEST_ID, SETTINGS
from service.schemas import (
    ErrorSchema,
    HealthSchema,
    HourCountSchema,
    PopulateQuerySchema,
    PopulateResultSchema,
    ProbeSchema,
    TagCountSchema,
    TopUserSchema,
    UsersQuerySchema,
)

_ERROR: Final = {"schema": ErrorSchema}
_DB_DOWN: Final = {**_ERROR, "description": "The database is unavailable or too slow."}
_BAD_QUERY: Final = {**_ERROR, "description": "A query parameter is invalid."}


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/populate", populate, name="populate")
    app.router.add_get("/api/v1/users", users, name="users", allow_head=False)
    app.router.add_get("/api/v1/hour", hour, name="hour", allow_head=False)
    app.router.add_get("/api/v1/tags", tags, name="tags", allow_head=False)
    app.router.add_get("/api/health", health, name="health", allow_head=False)
    app.router.add_get("/live", live, name="live", allow_head=False)
    app.router.add_get("/ready", ready, name="ready", allow_head=False)
    app.router.add_get("/metrics", metrics_handler, name="metrics", allow_head=False)


def _check_token(request: web.Request) -> None:
    token = request.app[SETTINGS].api_token
    if token is None:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized("populate needs an 'Authorization: Bearer <API_TOKEN>' header")
    # Constant-time comparison: response timing must not reveal how much of the token matched.
    # aiohttp decodes header bytes that are not UTF-8 to surrogates: back to the bytes sent.
    sent = given.strip().encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(sent, token.reveal().encode()):
        raise Unauthorized("the bearer token is not valid")


@docs(
    tags=["ingestion"],
    summary="Fetch recent tweets for every configured tag, store them, refresh the views",
    description="One transaction: on any failure nothing is stored and the run is recorded as "
    "failed. Single-flight across replicas: a concurrent call gets 409. Needs "
    "`Authorization: Bearer <API_TOKEN>` when the service has an API_TOKEN.",
    security=[{"bearer": []}],
    responses={
        400: _BAD_QUERY,
        401: {**_ERROR, "description": "Missing or wrong bearer token."},
        409: {**_ERROR, "description": "Another populate is running."},
        413: {**_ERROR, "description": "A request body over 64 KiB (populate takes none)."},
        502: {**_ERROR, "description": "The X API failed or rejected the credentials."},
        503: {
            **_ERROR,
            "description": "X API rate limit or usage cap reached (see Retry-After), "
            "the database is unavailable, or the service shut down before the run finished "
            "(service_stopping: nothing was stored).",
        },
    },
)
@querystring_schema(PopulateQuerySchema())
@response_schema(PopulateResultSchema(), 201, description="The run stored its tweets.")
async def populate(request: web.Request) -> web.Response:
    _check_token(request)
    if request.can_read_body:
        # Populate takes no body; reading it enforces client_max_size (413) rather than
        # leaving an unbounded body on the connection. A body declared too large is refused
        # at once, not after waiting for its first 64 KiB.
        declared = request.content_length
        if declared is not None and declared > request.client_max_size:
            raise web.HTTPRequestEntityTooLarge(
                max_size=request.client_max_size, actual_size=declared
            )
        await request.read()
    full: bool = request["querystring"]["full"]
    with logger.contextualize(request_id=request[REQUEST_ID]):
        result = await request.app[POPULATOR].run(full=full)
    return web.json_response(asdict(result), status=201)


@docs(
    tags=["analytics"],
    summary="Authors of the stored tweets with the most followers",
    description="Ordered by followers, descending, then username.",
    responses={400: _BAD_QUERY, 503: _DB_DOWN},
)
@querystring_schema(UsersQuerySchema())
@response_schema(TopUserSchema(many=True), 200, description="Top authors.")
async def users(request: web.Request) -> web.Response:
    limit: int = request["querystring"]["limit"]

    async def body(cur: aiopg.Cursor) -> bytes:
        rows = await queries.select_top_users(cur, limit=limit)
        return _json([{"username": r.username, "followers": r.followers} for r in rows])

    return await _cached(request, f"users?limit={limit}", body)


@docs(
    tags=["analytics"],
    summary="Stored tweets per UTC hour, ascending",
    description="Hours without tweets are absent.",
    responses={503: _DB_DOWN},
)
@response_schema(HourCountSchema(many=True), 200, description="Tweets per hour.")
async def hour(request: web.Request) -> web.Response:
    async def body(cur: aiopg.Cursor) -> bytes:
        rows = await queries.select_tweets_per_hour(cur)
        return _json([{"date": _hour(r.hour), "count": r.count} for r in rows])

    return await _cached(request, "hour", body)


@docs(
    tags=["analytics"],
    summary="Stored tweets per tag, language and country",
    description="Ordered by tag, then count descending. country is null for tweets "
    "without a place.",
    responses={503: _DB_DOWN},
)
@response_schema(TagCountSchema(many=True), 200, description="Tweets per tag, language, country.")
async def tags(request: web.Request) -> web.Response:
    async def body(cur: aiopg.Cursor) -> bytes:
        rows = await queries.select_tweets_per_tag(cur)
        return _json(
            [
                {"tag": r.tag, "language": r.language, "country": r.country, "count": r.count}
                for r in rows
            ]
        )

    return await _cached(request, "tags", body)


@docs(
    tags=["operations"],
    summary="Database and X API connectivity",
    description="200 when both are up, 500 when either is down. The X API check is cached "
    "(at most 30 s) so frequent probes spend no rate limit.",
    responses={500: {"schema": HealthSchema, "description": "A dependency is down."}},
)
@response_schema(HealthSchema(), 200, description="Everything is up.")
async def health(request: web.Request) -> web.Response:
    checker = request.app[HEALTH]
    database, x_api = await asyncio.gather(checker.database(), checker.x_api())
    up = bool(database["ok"] and x_api["ok"])
    body: dict[str, Any] = {
        "status": "ok" if up else "degraded",
        "database": database,
        "x_api": x_api,
    }
    if database["ok"]:
        body["last_populate"] = await checker.last_populate()
    return web.json_response(body, status=200 if up else 500)


@docs(tags=["operations"], summary="Liveness: the process answers")
@response_schema(ProbeSchema(), 200, description="Alive.")
async def live(request: web.Request) -> web.Response:
    del request
    return web.json_response({"status": "ok"})


@docs(
    tags=["operations"],
    summary="Readiness: the database answers",
    responses={503: {"schema": ProbeSchema, "description": "The database is down."}},
)
@response_schema(ProbeSchema(), 200, description="Ready to serve.")
async def ready(request: web.Request) -> web.Response:
    database = await request.app[HEALTH].database()
    if database["ok"]:
        return web.json_response({"status": "ok"})
    return web.json_response({"status": "unavailable"}, status=503)


async def metrics_handler(request: web.Request) -> web.Response:
    del request
    body, content_type = metrics.render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def _cached(request: web.Request, key: str, loader: Loader) -> web.Response:
    """Serve the body rendered for the current view generation, rendering it on a miss."""
    cache = request.app[CACHE]
    entry = cache.get(key) or await cache.load(key, loader)
    gzipped = entry.gzipped is not None and accepts_gzip(request.headers.get("Accept-Encoding"))
    headers = {
        "ETag": entry.etag_gzip if gzipped else entry.etag,
        # Always revalidate: a populate may change the body at any moment; 304s are cheap.
        "Cache-Control": "no-cache",
        "Vary": "Accept-Encoding",
    }
    if _matches(request.headers.get("If-None-Match"), entry):
        return web.Response(status=304, headers=headers)
    if gzipped:
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=entry.gzipped, headers=headers, content_type="application/json")
    return web.Response(body=entry.body, headers=headers, content_type="application/json")


# RFC 9110 §12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ).
_QVALUE_RE: Final = re.compile(r"^(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)$")
# RFC 9110 §8.4.1.3: a recipient SHOULD consider "x-gzip" equivalent to "gzip".
_GZIP_NAMES: Final = frozenset({"gzip", "x-gzip"})


def accepts_gzip(header: str | None) -> bool:
    """Whether Accept-Encoding lets us send gzip (RFC 9110 §12.5.3).

    Codings and the q parameter are case-insensitive; q=0 means "not acceptable"; an explicit
    gzip entry wins over `*`, which covers any coding not listed. No header, an empty one or a
    malformed member never selects gzip: identity is always a safe answer.
    """
    if not header:
        return False
    explicit: float | None = None
    wildcard: float | None = None
    for member in header.split(","):
        coding, *params = (part.strip() for part in member.split(";"))
        coding = coding.lower()
        if coding not in _GZIP_NAMES and coding != "*":
            continue
        q = _weight(params)
        if q is None:
            continue  # a member we cannot read: as if it were absent
        if coding == "*":
            wildcard = q if wildcard is None else wildcard
        elif explicit is None:
            explicit = q
    chosen = explicit if explicit is not None else wildcard
    return chosen is not None and chosen > 0


def _weight(params: list[str]) -> float | None:
    """The q of one member: 1 when absent, None when malformed."""
    q = 1.0
    for param in params:
        name, sep, value = param.partition("=")
        if name.strip().lower() != "q":
            continue
        value = value.strip()
        if not sep or not _QVALUE_RE.match(value):
            return None
        q = float(value)
    return q


def _matches(header: str | None, entry: Rendered) -> bool:
    """If-None-Match uses the weak comparison: W/ prefixes are ignored."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return entry.etag in tags or entry.etag_gzip in tags


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _hour(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
