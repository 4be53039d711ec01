"""Oversized and malformed requests, sent as raw bytes: each gets a clear 4xx.

The app answers JSON. aiohttp's HTTP parser answers requests it cannot parse before any
application code runs, with a text/plain 400: a request line or header line over 8190 bytes,
more than 128 headers, a method token it does not know, bytes not allowed in a URL, a bad
Content-Length, Content-Length together with Transfer-Encoding. docs/failure-modes.md lists
these exceptions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from service.app import create_app
from service.config import Secret, Settings
from testing.waiting import eventually
from tests.database import Database
from tests.logs import CapturedLogs

TOKEN = "bad-input-token-0042"


@dataclasses.dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0]

    def json(self) -> Any:
        assert self.content_type == "application/json", (self.status, self.body[:200])
        return json.loads(self.body)


async def send(client: Server, data: bytes) -> Answer:
    """Send `data` as is on a new connection; read one response (no body after a HEAD)."""
    reader, writer = await asyncio.open_connection(*client)
    try:
        writer.write(data)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if head.startswith(b"HTTP/1.1 100 "):  # Expect: 100-continue; the answer follows
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = 0 if data.startswith(b"HEAD ") else int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(reader.readexactly(length), 10) if length else b""
        return Answer(status, headers, body)
    finally:
        writer.close()


def request(method: str, target: str | bytes, *headers: str | bytes, body: bytes = b"") -> bytes:
    line = method.encode() + b" " + (target if isinstance(target, bytes) else target.encode())
    raw = [line + b" HTTP/1.1", b"Host: 127.0.0.1"]
    raw += [h if isinstance(h, bytes) else h.encode() for h in headers]
    return b"\r\n".join(raw) + b"\r\n\r\n" + body


Server = tuple[str, int]  # host, port


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Server]:
    """The app served as `python -m service serve` serves it. Not aiohttp's TestServer: that
    cancels a handler when its client goes away, where web.run_app does not."""
    runner = web.AppRunner(create_app(dataclasses.replace(settings, api_token=Secret(TOKEN))))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield host, port
    finally:
        await runner.cleanup()


AUTH = f"Authorization: Bearer {TOKEN}"


def post(*headers: str, body: bytes = b"") -> bytes:
    return request("POST", "/api/v1/populate", *headers, body=body)


CHUNKED_70K = b"11170\r\n" + b"x" * 70_000 + b"\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(post(AUTH, "Content-Length: 70000"), id="declared"),
        pytest.param(post(AUTH, "Content-Length: 70000", body=b"x" * 70_000), id="sent"),
        pytest.param(post(AUTH, "Transfer-Encoding: chunked", body=CHUNKED_70K), id="chunked"),
        pytest.param(post(AUTH, "Content-Length: 9999999", "Expect: 100-continue"), id="expect"),
    ],
)
async def test_body_over_64_kib_is_refused_with_413(
    client: Server, clean_db: Database, data: bytes
) -> None:
    answer = await send(client, data)

    assert answer.status == 413
    assert answer.json()["error"]["code"] == "payload_too_large"
    assert clean_db.scalar("SELECT count(*) FROM populate_runs") == 0  # no run started


@pytest.mark.parametrize(
    "header",
    [
        b"",
        b"Authorization: Bearer",
        b"Authorization: Bearer    ",
        b"Authorization: Basic " + b"dXNlcjpwYXNz",
        b"Authorization: " + TOKEN.encode(),
        b"Authorization: Bearer " + TOKEN.encode() + b" extra",
        b"Authorization: Bearer\t" + TOKEN.encode(),
        b"Authorization: Bearer " + TOKEN.upper().encode(),
        b"Authorization: Bearer " + b"a" * 8000,
        b"Authorization: Bearer t\xc3\xb6k\xc3\xa9n",  # UTF-8
        b"Authorization: Bearer t\xf6k\xe9n",  # Latin-1: not UTF-8
        b"Authorization: Bearer \xff\xfe",
        b"Content-Length: 70000",  # no token: the body (too large) is not read before the check
    ],
)
async def test_bad_authorization_forms_get_401_json(client: Server, header: bytes) -> None:
    headers = [header] if header else []
    body = b"x" * 70_000 if header.startswith(b"Content-Length") else b""
    answer = await send(client, request("POST", "/api/v1/populate", *headers, body=body))

    assert answer.status == 401, answer.body
    assert answer.json()["error"]["code"] == "unauthorized"
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN.encode() not in answer.body


@pytest.mark.parametrize(
    "value",
    [
        *("%zz", "%", "%f", "%00", "9" * 5000),
        "%ff",  # a byte that is not UTF-8
        "%C0%AF",  # overlong UTF-8
    ],
)
async def test_invalid_percent_encoding_in_the_query_gets_400_json(
    client: Server, value: str
) -> None:
    answer = await send(client, request("GET", f"/api/v1/users?limit={value}"))

    assert answer.status == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid_parameter"
    assert "limit" in error["details"]


async def test_invalid_percent_encoding_elsewhere_or_a_long_url_is_ignored_or_404(
    client: Server,
) -> None:
    # An unknown parameter is ignored, whatever its name or length (within aiohttp's limit);
    # an undecodable path matches nothing.
    assert (await send(client, request("GET", "/api/v1/users?%ff=1&%zz=2"))).status == 200
    answer = await send(client, request("GET", "/api/v1/users?pad=" + "a" * 8000))
    assert (answer.status, answer.json()) == (200, [])
    answer = await send(client, request("GET", "/api/v1/%ff%zz"))
    assert answer.status == 404
    assert answer.json()["error"]["code"] == "not_found"
    answer = await send(client, request("POST", "/api/v1/populate?full=%ff", AUTH))
    assert answer.status == 400
    assert "full" in answer.json()["error"]["details"]


USERS = "/api/v1/users"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(request("GET", f"{USERS}?pad=" + "a" * 9000), id="request line too long"),
        pytest.param(request("GET", USERS, "X-Pad: " + "a" * 9000), id="header too long"),
        pytest.param(
            request("GET", USERS, *[f"X-Header-{i}: v" for i in range(200)]), id="many headers"
        ),
        pytest.param(request("GET", USERS, "Bad Header: v"), id="invalid header name"),
        pytest.param(request("GET", USERS, "NoColon"), id="header without colon"),
        pytest.param(request("GET", USERS, b"X-A: a\x00b"), id="NUL in a header"),
        pytest.param(request("FROB", USERS), id="unknown method"),
        pytest.param(request("get", USERS), id="lower-case method"),
        pytest.param(request("GET", b"/api/v1/users?limit=\xff"), id="raw byte in the query"),
        pytest.param(request("GET", b"/api/\xff"), id="raw byte in the path"),
        pytest.param(post("Content-Length: abc"), id="bad Content-Length"),
        pytest.param(
            post("Content-Length: 5", "Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
            id="Content-Length and Transfer-Encoding",
        ),
    ],
)
async def test_requests_aiohttps_parser_refuses_get_a_plain_400(
    client: Server, data: bytes
) -> None:
    answer = await send(client, data)

    assert answer.status == 400
    assert answer.content_type == "text/plain"


def requests_counted(route: str, status: int) -> float:
    value = REGISTRY.get_sample_value(
        "http_requests_total", {"method": "POST", "route": route, "status": str(status)}
    )
    return value or 0.0


def requests_in_progress() -> float:
    return REGISTRY.get_sample_value("http_requests_in_progress") or 0.0


async def test_client_gone_mid_body_is_a_499_not_a_server_error(
    client: Server, captured_logs: CapturedLogs
) -> None:
    before = requests_counted("/api/v1/populate", 499)
    errors_before = requests_counted("/api/v1/populate", 500)
    in_progress = requests_in_progress()
    reader, writer = await asyncio.open_connection(*client)
    writer.write(
        request("POST", "/api/v1/populate", AUTH, "Content-Length: 60000", body=b"x" * 1000)
    )
    await writer.drain()
    # The app has the request (it waits for the rest of the body) before the client goes.
    await eventually(
        lambda: requests_in_progress() == in_progress + 1,
        within=30,
        what="the app handles the request",
    )
    writer.close()
    del reader

    # The request ends: it is counted in the same step (service.middlewares.telemetry).
    await eventually(
        lambda: requests_in_progress() == in_progress, within=30, what="the request ends"
    )

    assert requests_counted("/api/v1/populate", 500) == errors_before, "counted as a 500"
    assert requests_counted("/api/v1/populate", 499) == before + 1
    lines = [json.loads(line) for line in captured_logs.lines()]
    assert not [line for line in lines if line["level"] in ("ERROR", "CRITICAL")]
    requests = [line for line in lines if line.get("event.action") == "http.request"]
    assert [line["status"] for line in requests] == [499]
