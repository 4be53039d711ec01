"""What X says is gone is gone (apply_compliance), stays gone (tombstones), and old post text and
raw JSON are cleared without changing a number (RAW_RETENTION_DAYS). Random mixes of all of it
are in test_aggregates.py; these pin the exact outcomes."""

from __future__ import annotations

import pytest

from service import queries
from service.keys import POOL
from service.model import ComplianceItem
from testing.fake_x import FakeX, place, tweet, user
from tests.calls import App, Client, get, populated
from tests.compliance_apply import apply_items
from tests.database import Database, assert_consistent, snapshot
from tests.fake_time import at_real_time

AT = "2026-11-20T10:00:00.000Z"
# Post 1 is under both tags; author 9 is one X does not describe (its posts are stored anyway).
POSTS = {
    1: (7, ("#devops", "#sre"), "p1"),
    2: (7, ("#devops",), None),
    3: (8, ("#sre",), "p1"),
    4: (9, ("#devops",), None),
    5: (8, ("#devops",), "p1"),
}
ITEMS = [
    ComplianceItem("tweets", 5, "delete", "deleted"),
    ComplianceItem("tweets", 999, "delete", "deleted"),  # never stored
    ComplianceItem("users", 7, "delete", "suspended"),
    ComplianceItem("users", 9, "delete", "deactivated"),
    ComplianceItem("tweets", 3, "scrub_geo", "scrub_geo"),
    ComplianceItem("tweets", 3, "scrub_geo", "scrub_geo"),  # a repeated line applies once
    ComplianceItem("tweets", 3, "some_new_action", "x"),  # counted, not applied
]


def serve(fake_x: FakeX) -> None:
    for tag in ("#devops", "#sre"):
        bodies = [
            tweet(n, author, AT, place_id=where, text=f"post {n} {tag}")
            for n, (author, tags, where) in POSTS.items()
            if tag in tags
        ]
        fake_x.add(tag, bodies, [user(7, "seven", 70), user(8, "eight", 80)], [place("p1", "BR")])


async def test_removed_posts_and_accounts_are_gone_and_stay_gone(
    client: Client, clean_db: Database, fake_x: FakeX
) -> None:
    serve(fake_x)
    await populated(client, full=True)
    async with client.app[POOL].acquire() as conn, conn.cursor() as cur:
        pages = {
            kind: [page async for page in queries.iter_ids(cur, kind, batch=2)]
            for kind in ("tweets", "users")
        }
        counted = {kind: await queries.count_ids(cur, kind) for kind in ("tweets", "users")}
    assert pages == {"tweets": [[1, 2], [3, 4], [5]], "users": [[7, 8], [9]]}
    assert counted == {"tweets": 5, "users": 3}

    applied = await apply_items(client.app, ITEMS)

    assert applied == {
        "tweets": {
            "delete": {"deleted": 1},
            "scrub_geo": {"scrub_geo": 1},
            "some_new_action": {"x": 0},
        },
        "users": {"delete": {"suspended": 1, "deactivated": 1}},
    }
    assert clean_db.execute("SELECT id, place_id, raw ? 'geo' FROM tweets") == [(3, None, False)]
    assert clean_db.execute("SELECT id FROM users") == [(8,)]
    assert clean_db.execute("SELECT tag, language, country, count FROM tweets_per_tag") == [
        ("#sre", "en", None, 1)
    ]
    assert_consistent(clean_db)
    after = snapshot(clean_db), clean_db.counts()

    # X's search still returns all of it (a lagging index): the tombstones keep it out.
    await populated(client, full=True)
    assert (snapshot(clean_db), clean_db.counts()) == after
    assert clean_db.scalar("SELECT tweets_new FROM populate_runs ORDER BY id DESC LIMIT 1") == 0

    # A second apply of the same results changes nothing and counts nothing.
    again = await apply_items(client.app, ITEMS)
    assert {n for actions in again.values() for r in actions.values() for n in r.values()} == {0}
    assert (snapshot(clean_db), clean_db.counts()) == after


READS = (
    "/api/v1/users?limit=100",
    "/api/v1/users?tag=devops",
    "/api/v1/tags",
    "/api/v1/tags?tag=devops&since=2026-11-20T00:00:00Z&format=csv",
    "/api/v1/hour",
    "/api/v1/hour?tag=sre&format=csv",
)


async def reads(client: Client) -> dict[str, str]:
    answers = {}
    for path in READS:
        response = await client.get(path)
        assert response.status == 200, path
        answers[path] = await response.text()
    summary = await get(client, "/api/v1/summary")
    answers["summary"] = str({k: summary[k] for k in ("tweets", "authors", "tags")})
    return answers


@pytest.mark.parametrize("days", [30, 0])
async def test_retention_clears_text_and_raw_and_keeps_every_number(
    app: App, clean_db: Database, fake_x: FakeX, days: int
) -> None:
    serve(fake_x)
    time = at_real_time()
    client = await app(clock=time.as_clock(), raw_retention_days=days)
    await populated(client, full=True)
    kept = "SELECT count(text), count(raw), (SELECT count(raw) FROM users) FROM tweets"
    assert clean_db.execute(kept) == [(5, 5, 2)]
    before = snapshot(clean_db), await reads(client)

    time.now += 31 * 86_400
    await populated(client, full=True)

    assert (snapshot(clean_db), await reads(client)) == before
    assert clean_db.execute(kept) == [(0, 0, 0) if days else (5, 5, 2)]
    # Cleared rows still take compliance results.
    await apply_items(client.app, ITEMS[:5])
    assert_consistent(clean_db)
    assert clean_db.execute("SELECT id, place_id FROM tweets") == [(3, None)]


async def test_pass_record_keeps_each_outcome(client: Client, clean_db: Database) -> None:
    counts = {"tweets": {"delete": {"deleted": 2}}}
    async with client.app[POOL].acquire() as conn, conn.cursor() as cur:
        assert await queries.last_successful_pass(cur) is None
        done = await queries.insert_pass(cur)
        await queries.finish_pass(
            cur, done, job_ids=["j1", "j2"], checked={"tweets": 5, "users": 3}, counts=counts
        )
        failed = await queries.insert_pass(cur)
        await queries.fail_pass(cur, failed, job_ids=["j3"], error="job j3 expired")
        await queries.insert_pass(cur)
        assert await queries.abandon_running_passes(cur) == 1
        last = await queries.last_successful_pass(cur)

    assert last is not None
    assert (last["id"], last["counts"], type(last["finished_at"])) == (done, counts, str)
    assert clean_db.execute(
        "SELECT status, job_ids, checked, error IS NULL FROM compliance_passes ORDER BY id"
    ) == [
        ("succeeded", ["j1", "j2"], {"tweets": 5, "users": 3}, True),
        ("failed", ["j3"], None, False),
        ("abandoned", [], None, False),
    ]
