"""What a populate fetches, without a database: the bundled sample through SampleSource, and the
real tweepy client against the fake X API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.config import SAMPLE_DIR
from service.errors import UpstreamBadResponse, UpstreamCredentials
from service.fetch import fetch
from service.model import Page, Tweet
from service.sources.parse import parse_page
from service.sources.sample import SampleSource
from service.sources.x import XSource, create_session
from testing.fake_x import UNAUTHORIZED, FakeX
from tests import dataset, sample_files
from tests.database import Database
from tests.settings import make_settings


def sample_pages(tag: str) -> list[Page]:
    return [parse_page(body) for body in sample_files.sample_pages(tag)]


def newest(pages: list[Page], count: int) -> tuple[list[Tweet], int]:
    """The first `count` distinct tweets of the pages, and how many pages hold them."""
    kept: dict[int, Tweet] = {}
    for used, page in enumerate(pages, start=1):
        for item in page.tweets:
            if len(kept) < count:
                kept.setdefault(item.id, item)
        if len(kept) >= count:
            return list(kept.values()), used
    return list(kept.values()), len(pages)


async def test_fetch_keeps_each_tags_newest_tweets_and_only_their_authors_and_places() -> None:
    tags = ("#devops", "#logmonitoring", "#opentracing")  # 178, 11 and 0 tweets in the sample

    batches = await fetch(SampleSource(SAMPLE_DIR), tags, per_tag=150, concurrency=2)

    assert [batch.tag for batch in batches] == list(tags)
    for batch in batches:
        pages = sample_pages(batch.tag)
        expected, used = newest(pages, 150)
        assert batch.tweets == expected, batch.tag
        assert batch.pages == used, batch.tag
        described = {u.id for page in pages[:used] for u in page.users}
        assert {u.id for u in batch.users} == {t.author_id for t in expected} & described
        assert {p.id for p in batch.places} == {t.place_id for t in expected if t.place_id}
    assert [len(batch.tweets) for batch in batches] == [150, 11, 0]


async def test_fetch_asks_only_for_tweets_newer_than_the_stored_ones() -> None:
    everything, _ = newest(sample_pages("#devops"), 1000)
    stored = everything[9].id  # the tenth newest is already stored

    [batch] = await fetch(
        SampleSource(SAMPLE_DIR), ["#devops"], per_tag=100, concurrency=1, since={"#devops": stored}
    )

    assert batch.tweets == everything[:9]
    assert batch.pages == 1


async def test_fetch_stops_a_tag_whose_pages_never_end(tmp_path: Path) -> None:
    # A first page that names itself as the next one, without a tweet: the source loops.
    (tmp_path / "loop").mkdir()
    looping = {"meta": {"result_count": 0, "next_token": "001"}}
    (tmp_path / "loop" / "001.json").write_text(json.dumps(looping), encoding="utf-8")

    with pytest.raises(UpstreamBadResponse, match="past 7 pages"):  # 20 // 10 + 5
        await fetch(SampleSource(tmp_path), ["#loop"], per_tag=20, concurrency=1)


@pytest.fixture
async def x_source(fake_x: FakeX) -> AsyncIterator[XSource]:
    nowhere = Database(url="postgresql://nobody@db.invalid/none")  # settings only: no query
    settings = make_settings(nowhere, fake_x)
    session = create_session(settings)
    yield XSource(settings, session)
    await session.close()


async def test_fetch_through_tweepy_is_all_or_nothing(fake_x: FakeX, x_source: XSource) -> None:
    dataset.load(fake_x)
    fake_x.fail(401, UNAUTHORIZED, query="#sre")

    # The failure itself, not a group of them, and no batch of the tags that did answer.
    with pytest.raises(UpstreamCredentials):
        await fetch(x_source, ["#devops", "#sre"], per_tag=100, concurrency=2)

    batches = await fetch(x_source, ["#devops", "#sre"], per_tag=100, concurrency=2)
    assert [len(batch.tweets) for batch in batches] == [5, 3]
