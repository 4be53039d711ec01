"""/api/health, /live and /ready: dependency checks, the cached X probe, and a database outage."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY
from pytest_aiohttp import AiohttpClient

from service import db
from service.app import create_app
from service.config import Secret, XCredentials
from testing.fake_x import (
    BEARER,
    FORBIDDEN,
    HTML_503,
    RATE_LIMITED,
    UNAUTHORIZED,
    USAGE_CAPPED,
    FakeX,
)
from testing.waiting import eventually
from tests import dataset
from tests.calls import Answer, App, request
from tests.database import Database, OwnServer
from tests.fake_time import FakeTime
from tests.settings import make_settings

Client = TestClient[Any, Any]
PROBE = "#devops -#devops"  # the first tag minus itself: matches no post, reads (and bills) none


async def get_within(client: Client, path: str, bound: float) -> Answer:
    """A GET that must answer within `bound` seconds: a bound derived from DB_TIMEOUT."""
    try:
        async with asyncio.timeout(bound):
            return await request(client, "GET", path)
    except TimeoutError:
        raise AssertionError(f"GET {path} did not answer within {bound:g} s") from None


async def test_health_is_ok_probes_every_time_and_reports_the_last_populate(
    client: Client, fake_x: FakeX
) -> None:
    dataset.load(fake_x)  # #devops has posts; the probe must not read them

    status, body, _ = await request(client, "GET", "/api/health")

    assert status == 200, body
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["database"]["latency_ms"] >= 0
    latency = body["x_api"]["latency_ms"]
    assert latency >= 0
    assert body["x_api"] == {
        "ok": True,
        "source": "x",
        "latency_ms": latency,
        "checked_seconds_ago": 0,
    }
    assert body["last_populate"] is None
    [probe] = fake_x.searches()
    assert probe.query == PROBE
    assert probe.params["max_results"] == "10"
    assert probe.authorization == f"Bearer {BEARER}"
    assert "expansions" not in probe.params  # nothing is asked for but the (empty) result

    assert (await client.post("/api/v1/populate")).status == 201
    status, body, _ = await request(client, "GET", "/api/health")

    assert status == 200, body
    last = body["last_populate"]
    assert last["status"] == "succeeded"
    assert last["source"] == "x"
    assert isinstance(last["run_id"], int)
    assert last["finished_at"] >= last["started_at"]
    # The fixture's TTL is 0: the second check probed X again (what the cache changes).
    assert [r.query for r in fake_x.searches()].count(PROBE) == 2


@pytest.mark.parametrize(
    ("status", "reply", "content_type", "code"),
    [
        pytest.param(401, UNAUTHORIZED, None, "x_api_credentials_rejected", id="401"),
        pytest.param(403, FORBIDDEN, None, "x_api_access_forbidden", id="403"),
        pytest.param(429, RATE_LIMITED, None, "x_api_rate_limited", id="429"),
        pytest.param(429, USAGE_CAPPED, None, "x_api_usage_capped", id="429-usage-cap"),
        pytest.param(503, HTML_503, "text/html", "x_api_unavailable", id="html-503"),
    ],
)
async def test_health_is_500_when_the_x_probe_fails(
    app: App,
    fake_x: FakeX,
    fake_time: FakeTime,
    status: int,
    reply: Any,
    content_type: str | None,
    code: str,
) -> None:
    # Reset three seconds away: a populate would wait for it, the probe must not.
    headers = {"x-rate-limit-reset": str(int(fake_time.now) + 3)}
    kind = {"content_type": content_type} if content_type else {}
    fake_x.fail(status, reply, headers=headers, times=5, **kind)
    client = await app(clock=fake_time.as_clock())

    answer, body, _ = await request(client, "GET", "/api/health")

    assert answer == 500, body
    assert body["status"] == "degraded"
    assert body["database"]["ok"] is True
    assert body["x_api"]["ok"] is False
    assert body["x_api"]["source"] == "x"
    assert body["x_api"]["error"] == code
    assert body["x_api"]["message"]
    assert len(fake_x.searches()) == 1  # a probe is never retried
    assert fake_time.sleeps == []


async def test_health_with_a_wrong_bearer_token_is_500(app: App) -> None:
    wrong = "not-the-bearer-token-XYZXYZXYZ"
    client = await app(credentials=XCredentials(bearer_token=Secret(wrong)))

    status, body, _ = await request(client, "GET", "/api/health")

    assert status == 500, body
    assert body["x_api"] == {
        "ok": False,
        "source": "x",
        "error": "x_api_credentials_rejected",
        "message": body["x_api"]["message"],
        "checked_seconds_ago": 0,
    }
    assert wrong not in str(body)


async def test_health_shares_one_in_flight_probe_and_caches_it_for_the_ttl(
    app: App, fake_x: FakeX
) -> None:
    client = await app(health_cache_ttl=30)
    fake_x.pause()  # the first probe stays in flight until all four requests are in

    checks = [asyncio.create_task(request(client, "GET", "/api/health")) for _ in range(4)]
    # The metric counts a request as it enters the app, and each goes on to the shared check
    # without waiting on anything; the first one's probe is a request of its own, through
    # tweepy to the fake, which records it only when it arrives. Four in the app is no proof
    # of that: wait for both.
    await eventually(
        lambda: REGISTRY.get_sample_value("http_requests_in_progress") == 4 and fake_x.searches(),
        within=30,
        what="four health requests in progress while the fake holds the probe",
    )
    fake_x.resume()
    results = await asyncio.gather(*checks)

    assert [status for status, _, _ in results] == [200] * 4
    assert len(fake_x.searches()) == 1
    assert 0 in [body["x_api"]["checked_seconds_ago"] for _, body, _ in results]

    await asyncio.sleep(0.15)
    fake_x.fail(401, UNAUTHORIZED)  # would fail the probe, if X were asked again
    status, body, _ = await request(client, "GET", "/api/health")

    assert status == 200, body
    assert [r.query for r in fake_x.searches()] == [PROBE]
    assert body["x_api"]["checked_seconds_ago"] >= 0.1
    assert body["x_api"]["ok"] is True


async def test_health_with_the_sample_source_is_ok_offline_and_500_without_the_sample(
    aiohttp_client: AiohttpClient, clean_db: Database, tmp_path: Path
) -> None:
    # No credentials and an X base URL nothing listens on: the sample needs neither.
    settings = make_settings(
        clean_db, None, tweet_source="sample", credentials=XCredentials(), tags=("#devops",)
    )
    offline = await aiohttp_client(create_app(settings))
    missing = await aiohttp_client(create_app(dataclasses.replace(settings, sample_dir=tmp_path)))

    status, body, _ = await request(offline, "GET", "/api/health")

    assert status == 200, body
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["x_api"] == {
        "ok": True,
        "source": "sample",
        "offline": True,
        "checked_seconds_ago": 0,
    }

    status, body, _ = await request(missing, "GET", "/api/health")

    assert status == 500, body
    assert body["x_api"]["ok"] is False
    assert body["x_api"]["source"] == "sample"
    assert str(tmp_path) in body["x_api"]["error"]


async def test_live_and_ready_are_ok_and_never_ask_x(client: Client, fake_x: FakeX) -> None:
    fake_x.fail(401, UNAUTHORIZED, times=5)

    live = await request(client, "GET", "/live")
    ready = await request(client, "GET", "/ready")

    assert live[:2] == (200, {"status": "ok"})
    assert ready[:2] == (200, {"status": "ok"})
    assert fake_x.searches() == []


# -- a database outage, on a PostgreSQL server of its own --------------------------------------


@pytest.fixture
def outage(own_postgres: OwnServer) -> OwnServer:
    db.upgrade(own_postgres.url)
    return own_postgres


async def healthy(client: Client) -> Answer:
    """The first 200 of /api/health, once the database is back."""

    async def check() -> Answer | None:
        answer = await request(client, "GET", "/api/health")
        return answer if answer.status == 200 else None

    answer: Answer | None = await eventually(check, within=60, what="/api/health answers 200 again")
    assert answer is not None
    return answer


async def test_health_follows_a_database_outage_and_recovers_without_restart(
    aiohttp_client: AiohttpClient, fake_x: FakeX, outage: OwnServer
) -> None:
    # A stopped server refuses connections at once: nothing to wait for. A wait would last
    # DB_TIMEOUT, long enough here that no busy machine comes near it otherwise.
    timeout = 10.0
    settings = make_settings(Database(url=outage.url), fake_x, db_timeout=timeout)
    client = await aiohttp_client(create_app(settings))
    dataset.load(fake_x)
    assert (await client.post("/api/v1/populate")).status == 201
    status, body, _ = await request(client, "GET", "/api/health")
    assert status == 200, body

    await asyncio.to_thread(outage.stop)
    try:
        status, body, _ = await get_within(client, "/api/health", timeout)
        assert status == 500, body
        assert body["status"] == "degraded"
        assert body["database"] == {"ok": False, "error": "unavailable"}
        assert body["x_api"]["ok"] is True
        assert "last_populate" not in body

        status, body, _ = await get_within(client, "/ready", timeout)
        assert (status, body) == (503, {"status": "unavailable"})

        for path in ("/api/v1/users", "/api/v1/hour", "/api/v1/tags"):
            response = await client.get(path)
            body = await response.json()
            assert response.status == 503, (path, body)
            assert response.headers["Content-Type"].startswith("application/json")
            assert body["error"]["code"] == "database_unavailable"
            assert outage.url not in str(body)

        response = await client.post("/api/v1/populate")
        body = await response.json()
        assert response.status == 503, body
        assert body["error"]["code"] == "database_unavailable"

        status, body, _ = await request(client, "GET", "/live")
        assert (status, body) == (200, {"status": "ok"})
    finally:
        await asyncio.to_thread(outage.start)

    # The same app, not restarted: the pool reconnects on its own.
    status, body, _ = await healthy(client)
    assert body["database"]["ok"] is True
    assert body["last_populate"]["status"] == "succeeded"
    assert (await request(client, "GET", "/ready"))[:2] == (200, {"status": "ok"})
    status, users, _ = await request(client, "GET", "/api/v1/users")
    assert (status, users) == (200, dataset.EXPECTED_USERS)
    populated = await client.post("/api/v1/populate")
    assert populated.status == 201, await populated.text()


async def test_health_answers_in_time_while_the_database_hangs(
    aiohttp_client: AiohttpClient, fake_x: FakeX, outage: OwnServer
) -> None:
    timeout = 2.0
    # A read waits at most DB_TIMEOUT for a connection and DB_TIMEOUT for a statement; a frozen
    # server answers neither. So 2 x DB_TIMEOUT, plus a wide margin for a busy machine.
    bound = 2 * timeout + 4.0
    settings = make_settings(Database(url=outage.url), fake_x, db_timeout=timeout)
    client = await aiohttp_client(create_app(settings))
    assert (await request(client, "GET", "/api/health"))[0] == 200

    pids = await asyncio.to_thread(outage.freeze)
    try:
        status, body, _ = await get_within(client, "/api/health", bound)
        assert status == 500, body
        assert body["database"] == {"ok": False, "error": "timeout"}
        assert body["x_api"]["ok"] is True

        status, body, _ = await get_within(client, "/ready", bound)
        assert (status, body) == (503, {"status": "unavailable"})

        status, body, _ = await get_within(client, "/api/v1/users", bound)
        assert status == 503, body
        assert body["error"]["code"] == "database_unavailable"
    finally:
        outage.thaw(pids)

    await healthy(client)
    assert (await request(client, "GET", "/api/v1/users"))[:2] == (200, [])
    await client.close()  # closing the pool before the server stops keeps its shutdown quick


async def test_health_counts_a_400_to_the_probe_as_reachable(client: Client, fake_x: FakeX) -> None:
    # Credentials are checked before parameters: a 400 proves reachability and good credentials.
    fake_x.fail(400, {"title": "Invalid Request", "detail": "odd query"})

    status, body, _ = await request(client, "GET", "/api/health")

    assert status == 200, body
    assert body["x_api"]["ok"] is True
    assert len(fake_x.searches()) == 1
