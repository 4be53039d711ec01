"""Every X API failure mode, through the real tweepy client against the fake, via POST populate.

Each failing populate must answer with the documented status and error code, write nothing
(also when an earlier tag had already been fetched), record the run as failed with its reason,
and never echo the bearer token.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from service.app import create_app
from service.clock import SYSTEM
from service.config import Secret, Settings, XCredentials
from service.testing.fake_x import (
    BEARER,
    FORBIDDEN,
    HTML_503,
    RATE_LIMITED,
    UNAUTHORIZED,
    USAGE_CAPPED,
    FakeX,
    place,
    tweet,
    user,
)
from service.testing.loopback import free_port
from tests import dataset
from tests.calls import Answer, delta, populate, scrape
from tests.database import Database
from tests.fake_time import FakeTime

Client = TestClient[Any, Any]
JSON = "application/json"
NOTHING = {"tweets": 0, "tweet_tags": 0, "users": 0, "places": 0}
EVERYTHING = {"tweets": 7, "tweet_tags": 8, "users": 5, "places": 3}
LEGACY_RATE_LIMITED = {"errors": [{"code": 88, "message": "Rate limit exceeded"}]}
INVALID_REQUEST = {
    "errors": [{"parameters": {"query": ["#devops"]}, "message": "There were errors processing"}],
    "title": "Invalid Request",
    "detail": "One or more parameters to your request was invalid.",
    "type": "https://api.twitter.com/2/problems/invalid-request",
}
SERVER_ERROR = {"title": "Internal Server Error", "type": "about:blank", "status": 500}


def app_with(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    *,
    fake_time: FakeTime | None = None,
    **overrides: Any,
) -> Any:
    clock = fake_time.as_clock() if fake_time else SYSTEM
    return aiohttp_client(create_app(dataclasses.replace(settings, **overrides), clock=clock))


def assert_failed(
    answer: Answer, db: Database, *, status: int, code: str, run_code: str | None = None
) -> dict[str, Any]:
    """The populate failed with `status`/`code`, wrote nothing and was audited as failed
    (the audit names `run_code`, by default the same code)."""
    assert answer.status == status, answer.body
    assert set(answer.body) == {"error"}, answer.body
    error = answer.body["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str)
    assert error["message"]
    assert set(error) <= {"code", "message", "details"}
    assert answer.headers["Content-Type"].startswith("application/json")
    assert db.counts() == NOTHING
    runs = db.execute("SELECT status, error, finished_at IS NOT NULL FROM populate_runs")
    assert len(runs) == 1, runs
    run_status, run_error, finished = runs[0]
    assert run_status == "failed"
    assert finished
    assert run_error.startswith(f"{run_code or code}: "), run_error
    assert BEARER not in run_error
    return error  # type: ignore[no-any-return]


def assert_stored_everything(answer: Answer, db: Database) -> None:
    assert answer.status == 201, answer.body
    assert answer.body["per_tag"] == {"#devops": 5, "#sre": 3}
    assert answer.body["tweets_new"] == 7
    assert db.counts() == EVERYTHING
    assert db.execute("SELECT status, error FROM populate_runs") == [("succeeded", None)]


def assert_stored_everything_after(answer: Answer, db: Database) -> None:
    """A populate succeeded after one that failed."""
    assert answer.status == 201, answer.body
    assert db.counts() == EVERYTHING
    runs = db.execute("SELECT status FROM populate_runs ORDER BY id")
    assert runs == [("failed",), ("succeeded",)]


def page(*tweets: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A raw search response body, for payloads the fake would not build by itself."""
    body: dict[str, Any] = {"data": list(tweets), "meta": {"result_count": len(tweets)}}
    body.update(extra)
    return body


# -- credentials and access --------------------------------------------------------------------


async def test_populate_x_401_is_credentials_rejected(
    aiohttp_client: AiohttpClient, settings: Settings, fake_x: FakeX, clean_db: Database
) -> None:
    dataset.load(fake_x)
    wrong = "wrong-bearer-BBBBBBBBBBBBBBBBBBBB"  # the fake answers 401 to any other token
    client = await app_with(
        aiohttp_client, settings, credentials=XCredentials(bearer_token=Secret(wrong))
    )
    before = await scrape(client)

    answer = await populate(client)

    error = assert_failed(answer, clean_db, status=502, code="x_api_credentials_rejected")
    assert "401" in error["message"]
    assert wrong not in json.dumps(answer.body)
    assert wrong not in clean_db.scalar("SELECT error FROM populate_runs")
    assert {r.authorization for r in fake_x.searches()} == {f"Bearer {wrong}"}
    after = await scrape(client)
    assert delta(before, after, "x_api_requests_total", status="401") >= 1
    assert delta(before, after, "populate_runs_total", outcome="failed") == 1


async def test_populate_x_403_client_not_enrolled_names_the_reason(
    client: Client, fake_x: FakeX, clean_db: Database
) -> None:
    dataset.load(fake_x)
    fake_x.fail(403, FORBIDDEN, times=2)

    answer = await populate(client)

    error = assert_failed(answer, clean_db, status=502, code="x_api_access_forbidden")
    assert "client-not-enrolled" in error["message"]
    assert "403" in error["message"]


async def test_populate_x_400_is_bad_request(
    client: Client, fake_x: FakeX, clean_db: Database
) -> None:
    dataset.load(fake_x)
    fake_x.fail(400, INVALID_REQUEST, query="#sre")

    answer = await populate(client)

    error = assert_failed(answer, clean_db, status=502, code="x_api_bad_request")
    assert "There were errors processing" in error["message"]
    assert len(fake_x.searches("#sre")) == 1  # a bad request is not retried


async def test_populate_failure_is_recorded_with_a_pool_of_one(
    aiohttp_client: AiohttpClient, settings: Settings, fake_x: FakeX, clean_db: Database
) -> None:
    # The run holds its connection (and the populate lock) throughout: with DB_POOL_SIZE=1
    # there is no second connection to record the failure on.
    dataset.load(fake_x)
    fake_x.fail(401, UNAUTHORIZED, query="#devops")
    db_timeout = 20.0
    client = await app_with(aiohttp_client, settings, db_pool_size=1, db_timeout=db_timeout)

    started = time.monotonic()
    answer = await populate(client)
    took = time.monotonic() - started

    assert_failed(answer, clean_db, status=502, code="x_api_credentials_rejected")
    # A wait for a connection that cannot free up lasts DB_TIMEOUT; the run did not wait.
    assert took < db_timeout
    # The lock and the connection are released: the next run proceeds.
    assert_stored_everything_after(await populate(client), clean_db)


# -- rate limits and usage caps ----------------------------------------------------------------

RATE_LIMIT_BODIES = [
    pytest.param(RATE_LIMITED, "application/problem+json", id="problem"),
    pytest.param(LEGACY_RATE_LIMITED, JSON, id="legacy-code-88"),
]


@pytest.mark.parametrize(("body", "content_type"), RATE_LIMIT_BODIES)
async def test_populate_x_429_with_a_near_reset_waits_then_succeeds(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    fake_x: FakeX,
    clean_db: Database,
    fake_time: FakeTime,
    body: dict[str, Any],
    content_type: str,
) -> None:
    dataset.load(fake_x)
    client = await app_with(
        aiohttp_client, settings, fake_time=fake_time, x_rate_limit_max_wait=10.0
    )
    before = await scrape(client)
    reset = int(fake_time.now) + 2
    fake_x.fail(
        429,
        body,
        content_type=content_type,
        headers={"x-rate-limit-reset": str(reset), "x-rate-limit-remaining": "0"},
        query="#devops",
    )

    answer = await populate(client)

    assert_stored_everything(answer, clean_db)
    # It slept until the window reset (reset - now, a 1 s margin, up to 1 s of jitter), then
    # asked again.
    assert len(fake_time.sleeps) == 1
    assert 3 <= fake_time.sleeps[0] <= 4
    assert fake_time.now >= reset
    assert len(fake_x.searches("#devops")) == 2
    after = await scrape(client)
    assert delta(before, after, "x_api_requests_total", status="429") == 1
    assert delta(before, after, "x_api_retries_total", reason="rate_limit") == 1
    assert delta(before, after, "populate_runs_total", outcome="succeeded") == 1


@pytest.mark.parametrize(("body", "content_type"), RATE_LIMIT_BODIES)
async def test_populate_x_429_with_a_far_reset_is_503_with_retry_after(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    fake_x: FakeX,
    clean_db: Database,
    fake_time: FakeTime,
    body: dict[str, Any],
    content_type: str,
) -> None:
    dataset.load(fake_x)
    fake_x.fail(
        429,
        body,
        content_type=content_type,
        headers={"x-rate-limit-reset": str(int(fake_time.now) + 600)},
        query="#sre",
    )
    client = await app_with(
        aiohttp_client, settings, fake_time=fake_time, x_rate_limit_max_wait=10.0
    )
    before = await scrape(client)

    answer = await populate(client)

    error = assert_failed(answer, clean_db, status=503, code="x_api_rate_limited")
    retry_after = int(answer.headers["Retry-After"])
    assert retry_after == 601  # the reset, 600 s away, and the 1 s margin
    assert error["details"] == {"retry_after_seconds": retry_after}
    assert fake_time.sleeps == []  # it did not wait for the window
    assert len(fake_x.searches("#sre")) == 1
    after = await scrape(client)
    assert delta(before, after, "x_api_requests_total", status="429") == 1
    assert delta(before, after, "x_api_retries_total", reason="rate_limit") == 0
    assert delta(before, after, "populate_runs_total", outcome="failed") == 1


async def test_populate_x_usage_cap_fails_at_once_without_waiting(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    fake_x: FakeX,
    clean_db: Database,
    fake_time: FakeTime,
) -> None:
    dataset.load(fake_x)
    # The reset is near enough to wait for, but waiting does not lift a monthly cap.
    fake_x.fail(
        429,
        USAGE_CAPPED,
        headers={"x-rate-limit-reset": str(int(fake_time.now) + 3)},
        query="#devops",
    )
    client = await app_with(
        aiohttp_client, settings, fake_time=fake_time, x_rate_limit_max_wait=10.0
    )
    before = await scrape(client)

    answer = await populate(client)

    error = assert_failed(answer, clean_db, status=503, code="x_api_usage_capped")
    assert "usage cap" in error["message"]
    assert fake_time.sleeps == []  # waiting for the reset would sleep at least 3 s
    assert len(fake_x.searches("#devops")) == 1
    after = await scrape(client)
    assert delta(before, after, "x_api_retries_total", reason="rate_limit") == 0


# -- server errors and broken bodies -----------------------------------------------------------


async def test_populate_x_html_503_once_is_retried_and_succeeds(
    client: Client, fake_x: FakeX, clean_db: Database
) -> None:
    dataset.load(fake_x)
    fake_x.fail(503, HTML_503, content_type="text/html", query="#devops")
    before = await scrape(client)

    answer = await populate(client)

    assert_stored_everything(answer, clean_db)
    assert len(fake_x.searches("#devops")) == 2
    after = await scrape(client)
    assert delta(before, after, "x_api_requests_total", status="503") == 1
    assert delta(before, after, "x_api_retries_total", reason="server_error") == 1


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        pytest.param(503, HTML_503, "text/html", id="html-503"),
        pytest.param(500, SERVER_ERROR, "application/problem+json", id="json-500"),
        pytest.param(502, "Bad Gateway", "text/plain", id="text-502"),
    ],
)
async def test_populate_x_persistent_5xx_is_unavailable_after_bounded_retries(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    fake_x: FakeX,
    clean_db: Database,
    status: int,
    body: Any,
    content_type: str,
) -> None:
    dataset.load(fake_x)
    retries = 2
    fake_x.fail(status, body, content_type=content_type, times=retries + 5, query="#devops")
    client = await app_with(aiohttp_client, settings, x_max_retries=retries)
    before = await scrape(client)

    answer = await populate(client)

    error = assert_failed(answer, clean_db, status=502, code="x_api_unavailable")
    assert f"after {retries + 1} attempts" in error["message"]
    assert f"HTTP {status}" in error["message"]
    assert len(fake_x.searches("#devops")) == retries + 1
    after = await scrape(client)
    assert delta(before, after, "x_api_requests_total", status=str(status)) == retries + 1
    assert delta(before, after, "x_api_retries_total", reason="server_error") == retries
    assert delta(before, after, "populate_runs_total", outcome="failed") == 1


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param('{"data": [{"id": "1860", "text": "cut', JSON, id="truncated-json"),
        pytest.param("<html><body>maintenance</body></html>", "text/html", id="html"),
        pytest.param("", JSON, id="empty"),
        pytest.param(b'{"data": "\xff\xfe"}', JSON, id="not-utf-8"),
        pytest.param("[]", JSON, id="json-array"),
    ],
)
async def test_populate_x_200_with_an_unusable_body_is_bad_response(
    client: Client, fake_x: FakeX, clean_db: Database, body: str | bytes, content_type: str
) -> None:
    dataset.load(fake_x)
    fake_x.fail(200, body, content_type=content_type, query="#sre")

    answer = await populate(client)

    assert_failed(answer, clean_db, status=502, code="x_api_bad_response")
    assert len(fake_x.searches("#sre")) == 1  # retrying a broken 200 would not help


async def test_populate_x_unreachable_is_unavailable(
    aiohttp_client: AiohttpClient, settings: Settings, clean_db: Database
) -> None:
    retries = 2
    client = await app_with(
        aiohttp_client,
        settings,
        x_api_base_url=f"http://127.0.0.1:{free_port()}",
        tags=("#devops",),
        x_max_retries=retries,
    )
    before = await scrape(client)

    answer = await populate(client)

    error = assert_failed(answer, clean_db, status=502, code="x_api_unavailable")
    assert f"after {retries + 1} attempts" in error["message"]
    after = await scrape(client)
    assert delta(before, after, "x_api_requests_total", status="error") == retries + 1
    assert delta(before, after, "x_api_retries_total", reason="network") == retries


async def test_populate_x_too_slow_is_unavailable(
    aiohttp_client: AiohttpClient, settings: Settings, fake_x: FakeX, clean_db: Database
) -> None:
    dataset.load(fake_x)
    fake_x.pause()  # X never answers: only the timeout can end each search
    client = await app_with(
        aiohttp_client, settings, tags=("#devops",), x_timeout=0.2, x_max_retries=1
    )
    before = await scrape(client)

    answer = await populate(client)

    error = assert_failed(answer, clean_db, status=502, code="x_api_unavailable")
    assert error["message"].endswith("after 2 attempts: timeout")
    assert len(fake_x.searches("#devops")) == 2
    after = await scrape(client)
    assert delta(before, after, "x_api_requests_total", status="error") == 2
    assert delta(before, after, "x_api_retries_total", reason="network") == 1


# -- payloads: hostile ones fail the run, odd but valid ones are stored ------------------------

HOSTILE = {
    "non-numeric-id": tweet(2001, 501, "2026-11-20T12:00:00.000Z") | {"id": "12abc"},
    "missing-created-at": {
        k: v for k, v in tweet(2002, 501, "2026-11-20T12:00:00.000Z").items() if k != "created_at"
    },
    "unreadable-created-at": tweet(2003, 501, "yesterday at noon"),
    # Valid ISO-8601 whose UTC time falls outside what a datetime can hold.
    "created-at-before-year-1-utc": tweet(2007, 501, "0001-01-01T00:00:00+05:00"),
    "created-at-after-year-9999-utc": tweet(2008, 501, "9999-12-31T23:59:59-05:00"),
    "negative-id": tweet(2004, 501, "2026-11-20T12:00:00.000Z") | {"id": "-5"},
    "id-beyond-bigint": tweet(2005, 501, "2026-11-20T12:00:00.000Z") | {"id": str(2**63)},
    "missing-author": {
        k: v for k, v in tweet(2006, 501, "2026-11-20T12:00:00.000Z").items() if k != "author_id"
    },
}


@pytest.mark.parametrize("bad", list(HOSTILE.values()), ids=list(HOSTILE))
async def test_populate_hostile_page_on_the_second_tag_writes_nothing(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    fake_x: FakeX,
    clean_db: Database,
    bad: dict[str, Any],
) -> None:
    dataset.load(fake_x)
    good = tweet(2010, 501, "2026-11-20T12:00:00.000Z", text="fine #sre")
    fake_x.fail(200, page(good, bad), content_type=JSON, query="#sre")
    # One search at a time: #devops is fetched completely before #sre answers.
    client = await app_with(aiohttp_client, settings, x_concurrency=1)

    answer = await populate(client)

    assert_failed(answer, clean_db, status=502, code="x_api_bad_response")
    assert [r.query for r in fake_x.searches()] == ["#devops", "#sre"]


async def test_populate_malformed_page_structure_writes_nothing(
    client: Client, fake_x: FakeX, clean_db: Database
) -> None:
    dataset.load(fake_x)
    fake_x.fail(200, {"data": {"id": "1"}, "meta": {}}, content_type=JSON, query="#sre")

    answer = await populate(client)

    error = assert_failed(answer, clean_db, status=502, code="x_api_bad_response")
    assert "'data'" in error["message"]


async def test_populate_ignores_unknown_fields(
    aiohttp_client: AiohttpClient, settings: Settings, fake_x: FakeX, clean_db: Database
) -> None:
    item = tweet(3001, 601, "2026-11-20T12:00:00.000Z", text="new fields #devops")
    item["public_metrics"]["bookmark_count"] = 4
    item["note_tweet"] = {"text": "long"}
    author = user(601, "frank", 42) | {"verified_type": "none", "profile_banner": {"x": 1}}
    body = page(
        item,
        includes={"users": [author], "media": [{"media_key": "3_1"}]},
        matching_scopes=["x"],
    )
    body["meta"]["future"] = True
    fake_x.fail(200, body, content_type=JSON)
    client = await app_with(aiohttp_client, settings, tags=("#devops",))

    answer = await populate(client)

    assert answer.status == 201, answer.body
    assert answer.body["per_tag"] == {"#devops": 1}
    assert clean_db.execute("SELECT id, author_id, text FROM tweets") == [
        (3001, 601, "new fields #devops")
    ]
    assert clean_db.execute("SELECT username, followers_count FROM users") == [("frank", 42)]
    # The raw JSON keeps what X sent, unknown fields included.
    assert clean_db.scalar("SELECT raw->'note_tweet'->>'text' FROM tweets") == "long"


async def test_populate_reads_created_at_without_milliseconds_or_with_an_offset(
    aiohttp_client: AiohttpClient, settings: Settings, fake_x: FakeX, clean_db: Database
) -> None:
    body = page(
        tweet(3011, 601, "2026-11-20T09:00:00Z"),
        tweet(3012, 601, "2026-11-20T09:30:00+00:00"),
        tweet(3013, 601, "2026-11-20T12:45:00.123+02:00"),  # 10:45:00.123 UTC
        includes={"users": [user(601, "frank", 42)]},
    )
    fake_x.fail(200, body, content_type=JSON)
    client = await app_with(aiohttp_client, settings, tags=("#devops",))

    answer = await populate(client)

    assert answer.status == 201, answer.body
    stored = clean_db.execute(
        "SELECT id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')"
        " FROM tweets ORDER BY id"
    )
    assert stored == [
        (3011, "2026-11-20 09:00:00.000"),
        (3012, "2026-11-20 09:30:00.000"),
        (3013, "2026-11-20 10:45:00.123"),
    ]
    hours = await (await client.get("/api/v1/hour")).json()
    assert hours == [
        {"date": "2026-11-20T09:00:00Z", "count": 2},
        {"date": "2026-11-20T10:00:00Z", "count": 1},
    ]


async def test_populate_strips_nul_bytes(
    aiohttp_client: AiohttpClient, settings: Settings, fake_x: FakeX, clean_db: Database
) -> None:
    body = page(
        tweet(3021, 601, "2026-11-20T12:00:00.000Z", text="nul\x00inside #devops\x00"),
        includes={"users": [user(601, "fr\x00ank", 42, name="Frank\x00")]},
    )
    fake_x.fail(200, body, content_type=JSON)
    client = await app_with(aiohttp_client, settings, tags=("#devops",))

    answer = await populate(client)

    assert answer.status == 201, answer.body
    assert clean_db.execute("SELECT text, raw->>'text' FROM tweets") == [
        ("nulinside #devops", "nulinside #devops")
    ]
    assert clean_db.execute("SELECT username, name FROM users") == [("frank", "Frank")]


async def test_populate_keeps_one_copy_of_an_id_repeated_in_a_page(
    aiohttp_client: AiohttpClient, settings: Settings, fake_x: FakeX, clean_db: Database
) -> None:
    first = tweet(3031, 601, "2026-11-20T12:00:00.000Z", text="first copy #devops")
    again = tweet(3031, 601, "2026-11-20T12:00:00.000Z", text="second copy #devops")
    other = tweet(3030, 601, "2026-11-20T11:00:00.000Z")
    author = user(601, "frank", 42)
    body = page(first, again, other, includes={"users": [author, author]})
    fake_x.fail(200, body, content_type=JSON)
    client = await app_with(aiohttp_client, settings, tags=("#devops",))

    answer = await populate(client)

    assert answer.status == 201, answer.body
    assert answer.body["per_tag"] == {"#devops": 2}
    assert answer.body["tweets_new"] == 2
    assert clean_db.execute("SELECT id, text FROM tweets ORDER BY id") == [
        (3030, "hello #devops"),
        (3031, "first copy #devops"),
    ]
    assert clean_db.counts() == {"tweets": 2, "tweet_tags": 2, "users": 1, "places": 0}


async def test_populate_accepts_a_page_without_includes(
    aiohttp_client: AiohttpClient, settings: Settings, fake_x: FakeX, clean_db: Database
) -> None:
    body = page(
        tweet(3041, 601, "2026-11-20T12:00:00.000Z", place_id="0a0b0c0d0e0f0009"),
        errors=[{"title": "Not Found Error", "resource_type": "user", "value": "601"}],
    )
    fake_x.fail(200, body, content_type=JSON)
    client = await app_with(aiohttp_client, settings, tags=("#devops",))

    answer = await populate(client)

    assert answer.status == 201, answer.body
    assert clean_db.counts() == {"tweets": 1, "tweet_tags": 1, "users": 0, "places": 0}
    tags = await (await client.get("/api/v1/tags")).json()
    assert tags == [{"tag": "#devops", "language": "en", "country": None, "count": 1}]


async def test_populate_keeps_a_place_only_when_its_tweet_is_kept(
    aiohttp_client: AiohttpClient, settings: Settings, fake_x: FakeX, clean_db: Database
) -> None:
    # Extra includes (a place and a user no kept tweet refers to) are not stored.
    body = page(
        tweet(3051, 601, "2026-11-20T12:00:00.000Z", place_id="0a0b0c0d0e0f0001"),
        includes={
            "users": [user(601, "frank", 42), user(602, "stray", 1)],
            "places": [place("0a0b0c0d0e0f0001", "br"), place("0a0b0c0d0e0f0009", "JP")],
        },
    )
    fake_x.fail(200, body, content_type=JSON)
    client = await app_with(aiohttp_client, settings, tags=("#devops",))

    answer = await populate(client)

    assert answer.status == 201, answer.body
    assert clean_db.execute("SELECT id, country_code FROM places") == [("0a0b0c0d0e0f0001", "BR")]
    assert clean_db.execute("SELECT username FROM users") == [("frank",)]


# -- a failure after X answered: the store step -------------------------------------------------


@pytest.fixture
def failing_store(clean_db: Database) -> Iterator[Database]:
    """A trigger that makes the store fail half-way: users, places and tweets are already
    inserted in the run's transaction when the tags of #sre are."""
    clean_db.execute(
        """
        CREATE FUNCTION test_refuse_sre() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.tag = '#sre' THEN RAISE EXCEPTION 'refusing #sre'; END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER test_refuse_sre BEFORE INSERT ON tweet_tags
          FOR EACH ROW EXECUTE FUNCTION test_refuse_sre();
        """
    )
    try:
        yield clean_db
    finally:
        clean_db.execute(
            "DROP TRIGGER IF EXISTS test_refuse_sre ON tweet_tags;"
            " DROP FUNCTION IF EXISTS test_refuse_sre()"
        )


@pytest.mark.parametrize("pool_size", [1, 10])
async def test_populate_failing_store_writes_nothing(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    fake_x: FakeX,
    failing_store: Database,
    pool_size: int,
) -> None:
    dataset.load(fake_x)
    db_timeout = 20.0
    client = await app_with(aiohttp_client, settings, db_pool_size=pool_size, db_timeout=db_timeout)

    started = time.monotonic()
    answer = await populate(client)
    took = time.monotonic() - started

    # Not a database outage: an unexpected database error, reported without internals.
    error = assert_failed(
        answer, failing_store, status=500, code="internal_error", run_code="database_error"
    )
    assert "refusing" not in error["message"]
    # Recording the failure waited for no connection: such a wait lasts DB_TIMEOUT.
    assert took < db_timeout
    assert failing_store.scalar("SELECT error FROM populate_runs") == (
        "database_error: P0001 RaiseException"
    )
    for path in ("/api/v1/users", "/api/v1/hour", "/api/v1/tags"):
        assert await (await client.get(path)).json() == [], path


# -- metrics across a sequence of failures -----------------------------------------------------


async def test_populate_failures_are_counted_in_metrics(
    aiohttp_client: AiohttpClient, settings: Settings, fake_x: FakeX, clean_db: Database
) -> None:
    dataset.load(fake_x)
    client = await app_with(
        aiohttp_client, settings, tags=("#devops",), x_max_retries=1, x_rate_limit_max_wait=10.0
    )
    before = await scrape(client)

    fake_x.fail(401, UNAUTHORIZED)
    assert (await populate(client)).status == 502
    fake_x.fail(429, RATE_LIMITED, headers={"x-rate-limit-reset": str(int(time.time()) + 600)})
    assert (await populate(client)).status == 503
    fake_x.fail(429, USAGE_CAPPED)
    assert (await populate(client)).status == 503
    fake_x.fail(503, HTML_503, content_type="text/html", times=2)
    assert (await populate(client)).status == 502
    assert (await populate(client)).status == 201

    after = await scrape(client)
    assert delta(before, after, "x_api_requests_total", status="401") == 1
    assert delta(before, after, "x_api_requests_total", status="429") == 2
    assert delta(before, after, "x_api_requests_total", status="503") == 2
    assert delta(before, after, "x_api_requests_total", status="200") == 1
    assert delta(before, after, "x_api_retries_total", reason="server_error") == 1
    assert delta(before, after, "populate_runs_total", outcome="failed") == 4
    assert delta(before, after, "populate_runs_total", outcome="succeeded") == 1
    assert delta(before, after, "populate_duration_seconds_count", outcome="failed") == 4
    assert after[("x_api_rate_limit_limit", frozenset())] == 450
    runs = clean_db.execute(
        "SELECT status, split_part(error, ':', 1) FROM populate_runs ORDER BY id"
    )
    assert runs == [
        ("failed", "x_api_credentials_rejected"),
        ("failed", "x_api_rate_limited"),
        ("failed", "x_api_usage_capped"),
        ("failed", "x_api_unavailable"),
        ("succeeded", None),
    ]


# --- an edge proxy's HTML error page means what X's own JSON answer with that status means -------


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, "x_api_credentials_rejected"), (403, "x_api_access_forbidden")],
)
async def test_populate_x_html_auth_errors_keep_their_meaning(
    client: Client, fake_x: FakeX, clean_db: Database, status: int, code: str
) -> None:
    dataset.load(fake_x)
    fake_x.fail(status, f"<html><body>{status}</body></html>", content_type="text/html")

    answer = await populate(client)

    assert_failed(answer, clean_db, status=502, code=code)


async def test_populate_x_html_429_waits_for_the_reset_then_succeeds(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    fake_x: FakeX,
    clean_db: Database,
    fake_time: FakeTime,
) -> None:
    dataset.load(fake_x)
    fake_x.fail(
        429,
        "<html><body>Too Many Requests</body></html>",
        content_type="text/html",
        headers={"x-rate-limit-reset": str(int(fake_time.now) + 1)},
        query="#sre",
    )
    client = await app_with(
        aiohttp_client, settings, fake_time=fake_time, x_rate_limit_max_wait=10.0
    )

    answer = await populate(client)

    assert_stored_everything(answer, clean_db)
    assert len(fake_x.searches("#sre")) == 2
    assert len(fake_time.sleeps) == 1
    assert 2 <= fake_time.sleeps[0] <= 3  # the reset 1 s away, the margin, the jitter


async def test_populate_x_html_429_with_a_far_reset_is_503_with_retry_after(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    fake_x: FakeX,
    clean_db: Database,
    fake_time: FakeTime,
) -> None:
    dataset.load(fake_x)
    fake_x.fail(
        429,
        "<html><body>Too Many Requests</body></html>",
        content_type="text/html",
        headers={"x-rate-limit-reset": str(int(fake_time.now) + 600)},
    )
    client = await app_with(aiohttp_client, settings)

    answer = await populate(client)

    assert_failed(answer, clean_db, status=503, code="x_api_rate_limited")
    assert int(answer.headers["Retry-After"]) == 601
    assert fake_time.sleeps == []
