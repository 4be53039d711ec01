"""parse_page drops what PostgreSQL cannot store and keeps everything else exactly."""

from __future__ import annotations

import json
from collections import OrderedDict

from service.sources.parse import parse_page
from tests.fake_x import tweet, user


def test_parse_page_scrubs_nul_and_lone_surrogates_only() -> None:
    body = {
        "data": [tweet(1, 7, "2026-11-20T09:00:00.000Z", text="a\x00b \ud800 café ☕ 日本")],
        "includes": {"users": [user(7, "nul", 3, name="N\x00ame \udfff ok")]},
        "meta": {"result_count": 1},
    }

    page = parse_page(body)

    assert page.tweets[0].text == "ab ? café ☕ 日本"
    assert page.users[0].name == "Name ? ok"
    raw = json.loads(page.tweets[0].raw)
    assert raw["text"] == "ab ? café ☕ 日本"
    assert raw["public_metrics"]["like_count"] == 1  # numbers pass through untouched


def test_parse_page_accepts_any_mapping() -> None:
    body = OrderedDict(
        data=[OrderedDict(tweet(2, 8, "2026-11-20T09:00:00.000Z"))],
        meta=OrderedDict(result_count=1),
    )

    page = parse_page(body)

    assert [t.id for t in page.tweets] == [2]
    assert json.loads(page.tweets[0].raw)["id"] == "2"
