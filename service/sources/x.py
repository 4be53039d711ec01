"""The live X API v2 source: the only module that imports tweepy.

tweepy's AsyncClient hard-codes https://api.twitter.com but uses the aiohttp session we hand it,
so a client middleware on that session sends its requests to X_API_BASE_URL (tests, proxies)
and records every response's status and rate-limit headers for metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import aiohttp
import tweepy.errors
from loguru import logger
from tweepy.asynchronous import AsyncClient
from yarl import URL

from service import metrics, snowflake
from service.clock import Sleep
from service.config import Settings
from service.errors import (
    UpstreamBadRequest,
    UpstreamBadResponse,
    UpstreamCredentials,
    UpstreamError,
    UpstreamForbidden,
    UpstreamRateLimited,
    UpstreamUnavailable,
    UpstreamUsageCapped,
)
from service.model import Page
from service.sources.parse import parse_page

PUBLIC_HOSTS: Final = frozenset({"api.twitter.com", "api.x.com"})
TWEET_FIELDS: Final = "created_at,lang,author_id,geo,public_metrics,entities"
EXPANSIONS: Final = "author_id,geo.place_id"
USER_FIELDS: Final = "username,name,public_metrics,location"
PLACE_FIELDS: Final = "country,country_code,full_name"
_BACKOFF_CAP: Final = 10.0
# When X omits x-rate-limit-reset on a 429, assume a full 15-minute window.
_DEFAULT_RESET_WAIT: Final = 900.0

# tweepy logs request headers, Authorization included, at DEBUG.
logging.getLogger("tweepy").setLevel(logging.INFO)


def rewrite_middleware(base_url: str) -> aiohttp.ClientMiddlewareType:
    """Send requests for the public API hosts to `base_url`, keeping path and query."""
    base = URL(base_url)
    prefix = base.path.rstrip("/")

    async def middleware(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        if request.url.host in PUBLIC_HOSTS and base.host not in PUBLIC_HOSTS:
            request.url = base.with_path(prefix + request.url.path, encoded=True).with_query(
                request.url.query
            )
            request.headers["Host"] = request.url.raw_authority
        try:
            response = await handler(request)
        except (aiohttp.ClientError, TimeoutError):
            metrics.X_API_REQUESTS.labels(status="error").inc()
            raise
        metrics.X_API_REQUESTS.labels(status=str(response.status)).inc()
        _record_rate_limit(response.headers)
        return response

    return middleware


def _record_rate_limit(headers: Any) -> None:
    for header, gauge in (
        ("x-rate-limit-remaining", metrics.X_API_RATE_LIMIT_REMAINING),
        ("x-rate-limit-limit", metrics.X_API_RATE_LIMIT_LIMIT),
        ("x-rate-limit-reset", metrics.X_API_RATE_LIMIT_RESET),
    ):
        value = headers.get(header)
        if value is not None and value.isdigit():
            gauge.set(int(value))


def create_session(settings: Settings) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=settings.x_timeout),
        middlewares=(rewrite_middleware(settings.x_api_base_url),),
    )


def create_storage_session(settings: Settings) -> aiohttp.ClientSession:
    """For the signed upload and download URLs of compliance jobs (service/compliance.py): no
    rewrite to X_API_BASE_URL and no credentials, the URLs carry their own authorization. No
    total timeout (an upload of millions of ids takes a while); a stalled connection fails after
    X_TIMEOUT, and the pass's COMPLIANCE_TIMEOUT bounds the rest."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=settings.x_timeout, sock_read=settings.x_timeout
        )
    )


class XSource:
    name = "x"

    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        creds = settings.credentials

        def reveal(secret: Any) -> str | None:
            return secret.reveal() if secret is not None else None

        self._client = AsyncClient(
            bearer_token=reveal(creds.bearer_token),
            consumer_key=reveal(creds.consumer_key),
            consumer_secret=reveal(creds.consumer_secret),
            access_token=reveal(creds.access_token),
            access_token_secret=reveal(creds.access_secret),
            return_type=dict,
            wait_on_rate_limit=False,  # tweepy would retry every 429 forever, usage caps included
        )
        self._client.session = session
        self._user_auth = creds.user_auth
        self._settings = settings
        self._sleep = sleep
        self._clock = clock
        self._probe_tag = settings.tags[0]

    async def search(
        self, tag: str, *, max_results: int, next_token: str | None, since_id: int | None = None
    ) -> Page:
        params: dict[str, Any] = {
            # The API accepts 10..100; ingestion trims when it wanted fewer.
            "max_results": max(10, min(100, max_results)),
            "tweet_fields": TWEET_FIELDS,
            "expansions": EXPANSIONS,
            "user_fields": USER_FIELDS,
            "place_fields": PLACE_FIELDS,
        }
        if next_token is not None:
            params["next_token"] = next_token
        if since_id is not None and _within_search_window(since_id, self._clock()):
            params["since_id"] = str(since_id)
        body = await self._call(tag, params, retries=self._settings.x_max_retries)
        return parse_page(body)

    # -- batch compliance (service/compliance.py) ------------------------------------------------
    # X's batch compliance endpoints take app-only auth (OAuth 2.0 bearer token) only, as tweepy
    # sends them (its compliance methods never sign with OAuth 1.0a); each allows 150 requests
    # per 15-minute window per app: developer.x.com/en/docs/x-api/compliance/batch-compliance/
    # api-reference/post-compliance-jobs and get-compliance-jobs-id.

    @property
    def can_comply(self) -> bool:
        return self._settings.credentials.bearer_token is not None

    async def create_compliance_job(self, kind: str, *, name: str) -> dict[str, Any]:
        """POST /2/compliance/jobs: the new job (id, status, upload_url, download_url, ...)."""
        # Not retried: a create that failed late may have made the job, and a second one of the
        # type would be refused while it runs (one concurrent job per type).
        return await self._job(
            f"create {kind} compliance job",
            lambda: self._client.create_compliance_job(kind, name=name),
            retries=0,
        )

    async def get_compliance_job(self, job_id: str) -> dict[str, Any]:
        """GET /2/compliance/jobs/:id: the job as it stands."""
        return await self._job(
            f"compliance job {job_id}",
            lambda: self._client.get_compliance_job(job_id),
            retries=self._settings.x_max_retries,
        )

    async def _job(
        self, what: str, call: Callable[[], Awaitable[Any]], *, retries: int
    ) -> dict[str, Any]:
        body = await self._request(what, call, retries=retries)
        job = body.get("data") if isinstance(body, dict) else None
        if not isinstance(job, dict) or not isinstance(job.get("id"), str):
            raise UpstreamBadResponse(f"X API answered {what} without a job")
        return job

    async def check(self) -> dict[str, Any]:
        # `#tag -#tag` matches no post: it proves reachability, credentials and search access
        # without reading (and paying for) any post.
        query = f"{self._probe_tag} -{self._probe_tag}"
        started = time.perf_counter()
        try:
            await self._call(query, {"max_results": 10}, retries=0, wait_on_rate_limit=False)
        except UpstreamBadRequest:
            # X checks credentials before parameters: a 400 to the probe still proves the API is
            # reachable and the credentials good (a proxy or fake may refuse the odd query).
            pass
        except UpstreamError as exc:
            return {"ok": False, "source": self.name, "error": exc.code, "message": exc.message}
        latency = round((time.perf_counter() - started) * 1000, 1)
        return {"ok": True, "source": self.name, "latency_ms": latency}

    async def _call(
        self,
        query: str,
        params: dict[str, Any],
        *,
        retries: int,
        wait_on_rate_limit: bool = True,
    ) -> Any:
        return await self._request(
            query,
            lambda: self._client.search_recent_tweets(query, user_auth=self._user_auth, **params),
            retries=retries,
            wait_on_rate_limit=wait_on_rate_limit,
        )

    async def _request(
        self,
        query: str,
        call: Callable[[], Awaitable[Any]],
        *,
        retries: int,
        wait_on_rate_limit: bool = True,
    ) -> Any:
        """`call`, retried and its failures classified as every X request's are; `query` names
        the request in the log."""
        attempt = 0
        while True:
            try:
                return await call()
            except Exception as exc:  # every failure is classified below
                wait, reason = await self._retry_or_raise(
                    exc,
                    query,
                    attempt=attempt,
                    retries=retries,
                    wait_on_rate_limit=wait_on_rate_limit,
                )
            metrics.X_API_RETRIES.labels(reason=reason).inc()
            await self._sleep(wait)
            attempt += 1

    async def _retry_or_raise(
        self, exc: Exception, query: str, *, attempt: int, retries: int, wait_on_rate_limit: bool
    ) -> tuple[float, str]:
        """(seconds to wait, retry reason) for a failure worth retrying; else the UpstreamError."""
        status = _status(exc)
        # A ContentTypeError (a ClientError) carries a status but a body that is not JSON: an
        # edge proxy's error page. It means the same as X's own JSON answer with that status.
        if isinstance(exc, tweepy.errors.TooManyRequests) or (
            isinstance(exc, aiohttp.ClientResponseError) and status == 429
        ):
            limit = await self._rate_limit_error(exc)
            if not wait_on_rate_limit or attempt >= retries or limit.retry_after is None:
                raise limit.as_api_error() from None
            wait = limit.retry_after + random.uniform(0, 1)  # noqa: S311 - jitter, not crypto
            logger.bind(event="x_api.rate_limited", tag=query).warning(
                "X API rate limit reached; waiting {wait:.0f} s", wait=wait
            )
            return wait, "rate_limit"
        if isinstance(exc, tweepy.errors.Unauthorized) or status == 401:
            raise UpstreamCredentials(
                "X API rejected the credentials (401): check TWITTER_BEARER_TOKEN "
                "or the four TWITTER_* OAuth 1.0a keys"
            ) from None
        if isinstance(exc, tweepy.errors.Forbidden) or status == 403:
            reason = "forbidden"
            if isinstance(exc, tweepy.errors.Forbidden):
                reason = await _problem_field(exc, "reason") or reason
            raise UpstreamForbidden(
                f"X API refused access (403 {reason}): the app needs a Project and a tier "
                "that includes recent search"
            ) from None
        if isinstance(exc, tweepy.errors.BadRequest):
            detail = "; ".join(str(m) for m in exc.api_messages)[:300] or "invalid request"
            raise UpstreamBadRequest(f"X API rejected the request (400): {detail}") from None
        if isinstance(exc, tweepy.errors.TwitterServerError | aiohttp.ClientError | TimeoutError):
            if status is not None and status < 500:
                # A 2xx (or other 4xx) whose body is unusable: retrying will not help.
                raise UpstreamBadResponse(
                    f"X API answered {status} with a body that is not JSON"
                ) from None
            if attempt >= retries:
                raise UpstreamUnavailable(
                    f"X API unavailable after {attempt + 1} attempts: {_describe(exc)}"
                ) from None
            wait = min(_BACKOFF_CAP, self._settings.x_retry_backoff * 2**attempt)
            wait *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto
            logger.bind(event="x_api.retry", tag=query).warning(
                "X API failed ({reason}); retry {n} in {wait:.2f} s",
                reason=_describe(exc),
                n=attempt + 1,
                wait=wait,
            )
            return wait, "server_error" if status is not None else "network"
        if isinstance(exc, tweepy.errors.HTTPException):
            raise UpstreamBadResponse(f"X API answered {status}") from None
        if isinstance(exc, ValueError | AttributeError | TypeError | KeyError):
            # json.JSONDecodeError (a truncated body) is a ValueError, like a non-numeric
            # rate-limit header; the others come from tweepy reading an error body of an
            # unexpected shape.
            raise UpstreamBadResponse("X API answered with a malformed response") from None
        raise exc

    async def _rate_limit_error(self, exc: Exception) -> _RateLimit:
        reset: int | None = None
        if isinstance(exc, tweepy.errors.TooManyRequests):
            problem = await _problem_field(exc, "type") or ""
            title = await _problem_field(exc, "title") or ""
            if problem.endswith("/usage-capped") or title == "UsageCapExceeded":
                return _RateLimit(capped=True, retry_after=None)
            reset = exc.reset_time
        elif isinstance(exc, aiohttp.ClientResponseError) and exc.headers is not None:
            value = exc.headers.get("x-rate-limit-reset", "")
            reset = int(value) if value.isdigit() else None
        wait = _DEFAULT_RESET_WAIT if reset is None else max(0.0, reset - self._clock()) + 1
        if wait > self._settings.x_rate_limit_max_wait:
            return _RateLimit(capped=False, retry_after=None, too_long=math.ceil(wait))
        return _RateLimit(capped=False, retry_after=wait)


class _RateLimit:
    def __init__(self, *, capped: bool, retry_after: float | None, too_long: int = 0) -> None:
        self.capped = capped
        self.retry_after = retry_after
        self.too_long = too_long

    def as_api_error(self) -> UpstreamError:
        if self.capped:
            return UpstreamUsageCapped(
                "X API usage cap reached for this billing period; waiting will not help"
            )
        retry_after = self.too_long or math.ceil(self.retry_after or 1)
        return UpstreamRateLimited(
            f"X API rate limit reached; the window resets in {retry_after} s",
            retry_after=retry_after,
        )


# Recent search covers 7 days and rejects an older since_id (400); keep an hour of margin.
_SEARCH_WINDOW_S: Final = 7 * 24 * 3600 - 3600


def _within_search_window(tweet_id: int, now: float) -> bool:
    created = snowflake.created_ms(tweet_id) / 1000
    return now - created < _SEARCH_WINDOW_S


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.status
    response = getattr(exc, "response", None)
    status = getattr(response, "status", None)
    return status if isinstance(status, int) else None


def _describe(exc: BaseException) -> str:
    status = _status(exc)
    if status is not None:
        return f"HTTP {status}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return type(exc).__name__


async def _problem_field(exc: tweepy.errors.HTTPException, field: str) -> str | None:
    """A field of the Problem JSON body; tweepy keeps only `errors`, but the body stays read."""
    try:
        body = await exc.response.json(content_type=None)
    except (ValueError, aiohttp.ClientError, AttributeError, json.JSONDecodeError):
        return None
    value = body.get(field) if isinstance(body, dict) else None
    return value if isinstance(value, str) else None
