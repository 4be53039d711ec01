"""HTTP handlers: read validated input, call queries or the populator, return JSON (or CSV)."""

from __future__ import annotations

import asyncio
import hmac
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Final, Literal

import aiopg
from aiohttp import web
from aiohttp_apispec import docs, querystring_schema, response_schema
from loguru import logger

from service import csv_format, metrics, queries
from service.cache import Loader, Rendered
from service.errors import Unauthorized
from service.keys import CACHE, HEALTH, POPULATOR, REQUEST_ID, SETTINGS
from service.schemas import (
    ErrorSchema,
    HealthSchema,
    HourCountSchema,
    HourQuerySchema,
    PopulateQuerySchema,
    PopulateResultSchema,
    ProbeSchema,
    SummarySchema,
    TagCountSchema,
    TagsQuerySchema,
    TopUserSchema,
    UsersQuerySchema,
    ceil_hour,
)

_ERROR: Final = {"schema": ErrorSchema}
_DB_DOWN: Final = {**_ERROR, "description": "The database is unavailable or too slow."}
_BAD_QUERY: Final = {**_ERROR, "description": "A query parameter is invalid."}
# The three reads answer JSON or, asked by ?format=csv or Accept, CSV (see _representation).
_TABLE: Final = ["application/json", "text/csv"]
_CSV_NOTE: Final = (
    " `?format=csv` or `Accept: text/csv` gives the same rows, in the same order, as CSV."
)
_USERS: Final = ("username", "followers")
_HOURS: Final = ("date", "count")
_TAGS: Final = ("tag", "language", "country", "count")
# The key part for a hashtag that is not configured: nothing is stored under it, so it has no
# rows, and any number of such tags share one cache entry. Not a valid tag, so it never clashes.
_OTHER_TAG: Final = "~other"

Format = Literal["json", "csv"]
Rows = list[dict[str, Any]]


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/populate", populate, name="populate")
    app.router.add_get("/api/v1/users", users, name="users", allow_head=False)
    app.router.add_get("/api/v1/hour", hour, name="hour", allow_head=False)
    app.router.add_get("/api/v1/tags", tags, name="tags", allow_head=False)
    app.router.add_get("/api/v1/summary", summary, name="summary", allow_head=False)
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
    description="Ordered by followers, descending, then username. With `tag`, only the "
    "authors of that tag's stored tweets, ranked the same way." + _CSV_NOTE,
    produces=_TABLE,
    responses={400: _BAD_QUERY, 503: _DB_DOWN},
)
@querystring_schema(UsersQuerySchema())
@response_schema(TopUserSchema(many=True), 200, description="Top authors.")
async def users(request: web.Request) -> web.Response:
    query = request["querystring"]
    limit: int = query["limit"]
    tag = _tag(request, query["tag"])

    async def rows(cur: aiopg.Cursor) -> Rows:
        if tag is None:
            found = await queries.select_top_users(cur, limit=limit)
        elif tag == _OTHER_TAG:
            found = []
        else:
            found = await queries.select_top_users_by_tag(cur, tag=tag, limit=limit)
        return [{"username": r.username, "followers": r.followers} for r in found]

    return await _table(request, f"users?limit={limit}&tag={tag}", _USERS, rows)


@docs(
    tags=["analytics"],
    summary="Stored tweets per UTC hour, ascending",
    description="Hours without tweets are absent. Each tweet counts once; with `tag`, the "
    "tweets with that tag. `since`/`until` keep the hours whose start lies in "
    "[since, until): a bound inside an hour moves to the start of the next hour." + _CSV_NOTE,
    produces=_TABLE,
    responses={400: _BAD_QUERY, 503: _DB_DOWN},
)
@querystring_schema(HourQuerySchema())
@response_schema(HourCountSchema(many=True), 200, description="Tweets per hour.")
async def hour(request: web.Request) -> web.Response:
    query = request["querystring"]
    tag = _tag(request, query["tag"])
    since, until = _bound(query["since"]), _bound(query["until"])

    async def rows(cur: aiopg.Cursor) -> Rows:
        if tag is None and since is None and until is None:
            found = await queries.select_tweets_per_hour(cur)
        elif tag == _OTHER_TAG:
            found = []
        else:
            found = await queries.select_tweets_per_hour_in(cur, tag=tag, since=since, until=until)
        return [{"date": _hour(r.hour), "count": r.count} for r in found]

    key = f"hour?tag={tag}&since={_key(since)}&until={_key(until)}"
    return await _table(request, key, _HOURS, rows)


@docs(
    tags=["analytics"],
    summary="Stored tweets per tag, language and country",
    description="Ordered by tag, then count descending, language, country. country is null "
    "for tweets without a place. With `tag`, that tag's rows; with `since`/`until`, the tweets "
    "created in [since, until), counted by the hour of creation: a bound inside an hour moves "
    "to the start of the next hour." + _CSV_NOTE,
    produces=_TABLE,
    responses={400: _BAD_QUERY, 503: _DB_DOWN},
)
@querystring_schema(TagsQuerySchema())
@response_schema(TagCountSchema(many=True), 200, description="Tweets per tag, language, country.")
async def tags(request: web.Request) -> web.Response:
    query = request["querystring"]
    tag = _tag(request, query["tag"])
    since, until = _bound(query["since"]), _bound(query["until"])

    async def rows(cur: aiopg.Cursor) -> Rows:
        if tag is None and since is None and until is None:
            found = await queries.select_tweets_per_tag(cur)
        elif tag == _OTHER_TAG:
            found = []
        else:
            found = await queries.select_tweets_per_tag_in(cur, tag=tag, since=since, until=until)
        return [
            {"tag": r.tag, "language": r.language, "country": r.country, "count": r.count}
            for r in found
        ]

    key = f"tags?tag={tag}&since={_key(since)}&until={_key(until)}"
    return await _table(request, key, _TAGS, rows)


@docs(
    tags=["analytics"],
    summary="Totals, the last populate, and what the dashboard needs to know",
    description="Stored tweets (each once), authors, tags with tweets, the first and last "
    "UTC hour with tweets, and the last successful populate with its source (x or sample). "
    "Its ETag changes exactly when a populate lands, so a client can poll it with "
    "If-None-Match to learn when to read again.",
    responses={503: _DB_DOWN},
)
@response_schema(SummarySchema(), 200, description="Totals.")
async def summary(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]

    async def body(cur: aiopg.Cursor) -> bytes:
        found = await queries.select_summary(cur)
        last = None
        if found.run_id is not None:
            last = {
                "run_id": found.run_id,
                "source": found.source,
                "finished_at": _instant(found.finished_at),
            }
        return _json(
            {
                "tweets": found.tweets,
                "authors": found.authors,
                "tags": found.tags,
                "first_hour": _instant(found.first_hour),
                "last_hour": _instant(found.last_hour),
                "last_populate": last,
                "configured_tags": list(settings.tags),
                "token_required": settings.api_token is not None,
            }
        )

    return await _cached(request, "summary", body)


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


async def _table(
    request: web.Request,
    key: str,
    columns: Sequence[str],
    rows: Callable[[aiopg.Cursor], Awaitable[Rows]],
) -> web.Response:
    """A read rendered as JSON or CSV; each representation is its own cache entry."""
    form = _representation(request)

    async def body(cur: aiopg.Cursor) -> bytes:
        found = await rows(cur)
        return csv_format.render(columns, found) if form == "csv" else _json(found)

    # The Accept header chooses the representation too: shared caches must key on it.
    vary = "Accept, Accept-Encoding"
    if form == "csv":
        return await _cached(request, f"{key}&format=csv", body, csv=True, vary=vary)
    return await _cached(request, key, body, vary=vary)


def _representation(request: web.Request) -> Format:
    """?format= wins; otherwise CSV when the Accept header prefers text/csv to JSON."""
    asked: str | None = request["querystring"]["format"]
    if asked == "csv":
        return "csv"
    if asked == "json":
        return "json"
    return "csv" if _prefers_csv(request.headers.get("Accept")) else "json"


def _prefers_csv(header: str | None) -> bool:
    """text/csv (or text/*) named with a q above 0 and at least the q of any JSON match.

    */* counts for JSON only: a browser's catch-all must not turn an API call into a download.
    """
    if not header:
        return False
    best = {"csv": 0.0, "json": 0.0}
    for item in header.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        q = _weight(params)
        if q is None:
            continue  # a member we cannot read: as if it were absent (as for Accept-Encoding)
        media = media.lower()
        if media in ("text/csv", "text/*"):
            best["csv"] = max(best["csv"], q)
        elif media in ("application/json", "application/*", "*/*"):
            best["json"] = max(best["json"], q)
    return best["csv"] > 0 and best["csv"] >= best["json"]


def _tag(request: web.Request, tag: str | None) -> str | None:
    """None: every tag. A hashtag not configured has no stored rows: one shared key for all."""
    if tag is None or tag in request.app[SETTINGS].tags:
        return tag
    return _OTHER_TAG


def _bound(moment: datetime | None) -> datetime | None:
    return None if moment is None else ceil_hour(moment)


def _key(moment: datetime | None) -> str:
    return "" if moment is None else _hour(moment)


async def _cached(
    request: web.Request,
    key: str,
    loader: Loader,
    *,
    csv: bool = False,
    vary: str = "Accept-Encoding",
) -> web.Response:
    """Serve the body rendered for the current view generation, rendering it on a miss."""
    cache = request.app[CACHE]
    entry = cache.get(key) or await cache.load(key, loader)
    gzipped = entry.gzipped is not None and accepts_gzip(request.headers.get("Accept-Encoding"))
    headers = {
        "ETag": entry.etag_gzip if gzipped else entry.etag,
        # Always revalidate: a populate may change the body at any moment; 304s are cheap.
        "Cache-Control": "no-cache",
        "Vary": vary,
    }
    if _matches(request.headers.get("If-None-Match"), entry):
        return web.Response(status=304, headers=headers)
    if csv:
        content_type, charset = csv_format.CONTENT_TYPE, csv_format.CHARSET
    else:
        content_type, charset = "application/json", None
    body = entry.body
    if gzipped and entry.gzipped is not None:
        headers["Content-Encoding"] = "gzip"
        body = entry.gzipped
    return web.Response(body=body, headers=headers, content_type=content_type, charset=charset)


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


def _instant(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")
