"""No secret (X bearer token, API token, database password) in /metrics, /api/health, error
bodies or the logs of the real server process, on the paths most likely to print one: the X
API rejecting the credentials, wrong or malformed tokens, a request aiohttp's parser refuses
with the token in it, and a database it cannot reach at startup. LOG_LEVEL is DEBUG.

The `spawn` fixture also checks the log of every process the fault tests start.
"""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import pytest

from testing.fake_x import FakeX
from testing.loopback import free_port
from tests.database import Database
from tests.service_process import API_TOKEN, DB_PASSWORD, Spawn, fetch, leaks, service_env

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.mark.slow
async def test_secrets_stay_out_of_bodies_metrics_health_and_logs(
    spawn: Spawn, clean_db: Database, fake_x: FakeX
) -> None:
    fake_x.bearer = "not-the-configured-token"  # X answers 401 to the service's bearer token
    service = spawn(service_env(clean_db.url, fake_x))
    await service.wait_live()
    populate, bearer = "/api/v1/populate", {"Authorization": "Bearer wrong-token-value"}
    requests = {  # name: method, path, headers, the status expected
        "no token": ("POST", populate, {}, 401),
        "wrong token": ("POST", populate, bearer, 401),
        "token as Basic": ("POST", populate, {"Authorization": f"Basic {API_TOKEN}"}, 401),
        "token alone": ("POST", populate, {"Authorization": API_TOKEN}, 401),
        "X rejects": ("POST", populate, AUTH, 502),
        "health": ("GET", "/api/health", {}, 500),
        "bad parameter": ("GET", "/api/v1/users?limit=x", {}, 400),
        "no route": ("GET", "/nowhere", {}, 404),
        "metrics": ("GET", "/metrics", {}, 200),
    }
    answers: dict[str, tuple[int, str]] = {}
    async with aiohttp.ClientSession() as session:
        for name, (method, path, headers, _) in requests.items():
            status, _, text, _ = await fetch(session, method, service.url(path), headers=headers)
            answers[name] = (status, text)

    # A header line too long for aiohttp's parser, the token at its start: aiohttp logs the
    # start of the line.
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    writer.write(
        f"GET /live HTTP/1.1\r\nHost: x\r\nX-Pad: {API_TOKEN}{'a' * 9000}\r\n\r\n".encode()
    )
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.0 400")
    writer.close()

    service.send(signal.SIGTERM)
    assert await service.wait_exit(30) == 0

    assert {name: status for name, (status, _) in answers.items()} == {
        name: expected for name, (*_, expected) in requests.items()
    }
    assert "x_api_credentials_rejected" in answers["X rejects"][1]
    for name, (_, text) in answers.items():
        assert not leaks(text), name
    logs = service.logs()
    # The paths ran and logged: the X API's 401, and the parser's complaint, which quoted the
    # token and was redacted.
    assert "x_api_credentials_rejected" in logs
    assert "Got more than 8190 bytes when reading: b'[REDACTED]aaa" in logs
    assert not leaks(logs)


@pytest.mark.slow
async def test_an_unreachable_database_at_startup_is_reported_without_its_password(
    spawn: Spawn, fake_x: FakeX
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"  # nothing listens there
    service = spawn(service_env(url, fake_x), migrate=True)

    assert await service.wait_exit(60) != 0
    output = service.logs()
    assert "Connection refused" in output
    assert DB_PASSWORD not in output
    assert not leaks(output)
