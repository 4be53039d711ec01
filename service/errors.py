"""The error family, and as_api_error: what any exception means to a caller.

Pure on purpose: no aiohttp.web here, so the parsers and sources that raise these load no web
framework. The middleware (service/middlewares.py) turns an ApiError into the JSON answer
{"error": {"code": ..., "message": ...}} (plus "details" when useful).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

import psycopg2


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


class InternalError(ApiError):
    """Anything unexpected. The message never carries internals; the log has the traceback."""


def as_api_error(exc: BaseException) -> ApiError:
    """The ApiError an exception stands for: itself, a database failure classified by SQLSTATE
    (PostgREST's mapping), or InternalError for anything unexpected."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        # The sources turn their own timeouts into Upstream* errors; one left over comes from
        # the database: a pool with no free connection, or a statement past its deadline.
        return DatabaseUnavailable("the database did not answer in time")
    if isinstance(exc, psycopg2.Error):
        pgcode = exc.pgcode or ""
        if not pgcode or pgcode.startswith(("08", "53", "57P")):
            # No SQLSTATE means the connection itself failed.
            return DatabaseUnavailable("the database is unavailable")
        if pgcode == "57014":
            return DatabaseUnavailable("the database did not answer in time")
    return InternalError("internal server error")
