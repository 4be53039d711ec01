"""The analytics reads: each declared once (READS), all served by one handler from the view cache,
as JSON or CSV, with ETags, 304s and precompressed gzip."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import aiopg
from aiohttp import web
from aiohttp.helpers import ETAG_ANY, ETag
from aiohttp.typedefs import Handler
from aiohttp_apispec import docs, querystring_schema, response_schema
from marshmallow import Schema
from multidict import CIMultiDictProxy

from service import csv_format, queries
from service.cache import MAX_ENTRIES, Loader, Rendered
from service.keys import CACHE, SETTINGS
from service.queries import Filters, Row
from service.schemas import (
    ErrorSchema,
    HourCountSchema,
    HourQuerySchema,
    TagCountSchema,
    TagsQuerySchema,
    TopUserSchema,
    UsersQuerySchema,
    ceil_hour,
)

Select = Callable[[aiopg.Cursor, Filters], Awaitable[list[Row]]]
Format = Literal["json", "csv"]

ERROR: Final = {"schema": ErrorSchema}
DB_DOWN: Final = {**ERROR, "description": "The database is unavailable or too slow."}
BAD_QUERY: Final = {**ERROR, "description": "A query parameter is invalid."}
_CSV_NOTE: Final = (
    " `?format=csv` or `Accept: text/csv` gives the same rows, in the same order, as CSV."
)
# The key part for a hashtag that is not configured: nothing is stored under it, so it has no
# rows, and any number of such tags share one cache entry. Not a valid tag, so it never clashes.
_OTHER_TAG: Final = "~other"


@dataclass(frozen=True, slots=True)
class Read:
    """One read: its route, its columns (JSON keys and CSV header), the statement over the view
    (no filter) and the one over the aggregate tables (a tag and/or an hour range), the row
    mapping they share, and its OpenAPI description."""

    path: str
    name: str  # route name and cache-key prefix
    columns: tuple[str, ...]
    everything: Select
    filtered: Select
    row: Callable[[Row], dict[str, Any]]
    query: type[Schema]
    item: type[Schema]
    summary: str
    description: str
    answer: str


def _hour(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


READS: Final = (
    Read(
        path="/api/v1/users",
        name="users",
        columns=("username", "followers"),
        everything=queries.select_top_users,
        filtered=queries.select_top_users_by_tag,
        row=lambda r: {"username": r[0], "followers": int(r[1])},
        query=UsersQuerySchema,
        item=TopUserSchema,
        summary="Authors of the stored tweets with the most followers",
        description="Ordered by followers, descending, then username. With `tag`, only the "
        "authors of that tag's stored tweets, ranked the same way.",
        answer="Top authors.",
    ),
    Read(
        path="/api/v1/hour",
        name="hour",
        columns=("date", "count"),
        everything=queries.select_tweets_per_hour,
        filtered=queries.select_tweets_per_hour_in,
        row=lambda r: {"date": _hour(r[0]), "count": int(r[1])},
        query=HourQuerySchema,
        item=HourCountSchema,
        summary="Stored tweets per UTC hour, ascending",
        description="Hours without tweets are absent. Each tweet counts once; with `tag`, the "
        "tweets with that tag. `since`/`until` keep the hours whose start lies in "
        "[since, until): a bound inside an hour moves to the start of the next hour.",
        answer="Tweets per hour.",
    ),
    Read(
        path="/api/v1/tags",
        name="tags",
        columns=("tag", "language", "country", "count"),
        everything=queries.select_tweets_per_tag,
        filtered=queries.select_tweets_per_tag_in,
        row=lambda r: {"tag": r[0], "language": r[1], "country": r[2], "count": int(r[3])},
        query=TagsQuerySchema,
        item=TagCountSchema,
        summary="Stored tweets per tag, language and country",
        description="Ordered by tag, then count descending, language, country. country is null "
        "for tweets without a place. With `tag`, that tag's rows; with `since`/`until`, the "
        "tweets created in [since, until), counted by the hour of creation: a bound inside an "
        "hour moves to the start of the next hour.",
        answer="Tweets per tag, language, country.",
    ),
)


def add_routes(app: web.Application) -> None:
    for read in READS:
        app.router.add_get(read.path, _handler(read), name=read.name, allow_head=False)


def _handler(read: Read) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        query = request["querystring"]
        tag: str | None = query["tag"]
        if tag is not None and tag not in request.app[SETTINGS].tags:
            tag = _OTHER_TAG
        since: datetime | None = query.get("since")
        until: datetime | None = query.get("until")
        filters = Filters(
            tag,
            None if since is None else ceil_hour(since),
            None if until is None else ceil_hour(until),
            query.get("limit"),
        )
        form = _representation(query["format"], request.headers.get("Accept"))
        return await cached(
            request,
            (read.name, filters, form),
            functools.partial(_render, read, filters, form),
            csv=form == "csv",
            # The Accept header chooses the representation too: shared caches must key on it.
            vary="Accept, Accept-Encoding",
        )

    described = response_schema(read.item(many=True), 200, description=read.answer)(handler)
    described = querystring_schema(read.query())(described)
    described = docs(
        tags=["analytics"],
        summary=read.summary,
        description=read.description + _CSV_NOTE,
        produces=["application/json", "text/csv"],
        responses={400: BAD_QUERY, 503: DB_DOWN},
    )(described)
    return handler  # the decorators annotate it and return it


async def _render(read: Read, filters: Filters, form: Format, cur: aiopg.Cursor) -> bytes:
    if filters.tag == _OTHER_TAG:
        rows: list[Row] = []
    elif filters.tag is None and filters.since is None and filters.until is None:
        rows = await read.everything(cur, filters)
    else:
        rows = await read.filtered(cur, filters)
    found = [read.row(row) for row in rows]
    return csv_format.render(read.columns, found) if form == "csv" else json_body(found)


async def cached(
    request: web.Request,
    key: Hashable,
    loader: Loader,
    *,
    csv: bool = False,
    vary: str = "Accept-Encoding",
) -> web.Response:
    """Serve the body rendered for the current view generation, rendering it on a miss."""
    cache = request.app[CACHE]
    entry = cache.get(key) or await cache.load(key, loader)
    gzipped = entry.gzipped is not None and accepts_gzip(request.headers.get("Accept-Encoding"))
    tag = entry.tag_gzip if gzipped else entry.tag
    if _matches(request.if_none_match, entry):
        return web.Response(status=304, headers=_headers(tag, False, False, False, vary))
    body = entry.gzipped if gzipped else entry.body
    return web.Response(body=body, headers=_headers(tag, True, csv, gzipped, vary))


@functools.lru_cache(maxsize=4 * MAX_ENTRIES)  # per entity tag: entries x representations
def _headers(tag: str, body: bool, csv: bool, gzipped: bool, vary: str) -> CIMultiDictProxy[str]:
    """The headers of an answer from the cache, set through aiohttp's own setters once per
    entity tag and representation; each response gets a copy.

    Measured (bench/callgrind.py, cached reads of /api/v1/users): 8,500 instructions a request
    fewer than setting them on every response, of about 330,000; a whole request to the bare
    aiohttp handler costs about 203,000.
    """
    template = web.Response(
        content_type=(csv_format.CONTENT_TYPE if csv else "application/json") if body else None,
        charset=csv_format.CHARSET if csv and body else None,
    )
    if gzipped and body:
        template.headers["Content-Encoding"] = "gzip"
    template.etag = tag
    # Always revalidate: a populate may change the body at any moment; 304s are cheap.
    template.headers["Cache-Control"] = "no-cache"
    template.headers["Vary"] = vary
    return CIMultiDictProxy(template.headers)


def _matches(tags: tuple[ETag, ...] | None, entry: Rendered) -> bool:
    """If-None-Match uses the weak comparison: W/ is ignored. Either representation's tag
    matches, as both stand for the same rows."""
    return tags is not None and any(
        tag.value in (ETAG_ANY, entry.tag, entry.tag_gzip) for tag in tags
    )


def _representation(asked: Format | None, accept: str | None) -> Format:
    """?format= wins; otherwise CSV when the Accept header prefers text/csv to JSON."""
    if asked is not None:
        return asked
    return "csv" if _prefers_csv(accept) else "json"


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


def _weight(params: Sequence[str]) -> float | None:
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


def json_body(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
