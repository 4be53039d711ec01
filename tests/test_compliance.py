"""Compliance passes against the fake X API and its storage host: what X says is gone goes, every
number still equals a count over what is left, and a pass that fails anywhere applies nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from service.config import Secret
from service.db import POPULATE_LOCK
from testing.fake_x import FakeX
from tests import dataset
from tests.calls import App, Client, assert_error, delta, get, populated, request, scrape, value
from tests.database import Database, assert_consistent, snapshot
from tests.fake_time import FakeTime
from tests.logs import CapturedLogs
from tests.service_process import API_TOKEN, fetch, run_cli, service_env
from tests.test_faults import kill_while_held, waiting_on
from tests.test_faults import start as start

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
NUMBERS = ("/api/v1/users?limit=100", "/api/v1/hour", "/api/v1/tags", "/api/v1/summary")


def script_removals(fake: FakeX) -> None:
    """1005 deleted, 1004 loses its place, dave (504, author of 1007: two tags) suspended."""
    fake.compliance.result("tweets", 1005, "delete", "deleted")
    fake.compliance.result("tweets", 1004, "delete", "scrub_geo")  # a scrub, as X also words it
    fake.compliance.result("users", 504, "delete", "suspended")


def passes(db: Database) -> list[tuple[Any, ...]]:
    return db.execute("SELECT id, status, error FROM compliance_passes ORDER BY id")


async def numbers(client: Client) -> dict[str, Any]:
    return {path: await get(client, path) for path in NUMBERS}


def recount(db: Database) -> dict[str, Any]:
    """What the reads must answer, counted over the rows left."""
    hours = db.execute(
        "SELECT to_char(date_trunc('hour', created_at, 'UTC'), 'YYYY-MM-DD\"T\"HH24:00:00\"Z\"'),"
        " count(*) FROM tweets GROUP BY 1 ORDER BY 1"
    )
    users = db.execute(
        "SELECT username, followers_count FROM users WHERE id IN (SELECT author_id FROM tweets)"
        ' ORDER BY followers_count DESC, username COLLATE "C"'
    )
    tags = db.execute(
        "SELECT tt.tag, t.lang, p.country_code, count(*) FROM tweet_tags tt"
        " JOIN tweets t ON t.id = tt.tweet_id LEFT JOIN places p ON p.id = t.place_id"
        " GROUP BY 1, 2, 3"
    )
    return {
        "hours": [{"date": d, "count": n} for d, n in hours],
        "users": [{"username": u, "followers": f} for u, f in users],
        "tags": sorted(tags, key=repr),
        "tweets": db.scalar("SELECT count(*) FROM tweets"),
    }


async def test_compliance_pass_forgets_what_x_says_and_a_second_changes_nothing(
    loaded: Client, fake_x: FakeX, clean_db: Database, captured_logs: CapturedLogs
) -> None:
    metrics = await scrape(loaded)
    script_removals(fake_x)
    status, body, _ = await request(loaded, "POST", "/api/v1/compliance")
    assert status == 201, body
    counted = await scrape(loaded)
    assert delta(metrics, counted, "compliance_passes_total", outcome="succeeded") == 1
    deleted = {"action": "delete", "kind": "tweets", "reason": "deleted"}
    assert delta(metrics, counted, "compliance_items_total", **deleted) == 1
    assert value(counted, "compliance_last_success_timestamp_seconds") > 0
    events = [json.loads(line).get("event.action") for line in captured_logs.lines()]
    assert {"compliance.start", "compliance.upload", "compliance.done"} <= set(events)
    assert body["checked"] == {"tweets": 7, "users": 5}
    assert body["applied"]["tweets"]["delete"]["deleted"] == 1
    assert body["applied"]["tweets"]["scrub_geo"]["scrub_geo"] == 1
    assert body["applied"]["users"]["delete"]["suspended"] == 1
    assert len(body["job_ids"]) == 2
    # What went up: every stored id, one a line, as text/plain, to the URL as issued.
    assert [sorted(u.ids) for u in fake_x.compliance.uploads] == [
        [1001, 1002, 1003, 1004, 1005, 1006, 1007],
        [501, 502, 503, 504, 505],
    ]
    assert fake_x.compliance.refusals == []
    assert clean_db.scalar("SELECT count(*) FROM tweets WHERE id IN (1005, 1007)") == 0
    assert clean_db.scalar("SELECT place_id FROM tweets WHERE id = 1004") is None
    assert clean_db.scalar("SELECT count(*) FROM users WHERE id = 504") == 0
    after = await numbers(loaded)
    assert after["/api/v1/summary"]["tweets"] == 5
    assert after["/api/v1/summary"]["compliance"]["last_pass"]["pass_id"] == body["pass_id"]
    want = recount(clean_db)
    assert after["/api/v1/hour"] == want["hours"]
    assert after["/api/v1/users?limit=100"] == want["users"]
    rows = [(r["tag"], r["language"], r["country"], r["count"]) for r in after["/api/v1/tags"]]
    assert sorted(rows, key=repr) == want["tags"]
    assert after["/api/v1/summary"]["tweets"] == want["tweets"]
    assert_consistent(clean_db)
    health = await (await loaded.get("/api/health")).json()
    assert health["last_compliance"]["pass_id"] == body["pass_id"]

    before = snapshot(clean_db)
    status, second, _ = await request(loaded, "POST", "/api/v1/compliance")
    assert status == 201, second
    assert second["checked"] == {"tweets": 5, "users": 4}
    assert not any(n for a in second["applied"].values() for r in a.values() for n in r.values())
    assert snapshot(clean_db) == before
    unchanged = await numbers(loaded)
    for found in (after, unchanged):  # the summary names the newest pass; nothing else moved
        found["/api/v1/summary"].pop("compliance")
    assert unchanged == after
    assert [row[1] for row in passes(clean_db)] == ["succeeded", "succeeded"]


async def test_compliance_splits_uploads_one_job_per_type_at_a_time(
    app: App, fake_x: FakeX, clean_db: Database
) -> None:
    client = await app(compliance_job_max_ids=3)
    dataset.load(fake_x)
    await populated(client)
    fake_x.compliance.result("tweets", 1007)
    status, body, _ = await request(client, "POST", "/api/v1/compliance")
    assert status == 201, body
    assert body["checked"] == {"tweets": 7, "users": 5}
    assert [len(u.ids) for u in fake_x.compliance.uploads] == [3, 3, 1, 3, 2]
    assert len(body["job_ids"]) == 5
    assert body["applied"]["tweets"]["delete"]["deleted"] == 1
    assert_consistent(clean_db)


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("failed", 502, "x_compliance_job_failed"),
        ("expired", 502, "x_compliance_job_failed"),
        ("upload_refused", 502, "x_compliance_storage_error"),
        ("download_error", 502, "x_compliance_storage_error"),
        ("never", 503, "x_compliance_timeout"),
    ],
)
async def test_compliance_failure_applies_nothing_and_records_the_pass_failed(
    app: App,
    fake_x: FakeX,
    clean_db: Database,
    fake_time: FakeTime,
    captured_logs: CapturedLogs,
    fault: str,
    status: int,
    code: str,
) -> None:
    client = await app(clock=fake_time.as_clock(), compliance_timeout=600.0)
    dataset.load(fake_x)
    await populated(client)
    script_removals(fake_x)
    fake_x.compliance.fault = fault  # type: ignore[assignment]
    before = snapshot(clean_db)
    started = fake_time.now

    answer = await request(client, "POST", "/api/v1/compliance")
    assert answer.status == status
    assert_error(answer.body, code)
    assert snapshot(clean_db) == before
    assert clean_db.counts() == {"tweets": 7, "tweet_tags": 8, "users": 5, "places": 3}
    [(_, state, error)] = passes(clean_db)
    assert state == "failed"
    assert error.startswith(f"{code}:")
    if fault == "never":  # the deadline ran on the injected clock: nothing really waited
        assert fake_time.now - started == pytest.approx(600.0)
        assert max(fake_time.sleeps) <= 60.0
    events = [json.loads(line).get("event.action") for line in captured_logs.lines()]
    assert "compliance.start" in events
    assert "compliance.failed" in events
    assert "compliance.done" not in events
    assert value(await scrape(client), "compliance_passes_total", outcome="failed") >= 1


async def test_compliance_endpoint_token_conflict_and_sample(app: App, clean_db: Database) -> None:
    secured = await app(api_token=Secret(API_TOKEN))
    refused = await request(secured, "POST", "/api/v1/compliance")
    assert refused.status == 401
    assert_error(refused.body, "unauthorized")
    with clean_db.holding(f"SELECT pg_advisory_lock({POPULATE_LOCK})"):
        busy = await request(secured, "POST", "/api/v1/compliance", headers=AUTH)
        assert busy.status == 409
        assert_error(busy.body, "write_in_progress")
    assert passes(clean_db) == []

    offline = await app(tweet_source="sample", compliance_interval=0.0)
    answer = await request(offline, "POST", "/api/v1/compliance")
    assert answer.status == 501
    assert_error(answer.body, "compliance_unavailable")
    assert "X API" in answer.body["error"]["message"]
    summary = await get(offline, "/api/v1/summary")
    assert summary["compliance"] == {"interval_seconds": 0.0, "last_pass": None}


async def test_crash_mid_apply_applies_nothing_and_restart_abandons_the_pass(
    start: Any,
    fake_x: FakeX,
    clean_db: Database,
) -> None:
    service = await start(clean_db.url)
    async with aiohttp.ClientSession() as session:
        status, *_ = await fetch(session, "POST", service.url("/api/v1/populate"), headers=AUTH)
        assert status == 201
        script_removals(fake_x)
        before = snapshot(clean_db)
        # The apply deletes from tweet_tags: it waits on this lock, inside its transaction.
        with clean_db.holding("LOCK TABLE tweet_tags IN SHARE MODE"):
            url = service.url("/api/v1/compliance")
            request = asyncio.create_task(fetch(session, "POST", url, headers=AUTH))
            waiters = await waiting_on(clean_db, "tweet_tags", "the apply waits on tweet_tags")
            await kill_while_held(service, request, clean_db, waiters)
    assert snapshot(clean_db) == before
    assert [row[1] for row in passes(clean_db)] == ["running"]
    await start(clean_db.url)
    assert [row[1] for row in passes(clean_db)] == ["abandoned"]
    assert snapshot(clean_db) == before


async def test_cli_compliance_prints_the_pass_or_a_json_error(
    fake_x: FakeX, clean_db: Database, tmp_path: Any
) -> None:
    env = service_env(clean_db.url, fake_x)
    done = await asyncio.to_thread(run_cli, ["compliance"], env, tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["checked"] == {"tweets": 0, "users": 0}
    sample = {**env, "TWEET_SOURCE": "sample"}
    offline = await asyncio.to_thread(run_cli, ["compliance"], sample, tmp_path, timeout=120)
    assert offline.returncode == 1
    assert json.loads(offline.stdout)["error"]["code"] == "compliance_unavailable"
    assert [row[1] for row in passes(clean_db)] == ["succeeded"]
