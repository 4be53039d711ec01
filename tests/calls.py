"""The requests tests make to an app under test (an aiohttp TestClient), and reading /metrics.

Every answer is checked for the fake bearer token on the way: no test has to remember that the
token must never come back in a body or a header.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple
from urllib.parse import urlencode

from aiohttp.test_utils import TestClient
from multidict import CIMultiDictProxy
from prometheus_client.parser import text_string_to_metric_families

from testing.fake_x import BEARER

Client = TestClient[Any, Any]
App = Callable[..., Awaitable[Client]]  # the `app` fixture: another app, its settings changed
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Answer(NamedTuple):
    status: int
    body: Any  # the JSON body; None when the answer is not JSON
    headers: CIMultiDictProxy[str]


async def request(
    client: Client, method: str, path: str, *, headers: Mapping[str, str] | None = None
) -> Answer:
    response = await client.request(method, path, headers=dict(headers or {}))
    text = await response.text()
    assert BEARER not in text, f"{method} {path} echoed the bearer token"
    assert BEARER not in str(response.headers), f"{method} {path} echoed the bearer token"
    body = json.loads(text) if response.content_type == "application/json" else None
    return Answer(response.status, body, response.headers)


async def get(client: Client, path: str, **params: str) -> Any:
    """The JSON body of a GET (with these query parameters) that must answer 200."""
    answer = await request(client, "GET", f"{path}?{urlencode(params)}" if params else path)
    assert answer.status == 200, (path, answer.body)
    assert answer.headers["Content-Type"].startswith("application/json"), path
    return answer.body


def assert_error(body: Any, code: str) -> None:
    """`body` is the service's error shape, with `code` and a message."""
    assert isinstance(body, dict)
    assert list(body) == ["error"], body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert set(body["error"]) <= {"code", "message", "details"}


async def invalid(client: Client, path: str, **params: str) -> dict[str, Any]:
    """The error details of a GET that must be refused as invalid query parameters."""
    response = await client.get(path, params=params)
    assert response.status == 400, (path, params)
    assert response.content_type == "application/json"
    error = (await response.json())["error"]
    assert (error["code"], error["message"]) == ("invalid_parameter", "invalid query parameters")
    details: dict[str, Any] = error["details"]
    return details


READS = ("/api/v1/users", "/api/v1/hour", "/api/v1/tags")


async def reads(client: Client) -> list[Any]:
    """The JSON bodies of the three reads, unfiltered."""
    return [await get(client, path) for path in READS]


async def populate(
    client: Client, *, full: bool = False, headers: Mapping[str, str] | None = None
) -> Answer:
    return await request(
        client, "POST", "/api/v1/populate" + ("?full=true" if full else ""), headers=headers
    )


async def populated(client: Client, *, full: bool = False) -> Any:
    """The body of a populate that must answer 201."""
    answer = await populate(client, full=full)
    assert answer.status == 201, answer.body
    return answer.body


async def scrape(client: Client) -> Samples:
    """Every sample on /metrics. The registry is process-global: tests compare deltas."""
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    assert BEARER not in text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)
