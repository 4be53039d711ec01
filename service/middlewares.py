"""The one middleware: request id, JSON errors, metrics and the request log line; and the
exception-to-response mapping it applies.

A single layer on purpose: every aiohttp middleware adds a coroutine frame per request, and a
cached read costs less than three of them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web
from loguru import logger

from service import metrics
from service.errors import ApiError, InternalError, as_api_error
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


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    return web.json_response(
        error_body(code, message, details), status=status, headers=dict(headers or {})
    )


def exception_response(request: web.Request, exc: Exception) -> web.Response:
    """The JSON answer to any exception a handler raised (HTTPException below 400 excepted)."""
    if isinstance(exc, web.HTTPException):
        return _http_error(exc)
    error = as_api_error(exc)
    if isinstance(error, InternalError):
        logger.bind(request_id=request.get(REQUEST_ID), event="http.error").opt(
            exception=exc
        ).error("unhandled error on {method} {path}", method=request.method, path=request.path)
    elif not isinstance(exc, ApiError):  # a database failure, classified by as_api_error
        logger.bind(request_id=request.get(REQUEST_ID), event="db.error").warning(
            "database error on {path}: {error}", path=request.path, error=type(exc).__name__
        )
    return error_response(
        error.status, error.code, error.message, details=error.details, headers=error.headers
    )


_STATUS_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    417: "expectation_failed",
    431: "headers_too_large",
}


def _http_error(exc: web.HTTPException) -> web.Response:
    status = exc.status
    code = _STATUS_CODES.get(status, "http_error")
    message = exc.reason
    if status == 404:
        message = "no such resource"
    headers: dict[str, str] = {}
    if isinstance(exc, web.HTTPMethodNotAllowed):
        message = f"method {exc.method} is not allowed here"
        headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
    return error_response(status, code, message, headers=headers)
