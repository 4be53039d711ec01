"""HTTP handlers: read validated input, call the populator or a query, answer JSON. The three
analytics reads are declared in service/reads.py."""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import aiopg
from aiohttp import web
from aiohttp_apispec import docs, querystring_schema, response_schema
from loguru import logger

from service import metrics, queries, reads
from service.errors import Unauthorized
from service.keys import COMPLIANCE, HEALTH, POPULATOR, REQUEST_ID, SETTINGS
from service.reads import BAD_QUERY, DB_DOWN, ERROR
from service.schemas import (
    ComplianceResultSchema,
    HealthSchema,
    PopulateQuerySchema,
    PopulateResultSchema,
    ProbeSchema,
    SummarySchema,
)


def setup_routes(app: web.Application) -> None:
    # In this order in the OpenAPI document.
    app.router.add_post("/api/v1/populate", populate, name="populate")
    app.router.add_post("/api/v1/compliance", compliance, name="compliance")
    reads.add_routes(app)
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
        raise Unauthorized(f"{request.path} needs an 'Authorization: Bearer <API_TOKEN>' header")
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
        400: BAD_QUERY,
        401: {**ERROR, "description": "Missing or wrong bearer token."},
        409: {**ERROR, "description": "Another populate is running."},
        413: {**ERROR, "description": "A request body over 64 KiB (populate takes none)."},
        502: {**ERROR, "description": "The X API failed or rejected the credentials."},
        503: {
            **ERROR,
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
    await _no_body(request)
    full: bool = request["querystring"]["full"]
    with logger.contextualize(request_id=request[REQUEST_ID]):
        result = await request.app[POPULATOR].run(full=full)
    return web.json_response(asdict(result), status=201)


@docs(
    tags=["ingestion"],
    summary="Ask X which stored posts and accounts are gone, and forget them",
    description="A batch compliance pass: X's `tweets` and `users` compliance jobs over every "
    "stored post and account id, then, in one transaction, every post X says to delete is "
    "removed (from every aggregate and view), every account X says to delete is removed with "
    "all its posts, and every place X says to scrub is removed; raw data older than "
    "RAW_RETENTION_DAYS is cleared. On any failure nothing is applied and the pass is recorded "
    "as failed. Single-flight with populates across replicas: 409 while one runs. Needs "
    "`Authorization: Bearer <API_TOKEN>` when the service has an API_TOKEN.",
    security=[{"bearer": []}],
    responses={
        401: {**ERROR, "description": "Missing or wrong bearer token."},
        409: {**ERROR, "description": "A populate or another compliance pass is running."},
        413: {**ERROR, "description": "A request body over 64 KiB (the pass takes none)."},
        501: {
            **ERROR,
            "description": "This deployment cannot ask X: it reads the bundled sample, or has "
            "no app-only bearer token (compliance_unavailable).",
        },
        502: {
            **ERROR,
            "description": "The X API failed, a compliance job failed or expired, or the "
            "storage of its upload or download URL refused or failed.",
        },
        503: {
            **ERROR,
            "description": "X API rate limit or usage cap reached, the pass passed "
            "COMPLIANCE_TIMEOUT, the database is unavailable, or the service shut down first.",
        },
    },
)
@response_schema(ComplianceResultSchema(), 201, description="The pass applied X's results.")
async def compliance(request: web.Request) -> web.Response:
    _check_token(request)
    await _no_body(request)
    with logger.contextualize(request_id=request[REQUEST_ID]):
        result = await request.app[COMPLIANCE].run()
    return web.json_response(asdict(result), status=201)


async def _no_body(request: web.Request) -> None:
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


@docs(
    tags=["analytics"],
    summary="Totals, the last populate, and what the dashboard needs to know",
    description="Stored tweets (each once), authors, tags with tweets, the first and last "
    "UTC hour with tweets, and the last successful populate with its source (x or sample). "
    "Its ETag changes exactly when a populate lands, so a client can poll it with "
    "If-None-Match to learn when to read again.",
    responses={503: DB_DOWN},
)
@response_schema(SummarySchema(), 200, description="Totals.")
async def summary(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]

    async def body(cur: aiopg.Cursor) -> bytes:
        found = await queries.select_summary(cur)
        last_pass = await queries.last_successful_pass(cur)
        last = None
        if found.run_id is not None:
            last = {
                "run_id": found.run_id,
                "source": found.source,
                "finished_at": _instant(found.finished_at),
            }
        return reads.json_body(
            {
                "tweets": found.tweets,
                "authors": found.authors,
                "tags": found.tags,
                "first_hour": _instant(found.first_hour),
                "last_hour": _instant(found.last_hour),
                "last_populate": last,
                "configured_tags": list(settings.tags),
                "token_required": settings.api_token is not None,
                "compliance": {
                    "interval_seconds": request.app[COMPLIANCE].interval,
                    "last_pass": last_compliance(last_pass),
                },
            }
        )

    return await reads.cached(request, "summary", body)


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
        body["last_compliance"] = last_compliance(await checker.last_compliance())
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


def last_compliance(found: dict[str, Any] | None) -> dict[str, Any] | None:
    if found is None:
        return None
    return {
        "pass_id": found["id"],
        "finished_at": _instant(datetime.fromisoformat(found["finished_at"])),
        "applied": found["counts"] or {},
    }


def _instant(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")
