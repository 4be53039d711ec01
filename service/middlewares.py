"""The one middleware: request id, JSON errors, metrics and the request log line.

A single layer on purpose: every aiohttp middleware adds a coroutine frame per request, and a
cached read costs less than three of them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
from typing import Any, Final

from aiohttp import web

from service import metrics
from service.errors import exception_response
from service.keys import REQUEST_ID
from service.log import ACCESS
from service.openapi import validate

_REQUEST_ID_RE: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Polled by probes and scrapers every few seconds: logged at DEBUG so they do not drown the rest.
_QUIET_ROUTES: Final = frozenset({"/metrics", "/live", "/ready"})
# Generated ids: a random per-process prefix and a counter; unique across replicas and cheaper
# than a uuid4 (a getrandom call) per request.
_ID_PREFIX: Final = os.urandom(6).hex()
_ids = itertools.count(1)


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
async def request_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    request_id = _request_id(request)
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    status = 499  # client went away (handler cancelled) unless set below
    metrics.request_started()
    try:
        try:
            schemas = getattr(request.match_info.handler, "__schemas__", None)
            if schemas:
                await validate(request, schemas)
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:  # 304s and redirects are answers, not errors
                status = exc.status
                exc.headers["X-Request-ID"] = request_id
                raise
            response = exception_response(request, exc)
        except asyncio.CancelledError:
            raise
        except ConnectionResetError as exc:
            if request.transport is not None and not request.transport.is_closing():
                response = exception_response(request, exc)
            else:
                # The client went away while its request body was read: nobody is left to
                # answer, and it is no server error. 499 (as nginx logs it) for the request log
                # and the metrics; aiohttp drops the response like any for a closed connection.
                response = web.Response(status=499)
        except Exception as exc:
            response = exception_response(request, exc)
        status = response.status
        response.headers["X-Request-ID"] = request_id
        return response
    finally:
        metrics.request_finished()
        seconds = time.perf_counter() - started
        route = route_of(request)
        metrics.REQUESTS.observe(request.method, route, status, seconds)
        level = "DEBUG" if route in _QUIET_ROUTES else "INFO"
        if ACCESS.enabled(level):
            ACCESS.request(
                level,
                request.method,
                request.path,
                status,
                request_id,
                route,
                seconds,
                request.remote,
            )
