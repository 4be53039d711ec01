"""A fake X API v2 (recent search) speaking the documented wire format, for the real tweepy client.

Tweets are registered per query; the fake pages through them like X does: at most `max_results`
per page (and at most `page_cap`, since X may return fewer), with an opaque `next_token`.
Failures are scripted with `fail()`; every request is recorded for assertions. `pause()` holds
every search (after recording it) until `resume()`, so a test can keep a populate provably
in flight for as long as it needs, whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from testing.fake_compliance import FakeCompliance

BEARER = "fake-bearer-AAAAAAAAAAAAAAAAAAAAA-secret"
SEARCH_PATH = "/2/tweets/search/recent"

PROBLEM = "application/problem+json"
UNAUTHORIZED = {
    "title": "Unauthorized",
    "type": "about:blank",
    "status": 401,
    "detail": "Unauthorized",
}
FORBIDDEN = {
    "client_id": "123",
    "detail": "When authenticating requests to the Twitter API v2 endpoints, you must use keys "
    "and tokens from a Twitter developer App that is attached to a Project.",
    "registration_url": "https://developer.twitter.com/en/docs/projects/overview",
    "title": "Client Forbidden",
    "required_enrollment": "Appropriate Level of API Access",
    "reason": "client-not-enrolled",
    "type": "https://api.twitter.com/2/problems/client-forbidden",
}
RATE_LIMITED = {
    "title": "Too Many Requests",
    "detail": "Too Many Requests",
    "type": "about:blank",
    "status": 429,
}
USAGE_CAPPED = {
    "title": "UsageCapExceeded",
    "detail": "Usage cap exceeded: Monthly product cap",
    "type": "https://api.twitter.com/2/problems/usage-capped",
    "period": "Monthly",
    "scope": "Product",
}
HTML_503 = (
    "<html><head><title>503 Service Temporarily Unavailable</title></head>"
    "<body>over capacity</body></html>"
)


def iso(value: datetime) -> str:
    """X's created_at format: UTC with milliseconds and a Z."""
    return (
        value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    )


def tweet(
    tweet_id: int,
    author_id: int,
    created_at: datetime | str,
    *,
    lang: str = "en",
    text: str = "hello #devops",
    place_id: str | None = None,
    tags: list[str] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(tweet_id),
        "text": text,
        "edit_history_tweet_ids": [str(tweet_id)],
        "author_id": str(author_id),
        "created_at": created_at if isinstance(created_at, str) else iso(created_at),
        "lang": lang,
        "public_metrics": {"retweet_count": 0, "reply_count": 0, "like_count": 1, "quote_count": 0},
        "entities": {"hashtags": [{"start": 0, "end": len(t) + 1, "tag": t} for t in (tags or [])]},
    }
    if place_id is not None:
        body["geo"] = {"place_id": place_id}
    return body


def user(user_id: int, username: str, followers: int, *, name: str | None = None) -> dict[str, Any]:
    return {
        "id": str(user_id),
        "name": name or username.title(),
        "username": username,
        "public_metrics": {
            "followers_count": followers,
            "following_count": 10,
            "tweet_count": 100,
            "listed_count": 0,
        },
    }


def user_not_found(user_id: str) -> dict[str, Any]:
    """The partial error X puts in `errors` for an author it cannot describe."""
    return {
        "value": user_id,
        "detail": f"Could not find user with ids: [{user_id}].",
        "title": "Not Found Error",
        "resource_type": "user",
        "parameter": "expansions",
        "resource_id": user_id,
        "type": "https://api.twitter.com/2/problems/resource-not-found",
    }


def place(place_id: str, country_code: str, country: str = "Somewhere") -> dict[str, Any]:
    return {
        "id": place_id,
        "full_name": f"City, {country_code}",
        "country": country,
        "country_code": country_code,
    }


@dataclass
class Reply:
    status: int
    body: Any
    content_type: str = PROBLEM
    headers: dict[str, str] = field(default_factory=dict)
    query: str | None = None  # only for this query; None: the next request whatever its query


@dataclass
class Recorded:
    query: str
    params: dict[str, str]
    authorization: str


class FakeX:
    def __init__(self, bearer: str = BEARER) -> None:
        self.bearer = bearer
        self.tweets: dict[str, list[dict[str, Any]]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.places: dict[str, dict[str, Any]] = {}
        self.page_cap = 100
        self.replies: deque[Reply] = deque()
        self.requests: list[Recorded] = []
        self.remaining = 450
        self.base_url = ""  # set by the fixture that serves it
        # Batch compliance: its endpoints on this app, and a storage host of its own to serve.
        self.compliance = FakeCompliance(bearer)
        self._open = asyncio.Event()
        self._open.set()

    # -- holding answers -----------------------------------------------------------------------
    def pause(self) -> None:
        """Hold every search from now on (each is recorded first) until `resume()`."""
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    # -- setup ---------------------------------------------------------------------------------
    def add(
        self,
        query: str,
        tweets: list[dict[str, Any]],
        users: list[dict[str, Any]] = (),  # type: ignore[assignment]
        places: list[dict[str, Any]] = (),  # type: ignore[assignment]
    ) -> None:
        """Register results for a query; newest first, like X."""
        ordered = sorted(tweets, key=lambda t: int(t["id"]), reverse=True)
        self.tweets.setdefault(query, []).extend(ordered)
        self.tweets[query].sort(key=lambda t: int(t["id"]), reverse=True)
        self.users.update((u["id"], u) for u in users)
        self.places.update((p["id"], p) for p in places)

    def fail(
        self,
        status: int,
        body: Any,
        *,
        times: int = 1,
        content_type: str = PROBLEM,
        headers: dict[str, str] | None = None,
        query: str | None = None,
    ) -> None:
        for _ in range(times):
            self.replies.append(Reply(status, body, content_type, dict(headers or {}), query))

    def searches(self, query: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if query is None or r.query == query]

    # -- server --------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(SEARCH_PATH, self._search)
        self.compliance.add_routes(app)
        return app

    def _limit_headers(self) -> dict[str, str]:
        self.remaining = max(0, self.remaining - 1)
        return {
            "x-rate-limit-limit": "450",
            "x-rate-limit-remaining": str(self.remaining),
            "x-rate-limit-reset": str(int(time.time()) + 900),
        }

    async def _search(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.query)
        query = params.get("query", "")
        self.requests.append(Recorded(query, params, request.headers.get("Authorization", "")))
        await self._open.wait()
        headers = self._limit_headers()
        for reply in list(self.replies):
            if reply.query is None or reply.query == query:
                self.replies.remove(reply)
                return _reply(reply, headers)
        auth = request.headers.get("Authorization", "")
        if auth != f"Bearer {self.bearer}" and not auth.startswith("OAuth "):
            return web.json_response(
                UNAUTHORIZED, status=401, content_type=PROBLEM, headers=headers
            )
        try:
            max_results = int(params.get("max_results", "10"))
        except ValueError:
            max_results = -1
        if not query or not 10 <= max_results <= 100:
            return web.json_response(
                {
                    "errors": [
                        {
                            "parameters": {"max_results": [params.get("max_results")]},
                            "message": "invalid",
                        }
                    ],
                    "title": "Invalid Request",
                    "detail": "One or more parameters to your request was invalid.",
                    "type": "https://api.twitter.com/2/problems/invalid-request",
                },
                status=400,
                content_type=PROBLEM,
                headers=headers,
            )
        offset = _decode(params.get("next_token"))
        since_id = int(params["since_id"]) if params.get("since_id", "").isdigit() else 0
        results = [t for t in self.tweets.get(query, []) if int(t["id"]) > since_id]
        page = results[offset : offset + min(max_results, self.page_cap)]
        if not page:
            return web.json_response({"meta": {"result_count": 0}}, headers=headers)
        body: dict[str, Any] = {"data": page}
        authors = {t["author_id"] for t in page}
        place_ids = {t["geo"]["place_id"] for t in page if "geo" in t}
        users = [self.users[a] for a in sorted(authors) if a in self.users]
        places = [self.places[p] for p in sorted(place_ids) if p in self.places]
        includes: dict[str, Any] = {"users": users}
        if places:
            includes["places"] = places
        body["includes"] = includes
        missing = sorted(authors - self.users.keys())
        if missing:
            body["errors"] = [user_not_found(m) for m in missing]
        meta: dict[str, Any] = {
            "newest_id": page[0]["id"],
            "oldest_id": page[-1]["id"],
            "result_count": len(page),
        }
        if offset + len(page) < len(results):
            meta["next_token"] = _encode(offset + len(page))
        body["meta"] = meta
        return web.json_response(body, headers=headers)


def _reply(reply: Reply, headers: dict[str, str]) -> web.Response:
    merged = {**headers, **reply.headers}
    if isinstance(reply.body, str | bytes):
        text = reply.body if isinstance(reply.body, bytes) else reply.body.encode()
        return web.Response(
            status=reply.status, body=text, content_type=reply.content_type, headers=merged
        )
    return web.Response(
        status=reply.status,
        body=json.dumps(reply.body).encode(),
        content_type=reply.content_type,
        headers=merged,
    )


def _encode(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _decode(token: str | None) -> int:
    if not token:
        return 0
    padded = token + "=" * (-len(token) % 4)
    return int(base64.urlsafe_b64decode(padded).decode().split(":")[1])
