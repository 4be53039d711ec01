"""The error family, as_api_error (what any exception means to a caller), and the middleware that
answers every failure as JSON: {"error": {"code": ..., "message": ...}} (plus "details" when
useful).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, Final

import psycopg2
from loguru import logger


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


class WriteInProgress(ApiError):
    """A compliance pass found the write lock held: a populate or another pass is running."""

    status = 409
    code = "write_in_progress"


class ComplianceUnavailable(ApiError):
    """This deployment cannot run compliance passes: they ask X about the stored ids, with an
    app-only bearer token. Not transient: the configuration has to change."""

    status = 501
    code = "compliance_unavailable"


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


class ComplianceJobFailed(UpstreamError):
    """An X batch compliance job ended failed or expired."""

    code = "x_compliance_job_failed"


class ComplianceStorageError(UpstreamError):
    """The storage behind a job's signed upload or download URL refused or failed."""

    code = "x_compliance_storage_error"


class ComplianceTimeout(UpstreamError):
    """The pass was not done by COMPLIANCE_TIMEOUT."""

    status = 503
    code = "x_compliance_timeout"


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


def middleware(request_id: Any) -> Callable[..., Awaitable[Any]]:
    """The JSON error middleware: every exception a handler raises becomes its JSON answer; an
    HTTPException below 400 (a 304, a redirect) is an answer already and passes through. A failure
    is logged with the request's id, found under the `request_id` key (keys.REQUEST_ID).

    aiohttp.web is imported here, when the app is built, not at the top: the parsers and sources
    that raise these errors load no web framework. The key comes as an argument for the same
    reason: service.keys names the parts that raise these errors.
    """
    from aiohttp import web
    from aiohttp.typedefs import Handler

    @web.middleware
    async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            status, code = exc.status, _STATUS_CODES.get(exc.status, "http_error")
            message = "no such resource" if status == 404 else exc.reason
            details, headers = None, {}
            if isinstance(exc, web.HTTPMethodNotAllowed):
                message = f"method {exc.method} is not allowed here"
                headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        except Exception as exc:
            if isinstance(exc, ConnectionResetError) and (
                request.transport is None or request.transport.is_closing()
            ):
                # The client went away while its request body was read: nobody is left to
                # answer, and it is no server error. 499 (as nginx logs it) for the request log
                # and the metrics; aiohttp drops the response like any for a closed connection.
                return web.Response(status=499)
            error = as_api_error(exc)
            _log_failure(exc, error, request.method, request.path, request.get(request_id))
            status, code, message = error.status, error.code, error.message
            details, headers = error.details, error.headers
        body: dict[str, Any] = {"code": code, "message": message}
        if details is not None:
            body["details"] = details
        return web.json_response({"error": body}, status=status, headers=headers)

    return error_middleware


def _log_failure(
    exc: Exception, error: ApiError, method: str, path: str, request_id: str | None
) -> None:
    """Unexpected errors with their traceback; database failures by their kind."""
    if isinstance(error, InternalError):
        logger.bind(request_id=request_id, event="http.error").opt(exception=exc).error(
            "unhandled error on {method} {path}", method=method, path=path
        )
    elif not isinstance(exc, ApiError):  # a database failure, classified by as_api_error
        logger.bind(request_id=request_id, event="db.error").warning(
            "database error on {path}: {error}", path=path, error=type(exc).__name__
        )


# The codes of the HTTP errors aiohttp raises itself (unknown routes, methods, oversized bodies).
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
