"""Structured logs: one valid JSON object per line, request and populate context, no secrets.

The end-to-end test forces tweepy's logger to DEBUG, where tweepy prints the Authorization
header: the service must still leak nothing, because its sink redacts every configured secret.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient
from loguru import logger
from yarl import URL

from service import log
from service.config import Secret, Settings, XCredentials
from service.log import (
    REDACTED,
    REQUEST_FIELDS,
    InterceptHandler,
    Sink,
    json_line,
    record_entry,
    request_json,
    secrets_of,
)
from service.matviews import VIEWS
from testing.fake_x import BEARER, UNAUTHORIZED, FakeX
from tests import dataset
from tests.database import Database
from tests.settings import make_settings

Client = TestClient[Any, Any]
Line = dict[str, Any]

# `"` and `\` are escaped inside a JSON string: a sink looking only for the raw value misses them.
API_TOKEN = 'populate-"api"-token\\0042'
DB_PASSWORD = 'db-"pass"\\word-0042'
TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
GENERATED_ID_RE = re.compile(r"^[0-9a-f]{12}-[0-9a-f]+$")  # service.middlewares._request_id
LEVELS = {"TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"}


def leaked_forms(secret: str) -> set[str]:
    """How a secret could show up in text: as is, JSON- or repr-escaped, percent-encoded."""
    return {
        secret,
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        quote(secret, safe=""),
    }


def assert_no_secret(text: str, secrets: list[str], where: str) -> None:
    for secret in secrets:
        for form in leaked_forms(secret):
            assert form not in text, f"{where} leaks a secret as {form!r}"


@pytest.fixture
def settings(clean_db: Database, fake_x: FakeX) -> Settings:
    """Every kind of secret the service knows; the database URL carries a (trusted) password."""
    url = str(URL(clean_db.url).with_password(DB_PASSWORD))
    return make_settings(clean_db, fake_x, api_token=Secret(API_TOKEN), database_url=Secret(url))


@pytest.fixture
def tweepy_debug(captured_logs: io.StringIO) -> Iterator[None]:
    """tweepy at DEBUG logs request headers, Authorization included (after the sink is set up,
    which would otherwise raise the level back to INFO)."""
    del captured_logs
    tweepy_logger = logging.getLogger("tweepy")
    previous = tweepy_logger.level
    tweepy_logger.setLevel(logging.DEBUG)
    yield
    tweepy_logger.setLevel(previous)


def parse(stream: io.StringIO) -> list[Line]:
    lines = stream.getvalue().splitlines()
    assert lines, "nothing was logged"
    parsed = []
    for raw in lines:
        entry = json.loads(raw)  # every line is one JSON object
        assert isinstance(entry, dict), raw
        assert TIMESTAMP_RE.match(entry["@timestamp"]), raw
        assert entry["level"] in LEVELS, raw
        assert isinstance(entry["message"], str), raw
        assert isinstance(entry["logger"], str), raw
        assert entry["logger"], raw
        parsed.append(entry)
    return parsed


def events(lines: list[Line], event: str, **fields: Any) -> list[Line]:
    return [
        line
        for line in lines
        if line.get("event.action") == event and all(line.get(k) == v for k, v in fields.items())
    ]


# -- end to end ---------------------------------------------------------------------------------


async def test_logging_end_to_end_is_json_with_context_and_leaks_no_secret(
    client: Client,
    fake_x: FakeX,
    clean_db: Database,
    settings: Settings,
    captured_logs: io.StringIO,
    tweepy_debug: None,
) -> None:
    del tweepy_debug
    assert logging.getLogger("tweepy").isEnabledFor(logging.DEBUG)
    secrets = secrets_of(settings)
    assert set(secrets) == {BEARER, API_TOKEN, DB_PASSWORD}
    dataset.load(fake_x)
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    sent: list[tuple[str, str, int, str | None]] = []  # method, path, status, X-Request-ID sent
    answered: list[tuple[str, str]] = []  # request id answered, response text

    async def call(method: str, path: str, request_id: str | None, **headers: str) -> Any:
        if request_id is not None:
            headers["X-Request-ID"] = request_id
        response = await client.request(method, path, headers=headers)
        text = await response.text()
        sent.append((method, response.url.path, response.status, request_id))
        answered.append((response.headers["X-Request-ID"], text))
        assert_no_secret(text + str(response.headers), secrets, f"{method} {path}")
        return response

    ok = await call("POST", "/api/v1/populate", "req-populate-ok", **auth)
    assert ok.status == 201
    ok_run = (await ok.json())["run_id"]
    fake_x.fail(401, UNAUTHORIZED, query="#devops")
    failed = await call("POST", "/api/v1/populate", "req-populate-401", **auth)
    assert failed.status == 502
    assert (await failed.json())["error"]["code"] == "x_api_credentials_rejected"
    health = await call("GET", "/api/health", "req-health")
    assert health.status == 200
    # A client pasting the token into a URL: the path is logged, the token must not be.
    missing = await call("GET", "/api/v1/" + quote(API_TOKEN, safe=""), None)
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "not_found"
    users = await call("GET", "/api/v1/users", "not a valid id!")
    assert users.status == 200
    scraped = await call("GET", "/metrics", "req-metrics")
    assert scraped.status == 200
    failed_run = clean_db.scalar("SELECT id FROM populate_runs WHERE status = 'failed'")

    text = captured_logs.getvalue()
    lines = parse(captured_logs)

    # No secret anywhere; tweepy did try to log the bearer token, and it was redacted.
    assert_no_secret(text, secrets, "the logs")
    tweepy_lines = [line for line in lines if line["logger"].startswith("tweepy")]
    assert any(
        line["level"] == "DEBUG" and f"Bearer {REDACTED}" in line["message"]
        for line in tweepy_lines
    ), tweepy_lines

    # Request ids: echoed when valid, generated otherwise.
    assert [rid for rid, _ in answered][:3] == ["req-populate-ok", "req-populate-401", "req-health"]
    assert GENERATED_ID_RE.match(answered[3][0])
    assert GENERATED_ID_RE.match(answered[4][0])
    assert answered[3][0] != answered[4][0]
    assert answered[5][0] == "req-metrics"

    # Exactly one http.request line per request, in order, with its fields.
    requests = events(lines, "http.request")
    assert [(r["method"], r["status"], r["request_id"]) for r in requests] == [
        (method, status, rid)
        for (method, _, status, _), (rid, _) in zip(sent, answered, strict=True)
    ]
    for line, (_, path, _, _) in zip(requests, sent, strict=True):
        assert isinstance(line["duration_ms"], int | float)
        assert line["duration_ms"] >= 0
        if line["status"] != 404:
            assert line["path"] == path
    assert [r["route"] for r in requests] == [
        "/api/v1/populate",
        "/api/v1/populate",
        "/api/health",
        "unmatched",
        "/api/v1/users",
        "/metrics",
    ]
    assert requests[3]["path"] == f"/api/v1/{REDACTED}"
    assert [r["level"] for r in requests] == ["INFO"] * 5 + ["DEBUG"]

    # The successful run: every step, each with its run_id and the request's id.
    steps = [line for line in lines if str(line.get("event.action", "")).startswith("populate.")]
    for line in steps:
        assert isinstance(line["run_id"], int), line
    ok_steps = [line for line in steps if line["run_id"] == ok_run]
    assert {line["request_id"] for line in ok_steps} == {"req-populate-ok"}
    assert ok_steps[0]["event.action"] == "populate.start"
    assert ok_steps[-1]["event.action"] == "populate.done"
    assert sorted(line["tag"] for line in events(ok_steps, "populate.fetch")) == ["#devops", "#sre"]
    assert len(events(ok_steps, "populate.store")) == 1
    assert [line["view"] for line in events(ok_steps, "populate.refresh")] == list(VIEWS)
    done = events(ok_steps, "populate.done")[0]
    assert done["tweets_new"] == 7
    assert done["level"] == "INFO"

    # The failed run: start, then failed with the reason; nothing stored or refreshed.
    failed_steps = [line for line in steps if line["run_id"] == failed_run]
    assert {line["request_id"] for line in failed_steps} == {"req-populate-401"}
    kinds = [line["event.action"] for line in failed_steps]
    assert kinds[0] == "populate.start"
    assert kinds[-1] == "populate.failed"
    assert not {"populate.store", "populate.refresh", "populate.done"} & set(kinds)
    assert failed_steps[-1]["level"] == "ERROR"
    assert "x_api_credentials_rejected" in failed_steps[-1]["message"]
    assert {line["run_id"] for line in steps} == {ok_run, failed_run}


@pytest.mark.parametrize(
    "given", ["abc.DEF:1-2_3", "", "x" * 129, "has space", "semi;colon", "ünï"]
)
async def test_logging_echoes_a_valid_request_id_and_replaces_an_invalid_one(
    client: Client, captured_logs: io.StringIO, given: str
) -> None:
    headers = {"X-Request-ID": given} if given.isascii() else {}
    response = await client.delete("/api/v1/users", headers=headers)

    assert response.status == 405
    answered = response.headers["X-Request-ID"]
    if given == "abc.DEF:1-2_3":
        assert answered == given
    else:
        assert GENERATED_ID_RE.match(answered)
    [line] = events(parse(captured_logs), "http.request")
    assert (line["request_id"], line["status"], line["method"]) == (answered, 405, "DELETE")


@pytest.fixture
def text_logs(settings: Settings) -> Iterator[io.StringIO]:
    """What the service writes with LOG_FORMAT=text, as `make run` sets on a terminal."""
    stream = io.StringIO()
    log.configure(dataclasses.replace(settings, log_format="text"), stream=stream)
    yield stream
    log.ACCESS.configure([], "INFO")
    logger.remove()


TEXT_LINE_RE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} (?P<level>[A-Z]+) +(?P<what>\S+) +(?P<rest>.*)$")


async def test_logging_as_text_gives_time_level_event_message_and_the_key_fields(
    client: Client, text_logs: io.StringIO
) -> None:
    response = await client.get("/api/v1/users", headers={"X-Request-ID": "text-1"})
    assert response.status == 200
    try:
        raise RuntimeError(f"boom with {API_TOKEN}")
    except RuntimeError:
        logger.bind(event="unit.failed").exception("it failed")
    log.ACCESS.flush()

    lines = text_logs.getvalue().splitlines()
    [request] = [line for line in lines if "http.request" in line]
    found = TEXT_LINE_RE.match(request)
    assert found, request
    assert (found["level"], found["what"]) == ("INFO", "http.request")
    assert found["rest"].startswith("GET /api/v1/users 200  duration_ms=")
    assert found["rest"].endswith("  request_id=text-1")
    failed = lines.index(next(line for line in lines if "unit.failed" in line))
    assert TEXT_LINE_RE.match(lines[failed])
    assert lines[failed].endswith(f"it failed  error.message=boom with {REDACTED}")
    assert lines[failed + 1] == "Traceback (most recent call last):"
    assert_no_secret(text_logs.getvalue(), [API_TOKEN], "the text lines")


# -- units: redact, the JSON sink, json_line, secrets_of ----------------------------------------


@pytest.fixture
def sink() -> Iterator[tuple[io.StringIO, Any]]:
    """A JSON sink on loguru, for secrets given to `attach`; removed after the test."""
    stream = io.StringIO()
    handlers: list[int] = []

    def attach(*secrets: str) -> None:
        handlers.append(logger.add(Sink(stream, as_json=True, secrets=secrets), format="{message}"))

    yield stream, attach
    for handler in handlers:
        logger.remove(handler)


def lines_of(stream: io.StringIO) -> list[Line]:
    return [json.loads(raw) for raw in stream.getvalue().splitlines()]


def test_json_sink_writes_one_flat_object_per_line(sink: tuple[io.StringIO, Any]) -> None:
    stream, attach = sink
    attach()

    logger.bind(event="unit.test", run_id=7, when=datetime(2026, 1, 2, tzinfo=UTC)).info(
        "line {n}\nwith a newline", n=1
    )
    logger.bind(level="spoofed", message="spoofed", logger="spoofed").warning("second")

    first, second = lines_of(stream)
    assert first["message"] == "line 1\nwith a newline"
    assert first["level"] == "INFO"
    assert first["logger"] == __name__
    assert first["event.action"] == "unit.test"
    assert first["run_id"] == 7
    assert first["n"] == 1
    assert first["when"] == "2026-01-02 00:00:00+00:00"  # not JSON-native: str()
    assert TIMESTAMP_RE.match(first["@timestamp"])
    stamp = datetime.fromisoformat(first["@timestamp"].replace("Z", "+00:00"))
    assert abs(stamp - datetime.now(UTC)) < timedelta(seconds=30)
    # Extra fields never overwrite the reserved ones.
    assert (second["level"], second["message"], second["logger"]) == ("WARNING", "second", __name__)
    assert len(stream.getvalue().splitlines()) == 2


def test_json_sink_redacts_secrets_in_messages_fields_and_exceptions(
    sink: tuple[io.StringIO, Any],
) -> None:
    stream, attach = sink
    attach("tok-1234567", "pw-abcdefg")

    logger.bind(token="tok-1234567", nested={"dsn": "postgresql://u:pw-abcdefg@h/db"}).info(
        "using tok-1234567 twice: tok-1234567"
    )
    try:
        raise RuntimeError("bad token tok-1234567")
    except RuntimeError:
        logger.exception("failed")

    text = stream.getvalue()
    assert "tok-1234567" not in text
    assert "pw-abcdefg" not in text
    line, failed = lines_of(stream)
    assert line["message"] == f"using {REDACTED} twice: {REDACTED}"
    assert line["token"] == REDACTED
    assert line["nested"] == {"dsn": f"postgresql://u:{REDACTED}@h/db"}
    assert failed["level"] == "ERROR"
    assert failed["error.type"] == "RuntimeError"
    assert failed["error.message"] == f"bad token {REDACTED}"
    assert "Traceback (most recent call last)" in failed["error.stack_trace"]


def test_json_sink_redacts_longer_secrets_whole_and_ignores_too_short_ones(
    sink: tuple[io.StringIO, Any],
) -> None:
    stream, attach = sink
    # Shorter first: the longer must still go whole. "", "a", "INF" would shred every line,
    # field names included.
    attach("abcd", "abcd-efgh-ijkl", "", "a", "INF")

    logger.info("a key abcd-efgh-ijkl and abcd")

    [line] = lines_of(stream)
    assert line["message"] == f"a key {REDACTED} and {REDACTED}"
    assert line["level"] == "INFO"
    assert "efgh" not in stream.getvalue()


@pytest.mark.parametrize(
    "secret",
    ['quo"te-secret', "back\\slash-secret", "tab\tsecret-x", 'mix"\\of-both', "ünïcödé-secrét"],
)
def test_json_sink_redacts_secrets_that_json_escapes(
    sink: tuple[io.StringIO, Any], secret: str
) -> None:
    stream, attach = sink
    attach(secret)

    logger.bind(value=secret).info("message {}", secret)

    [line] = lines_of(stream)
    assert secret not in line["message"]
    assert secret not in line["value"]
    assert line["message"] == f"message {REDACTED}"
    assert line["value"] == REDACTED
    assert_no_secret(stream.getvalue(), [secret], "the JSON line")


def test_json_line_converts_the_time_to_utc_with_a_z() -> None:
    record = {
        "time": datetime(2026, 11, 20, 11, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2))),
        "level": SimpleNamespace(name="INFO"),
        "message": "m",
        "extra": {"logger_name": "stdlib.name"},
        "name": "module.name",
        "exception": None,
    }

    assert json.loads(json_line(record_entry(record))) == {
        "@timestamp": "2026-11-20T09:30:15.123Z",
        "level": "INFO",
        "message": "m",
        "logger": "stdlib.name",
    }


@pytest.mark.parametrize(
    ("path", "request_id", "client"),
    [
        ("/api/v1/users", "abc-1", "127.0.0.1"),
        ('/a"b\\c/%s/%%d/é/\x01\n', 'id"\\\n', None),
    ],
    ids=["plain", "escapes"],
)
def test_request_json_writes_the_bytes_json_line_writes(
    path: str, request_id: str, client: str | None
) -> None:
    row = (
        "2026-11-20T09:30:15.123Z",
        "INFO",
        f"GET {path} 200",
        "service.access",
        "http.request",
        request_id,
        "GET",
        path,
        "/api/v1/users",
        200,
        0.412,
        client,
    )

    assert request_json(row) == json_line(dict(zip(REQUEST_FIELDS, row, strict=True)))


def test_intercept_handler_keeps_the_stdlib_logger_name_and_level(
    sink: tuple[io.StringIO, Any],
) -> None:
    stream, attach = sink
    attach("stdlib-secret-1")
    stdlib = logging.getLogger("tests.stdlib.source")
    stdlib.propagate = False
    handler = InterceptHandler()
    stdlib.addHandler(handler)
    stdlib.setLevel(logging.DEBUG)
    try:
        stdlib.warning("from stdlib with %s and {braces}", "stdlib-secret-1")
    finally:
        stdlib.removeHandler(handler)

    [line] = lines_of(stream)
    assert line["logger"] == "tests.stdlib.source"
    assert line["level"] == "WARNING"
    assert line["message"] == f"from stdlib with {REDACTED} and {{braces}}"


def test_secrets_of_lists_every_configured_secret() -> None:
    nowhere = Database(url="postgresql://nobody@db.invalid/none")  # only settings are built
    settings = make_settings(
        nowhere,
        None,
        credentials=XCredentials(
            bearer_token=Secret("bearer-1"),
            consumer_key=Secret("ck-2"),
            consumer_secret=Secret("cs-3"),
            access_token=Secret("at-4"),
            access_secret=Secret("as-5"),
        ),
        api_token=Secret("api-token-6"),
        database_url=Secret("postgresql://user:p%40ss%2Fword@db.invalid:5432/app"),
    )

    assert sorted(secrets_of(settings)) == sorted(
        ["bearer-1", "ck-2", "cs-3", "at-4", "as-5", "api-token-6", "p@ss/word"]
    )
    no_password = make_settings(nowhere, None, database_url=Secret("postgresql://u@h/db"))
    assert secrets_of(no_password) == [BEARER]
    # libpq also takes the password as a query parameter of the URI.
    in_query = make_settings(
        nowhere,
        None,
        database_url=Secret("postgresql://u@h/db?sslmode=require&password=q%26pass-word"),
    )
    assert sorted(secrets_of(in_query)) == sorted([BEARER, "q&pass-word"])
