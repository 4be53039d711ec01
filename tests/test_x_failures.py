"""Every X API failure mode, through the real tweepy client against the fake, via POST populate.

Each failing populate must answer with the documented status and error code, write nothing
(also when an earlier tag had already been fetched), record the run as failed with its reason,
and never echo the bearer token.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from service.config import Secret, XCredentials
from testing.fake_x import (
    BEARER,
    FORBIDDEN,
    HTML_503,
    RATE_LIMITED,
    USAGE_CAPPED,
    FakeX,
    place,
    tweet,
    user,
)
from testing.loopback import free_port
from tests import dataset
from tests.calls import Answer, App, Client, assert_error, delta, populate, scrape
from tests.database import Database
from tests.fake_time import FakeTime

JSON = "application/json"
PROBLEM = "application/problem+json"
LEGACY_RATE_LIMITED = {"errors": [{"code": 88, "message": "Rate limit exceeded"}]}
INVALID_REQUEST = {
    "errors": [{"parameters": {"query": ["#devops"]}, "message": "There were errors processing"}],
    "title": "Invalid Request",
    "detail": "One or more parameters to your request was invalid.",
    "type": "https://api.twitter.com/2/problems/invalid-request",
}
SERVER_ERROR = {"title": "Internal Server Error", "type": "about:blank", "status": 500}


def assert_failed(
    answer: Answer, db: Database, *, status: int, code: str, run_code: str | None = None
) -> dict[str, Any]:
    """The populate failed with `status`/`code`, wrote nothing and was audited as failed
    (the audit names `run_code`, by default the same code)."""
    assert answer.status == status, answer.body
    assert_error(answer.body, code)
    error = answer.body["error"]
    assert answer.headers["Content-Type"].startswith("application/json")
    assert db.counts() == dataset.NOTHING
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
    assert db.counts() == dataset.STORED
    assert db.execute("SELECT status, error FROM populate_runs") == [("succeeded", None)]


def page(*tweets: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A raw search response body, for payloads the fake would not build by itself."""
    body: dict[str, Any] = {"data": list(tweets), "meta": {"result_count": len(tweets)}}
    body.update(extra)
    return body


# -- credentials and access --------------------------------------------------------------------


async def test_populate_x_401_is_credentials_rejected(
    app: App, fake_x: FakeX, clean_db: Database
) -> None:
    dataset.load(fake_x)
    wrong = "wrong-bearer-BBBBBBBBBBBBBBBBBBBB"  # the fake answers 401 to any other token
    client = await app(credentials=XCredentials(bearer_token=Secret(wrong)))
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


@pytest.mark.parametrize(
    ("status", "body", "content_type", "code", "says"),
    [
        pytest.param(403, FORBIDDEN, PROBLEM, "x_api_access_forbidden", "client-not-enrolled"),
        pytest.param(400, INVALID_REQUEST, PROBLEM, "x_api_bad_request", "errors processing"),
        # An edge proxy's HTML error page means what X's own JSON answer with that status means.
        pytest.param(401, "<html>401</html>", "text/html", "x_api_credentials_rejected", "401"),
        pytest.param(403, "<html>403</html>", "text/html", "x_api_access_forbidden", "403"),
    ],
)
async def test_populate_x_4xx_fails_at_once_naming_the_reason(
    client: Client,
    fake_x: FakeX,
    clean_db: Database,
    status: int,
    body: Any,
    content_type: str,
    code: str,
    says: str,
) -> None:
    dataset.load(fake_x)
    fake_x.fail(status, body, content_type=content_type, query="#sre")

    answer = await populate(client)

    error = assert_failed(answer, clean_db, status=502, code=code)
    assert says in error["message"]
    assert len(fake_x.searches("#sre")) == 1  # not retried


# -- rate limits and usage caps ----------------------------------------------------------------

RATE_LIMIT_BODIES = [
    pytest.param(RATE_LIMITED, PROBLEM, id="problem"),
    pytest.param(LEGACY_RATE_LIMITED, JSON, id="legacy-code-88"),
    pytest.param("<html><body>Too Many Requests</body></html>", "text/html", id="html"),
]


@pytest.mark.parametrize("far", [False, True], ids=["near-reset", "far-reset"])
@pytest.mark.parametrize(("body", "content_type"), RATE_LIMIT_BODIES)
async def test_populate_x_429_waits_for_a_near_reset_and_is_503_for_a_far_one(
    app: App,
    fake_x: FakeX,
    clean_db: Database,
    fake_time: FakeTime,
    body: Any,
    content_type: str,
    far: bool,
) -> None:
    dataset.load(fake_x)
    client = await app(clock=fake_time.as_clock(), x_rate_limit_max_wait=10.0)
    before = await scrape(client)
    reset = int(fake_time.now) + (600 if far else 2)
    fake_x.fail(
        429,
        body,
        content_type=content_type,
        headers={"x-rate-limit-reset": str(reset), "x-rate-limit-remaining": "0"},
        query="#devops",
    )

    answer = await populate(client)

    after = await scrape(client)
    assert delta(before, after, "x_api_requests_total", status="429") == 1
    if far:
        error = assert_failed(answer, clean_db, status=503, code="x_api_rate_limited")
        retry_after = int(answer.headers["Retry-After"])
        assert retry_after == 601  # the reset, 600 s away, and the 1 s margin
        assert error["details"] == {"retry_after_seconds": retry_after}
        assert fake_time.sleeps == []  # it did not wait for the window
        assert len(fake_x.searches("#devops")) == 1
        assert delta(before, after, "x_api_retries_total", reason="rate_limit") == 0
        assert delta(before, after, "populate_runs_total", outcome="failed") == 1
        return
    assert_stored_everything(answer, clean_db)
    # It slept until the window reset (reset - now, a 1 s margin, up to 1 s of jitter), then
    # asked again.
    assert len(fake_time.sleeps) == 1
    assert 3 <= fake_time.sleeps[0] <= 4
    assert fake_time.now >= reset
    assert len(fake_x.searches("#devops")) == 2
    assert delta(before, after, "x_api_requests_total", status="200") == 2
    assert delta(before, after, "x_api_retries_total", reason="rate_limit") == 1
    assert delta(before, after, "populate_runs_total", outcome="succeeded") == 1
    assert after[("x_api_rate_limit_limit", frozenset())] == 450


async def test_populate_x_usage_cap_fails_at_once_without_waiting(
    app: App,
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
    client = await app(clock=fake_time.as_clock(), x_rate_limit_max_wait=10.0)
    before = await scrape(client)

    answer = await populate(client)

    error = assert_failed(answer, clean_db, status=503, code="x_api_usage_capped")
    assert "usage cap" in error["message"]
    assert fake_time.sleeps == []  # waiting for the reset would sleep at least 3 s
    assert len(fake_x.searches("#devops")) == 1
    after = await scrape(client)
    assert delta(before, after, "x_api_retries_total", reason="rate_limit") == 0


# -- server errors and broken bodies -----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "content_type", "times"),
    [
        pytest.param(503, HTML_503, "text/html", 1, id="html-503-once"),
        pytest.param(503, HTML_503, "text/html", 7, id="html-503"),
        pytest.param(500, SERVER_ERROR, PROBLEM, 7, id="json-500"),
        pytest.param(502, "Bad Gateway", "text/plain", 7, id="text-502"),
    ],
)
async def test_populate_x_5xx_is_retried_and_unavailable_after_bounded_retries(
    app: App,
    fake_x: FakeX,
    clean_db: Database,
    status: int,
    body: Any,
    content_type: str,
    times: int,
) -> None:
    dataset.load(fake_x)
    retries = 2
    fake_x.fail(status, body, content_type=content_type, times=times, query="#devops")
    client = await app(x_max_retries=retries)
    before = await scrape(client)

    answer = await populate(client)

    after = await scrape(client)
    if times == 1:  # the retry got the page
        assert_stored_everything(answer, clean_db)
        assert len(fake_x.searches("#devops")) == 2
        assert delta(before, after, "x_api_requests_total", status="503") == 1
        assert delta(before, after, "x_api_retries_total", reason="server_error") == 1
        return
    error = assert_failed(answer, clean_db, status=502, code="x_api_unavailable")
    assert f"after {retries + 1} attempts" in error["message"]
    assert f"HTTP {status}" in error["message"]
    assert len(fake_x.searches("#devops")) == retries + 1
    assert delta(before, after, "x_api_requests_total", status=str(status)) == retries + 1
    assert delta(before, after, "x_api_retries_total", reason="server_error") == retries
    assert delta(before, after, "populate_runs_total", outcome="failed") == 1
    assert delta(before, after, "populate_duration_seconds_count", outcome="failed") == 1


@pytest.mark.parametrize("x_is", ["unreachable", "too-slow"])
async def test_populate_x_unreachable_or_too_slow_is_unavailable(
    app: App,
    fake_x: FakeX,
    clean_db: Database,
    x_is: str,
) -> None:
    dataset.load(fake_x)
    overrides: dict[str, Any] = {"tags": ("#devops",), "x_max_retries": 1}
    if x_is == "unreachable":
        overrides["x_api_base_url"] = f"http://127.0.0.1:{free_port()}"
    else:
        fake_x.pause()  # X never answers: only the timeout can end each search
        overrides["x_timeout"] = 0.2
    client = await app(**overrides)
    before = await scrape(client)

    answer = await populate(client)

    error = assert_failed(answer, clean_db, status=502, code="x_api_unavailable")
    assert "after 2 attempts" in error["message"]
    if x_is == "too-slow":
        assert error["message"].endswith("after 2 attempts: timeout")
        assert len(fake_x.searches("#devops")) == 2
    after = await scrape(client)
    assert delta(before, after, "x_api_requests_total", status="error") == 2
    assert delta(before, after, "x_api_retries_total", reason="network") == 1


# -- payloads: hostile ones fail the run, odd but valid ones are stored ------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param('{"data": [{"id": "1860", "text": "cut', JSON, id="truncated-json"),
        pytest.param("<html><body>maintenance</body></html>", "text/html", id="html"),
        pytest.param("", JSON, id="empty"),
        pytest.param(b'{"data": "\xff\xfe"}', JSON, id="not-utf-8"),
        pytest.param("[]", JSON, id="json-array"),
        # The parser's refusals are tested one by one in tests/test_parse.py; here, that a
        # refused page on the second tag leaves nothing of the first behind.
        pytest.param(page(tweet(2003, 501, "yesterday at noon")), JSON, id="unreadable-created-at"),
        pytest.param(
            page(tweet(2004, 501, "2026-11-20T12:00:00Z") | {"id": "-5"}), JSON, id="bad-id"
        ),
        pytest.param({"data": {"id": "1"}, "meta": {}}, JSON, id="data-not-a-list"),
    ],
)
async def test_populate_x_200_with_an_unusable_body_on_the_second_tag_writes_nothing(
    app: App,
    fake_x: FakeX,
    clean_db: Database,
    body: str | bytes | dict[str, Any],
    content_type: str,
) -> None:
    dataset.load(fake_x)
    fake_x.fail(200, body, content_type=content_type, query="#sre")
    # One search at a time: #devops is fetched completely before #sre answers.
    client = await app(x_concurrency=1)

    answer = await populate(client)

    assert_failed(answer, clean_db, status=502, code="x_api_bad_response")
    # #sre was asked once: retrying a broken 200 would not help.
    assert [r.query for r in fake_x.searches()] == ["#devops", "#sre"]


async def test_populate_stores_odd_but_valid_pages(
    app: App, fake_x: FakeX, clean_db: Database
) -> None:
    # Unknown fields, created_at without milliseconds or with an offset, NUL bytes, an id
    # repeated in the page, an author X could not describe (an `errors` entry), includes no
    # kept tweet refers to, a lower-case country code.
    first = tweet(3001, 601, "2026-11-20T09:00:00Z", text="nul\x00inside #devops\x00")
    first["public_metrics"]["bookmark_count"] = 4
    first["note_tweet"] = {"text": "long"}
    again = tweet(3001, 601, "2026-11-20T09:00:00Z", text="second copy #devops")
    offset = tweet(3002, 601, "2026-11-20T11:30:00.123+02:00", place_id="0a0b0c0d0e0f0001")
    orphan = tweet(3003, 609, "2026-11-20T10:45:00+00:00")
    author = user(601, "fr\x00ank", 42, name="Frank\x00") | {"verified_type": "none"}
    body = page(
        first,
        again,
        offset,
        orphan,
        includes={
            "users": [author, author, user(602, "stray", 1)],
            "places": [place("0a0b0c0d0e0f0001", "br"), place("0a0b0c0d0e0f0009", "JP")],
            "media": [{"media_key": "3_1"}],
        },
        errors=[{"title": "Not Found Error", "resource_type": "user", "value": "609"}],
        matching_scopes=["x"],
    )
    body["meta"]["future"] = True
    fake_x.fail(200, body, content_type=JSON)
    client = await app(tags=("#devops",))

    answer = await populate(client)

    assert answer.status == 201, answer.body
    assert (answer.body["per_tag"], answer.body["tweets_new"]) == ({"#devops": 3}, 3)
    stored = clean_db.execute(
        "SELECT id, author_id, text, raw->>'text',"
        " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')"
        " FROM tweets ORDER BY id"
    )
    assert stored == [
        (3001, 601, "nulinside #devops", "nulinside #devops", "2026-11-20 09:00:00.000"),
        (3002, 601, "hello #devops", "hello #devops", "2026-11-20 09:30:00.123"),
        (3003, 609, "hello #devops", "hello #devops", "2026-11-20 10:45:00.000"),
    ]
    # The raw JSON keeps what X sent, unknown fields included.
    assert (
        clean_db.scalar("SELECT raw->'note_tweet'->>'text' FROM tweets WHERE id = 3001") == "long"
    )
    assert clean_db.execute("SELECT username, name, followers_count FROM users") == [
        ("frank", "Frank", 42)
    ]
    assert clean_db.execute("SELECT id, country_code FROM places") == [("0a0b0c0d0e0f0001", "BR")]
    assert clean_db.counts() == {"tweets": 3, "tweet_tags": 3, "users": 1, "places": 1}
    assert await (await client.get("/api/v1/hour")).json() == [
        {"date": "2026-11-20T09:00:00Z", "count": 2},
        {"date": "2026-11-20T10:00:00Z", "count": 1},
    ]


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
    app: App,
    fake_x: FakeX,
    failing_store: Database,
    pool_size: int,
) -> None:
    dataset.load(fake_x)
    db_timeout = 20.0
    # The run holds its connection (and the populate lock) throughout: with DB_POOL_SIZE=1
    # there is no second connection to record the failure on.
    client = await app(db_pool_size=pool_size, db_timeout=db_timeout)

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
    # The lock and the connection are released: without the trigger, the next run proceeds.
    failing_store.execute("DROP TRIGGER test_refuse_sre ON tweet_tags")
    assert (await populate(client)).status == 201
    assert failing_store.counts() == dataset.STORED
    runs = failing_store.execute("SELECT status FROM populate_runs ORDER BY id")
    assert runs == [("failed",), ("succeeded",)]
