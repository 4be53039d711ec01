"""The error family and the one middleware that turns every failure into JSON.

Every error body is {"error": {"code": ..., "message": ...}} (plus "details" when useful).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

import psycopg2
from aiohttp import web
from loguru import logger

from service.keys import REQUEST_ID


class ApiError(Exception):
    """An error with a status and a stable machine-readable code."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = dict(headers or {})


class BadRequest(ApiError):
    status = 400
    code = "invalid_parameter"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="populate"'})


class PopulateInProgress(ApiError):
    status = 409
    code = "populate_in_progress"


class DatabaseUnavailable(ApiError):
    status = 503
    code = "database_unavailable"


class ServiceStopping(ApiError):
    """The process is shutting down (SIGTERM) and stopped the populate; nothing was stored."""

    status = 503
    code = "service_stopping"


class UpstreamError(ApiError):
    """The X API (or the sample) failed; nothing from the run was written."""

    status = 502
    code = "x_api_error"


class UpstreamBadResponse(UpstreamError):
    code = "x_api_bad_response"


class UpstreamUnavailable(UpstreamError):
    code = "x_api_unavailable"


class UpstreamBadRequest(UpstreamError):
    code = "x_api_bad_request"


class UpstreamCredentials(UpstreamError):
    code = "x_api_credentials_rejected"


class UpstreamForbidden(UpstreamError):
    code = "x_api_access_forbidden"


class UpstreamRateLimited(UpstreamError):
    status = 503
    code = "x_api_rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(
            message,
            details={"retry_after_seconds": retry_after},
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


class UpstreamUsageCapped(UpstreamError):
    status = 503
    code = "x_api_usage_capped"


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


def database_error(exc: BaseException) -> ApiError | None:
    """Classify a database failure by SQLSTATE (PostgREST's mapping); None if not one."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return DatabaseUnavailable("the database did not answer in time")
    if not isinstance(exc, psycopg2.Error):
        return None
    pgcode = exc.pgcode or ""
    if not pgcode or pgcode.startswith(("08", "53", "57P")):
        # No SQLSTATE means the connection itself failed.
        return DatabaseUnavailable("the database is unavailable")
    if pgcode == "57014":
        return DatabaseUnavailable("the database did not answer in time")
    return None


_STATUS_CODES = {
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


def exception_response(request: web.Request, exc: Exception) -> web.Response:
    """The JSON answer to any exception a handler raised (HTTPException below 400 excepted)."""
    if isinstance(exc, ApiError):
        return error_response(
            exc.status, exc.code, exc.message, details=exc.details, headers=exc.headers
        )
    if isinstance(exc, web.HTTPException):
        return _http_error(exc)
    mapped = database_error(exc)
    if mapped is not None:
        logger.bind(request_id=request.get(REQUEST_ID), event="db.error").warning(
            "database error on {path}: {error}", path=request.path, error=type(exc).__name__
        )
        return error_response(mapped.status, mapped.code, mapped.message)
    logger.bind(request_id=request.get(REQUEST_ID), event="http.error").opt(exception=exc).error(
        "unhandled error on {method} {path}", method=request.method, path=request.path
    )
    return error_response(500, "internal_error", "internal server error")
