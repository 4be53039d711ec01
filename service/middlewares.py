"""Request telemetry: the request id, the request metrics and the request log line.

The telemetry middleware gives each request its id, counts it in progress, and times and counts
it once answered (service/metrics.py); AccessLogger, which aiohttp calls once the response is
sent, writes its line. The JSON error middleware runs inside this one (service/errors.py), so
what is counted and logged is the status the client gets.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler

from service import log, metrics
from service.keys import REQUEST_ID

_REQUEST_ID_RE: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Polled by probes and scrapers every few seconds: logged at DEBUG so they do not drown the rest.
_QUIET_ROUTES: Final = frozenset({"/metrics", "/live", "/ready"})
# Generated ids: a random per-process prefix and a counter; unique across replicas and cheaper
# than a uuid4 (a getrandom call) per request.
_ID_PREFIX: Final = os.urandom(6).hex()
_ids = itertools.count(1)
# The route and the telemetry middleware's measure, which the metric and the log line report.
_ANSWERED: Final = web.RequestKey("answered", tuple[str, float])
# A client that went away before its answer (as nginx logs it).
_GONE: Final = 499


def route_of(request: web.Request) -> str:
    """The route template (bounded label cardinality), or 'unmatched' for 404/405."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-Request-ID")
    if given and _REQUEST_ID_RE.match(given):
        return given
    return f"{_ID_PREFIX}-{next(_ids):x}"


@web.middleware
async def telemetry(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[REQUEST_ID] = request_id = _request_id(request)
    started = time.perf_counter()
    status: int | None = None
    metrics.REQUESTS.in_progress += 1
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-ID"] = request_id
        return response
    except web.HTTPException as exc:  # below 400: the error middleware answers the others
        status = exc.status
        exc.headers["X-Request-ID"] = request_id
        raise
    finally:
        metrics.REQUESTS.in_progress -= 1
        route, seconds = request[_ANSWERED] = route_of(request), time.perf_counter() - started
        if status is None:
            # Cancelled before it answered (the client went away, or shutdown): aiohttp writes
            # no access line for a request without a response, so this is its line.
            status = _GONE
            _log(request, status)
        metrics.REQUESTS.observe(request.method, route, status, seconds)


class AccessLogger(AbstractAccessLogger):
    """aiohttp's access log hook (create_app passes it in handler_args): one line per request,
    in the log's entry format, at DEBUG for the polled routes and INFO for the rest."""

    @property
    def enabled(self) -> bool:
        return log.ACCESS.enabled("INFO")  # read by aiohttp once per connection

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        del time  # the telemetry middleware's measure instead: the one the metric reports
        _log(request, response.status)


def _log(request: web.BaseRequest, status: int) -> None:
    answered = request.get(_ANSWERED)
    if answered is None:
        return  # answered by aiohttp before the app saw it (a malformed request): not counted
    route, seconds = answered
    level = "DEBUG" if route in _QUIET_ROUTES else "INFO"
    if not log.ACCESS.enabled(level):
        return
    method, path = request.method, request.path
    log.ACCESS.add(  # the values of log.REQUEST_FIELDS, in their order
        (
            log.stamp(time.time_ns()),
            level,
            f"{method} {path} {status}",
            "service.access",
            "http.request",
            request[REQUEST_ID],
            method,
            path,
            route,
            status,
            round(seconds * 1000, 3),
            request.remote,
        )
    )
