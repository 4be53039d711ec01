"""The outermost middleware: request id, one log line and the metrics of every request."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any, Final

from aiohttp import web
from loguru import logger

from service import metrics
from service.keys import REQUEST_ID

_REQUEST_ID_RE: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Polled by probes and scrapers every few seconds: logged at DEBUG so they do not drown the rest.
_QUIET_ROUTES: Final = frozenset({"/metrics", "/live", "/ready"})


def route_of(request: web.Request) -> str:
    """The route template (bounded label cardinality), or 'unmatched' for 404/405."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def request_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    given = request.headers.get("X-Request-ID", "")
    request_id = given if _REQUEST_ID_RE.match(given) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    route = route_of(request)
    started = time.perf_counter()
    status = 500
    metrics.HTTP_IN_PROGRESS.inc()
    try:
        with logger.contextualize(request_id=request_id):
            response: web.StreamResponse = await handler(request)
        status = response.status
        response.headers["X-Request-ID"] = request_id
        return response
    except web.HTTPException as exc:  # 3xx/304 raised by handlers pass the error middleware
        status = exc.status
        exc.headers["X-Request-ID"] = request_id
        raise
    finally:
        metrics.HTTP_IN_PROGRESS.dec()
        seconds = time.perf_counter() - started
        metrics.HTTP_REQUESTS.labels(method=request.method, route=route, status=str(status)).inc()
        metrics.HTTP_DURATION.labels(method=request.method, route=route).observe(seconds)
        level = "DEBUG" if route in _QUIET_ROUTES else "INFO"
        logger.bind(
            event="http.request",
            request_id=request_id,
            method=request.method,
            path=request.path,
            route=route,
            status=status,
            duration_ms=round(seconds * 1000, 2),
            client=request.remote,
        ).log(
            level,
            "{method} {path} {status}",
            method=request.method,
            path=request.path,
            status=status,
        )
