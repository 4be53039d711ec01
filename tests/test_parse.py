"""parse_page on X API v2 recent-search bodies, and the sample replayer built on it."""

from __future__ import annotations

import copy
import json
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service.config import SAMPLE_DIR
from service.errors import UpstreamBadResponse
from service.model import Page
from service.sources.parse import parse_page, parse_timestamp
from service.sources.sample import SampleSource
from testing.fake_x import place, tweet, user, user_not_found
from tests import sample_files
from tests.database import Database

Json = dict[str, Any]

# Each with fields the parser does not read, as X adds them: kept in the raw JSON only.
TWEET: Json = tweet(
    1860000000000000001,
    900000000000000001,
    "2026-11-20T09:00:00.000Z",
    text="ledger APIs are here #openbanking",
    place_id="01a9a39529b27f36",
    tags=["openbanking"],
) | {"note_tweet": {"text": "long form"}, "possibly_sensitive": False}
TWEET["public_metrics"] |= {"bookmark_count": 2, "impression_count": 90}
USER: Json = user(900000000000000001, "open_ledger", 120, name="Open Ledger")
USER |= {"location": "Lisbon", "verified_type": "none"}
USER["public_metrics"] |= {"like_count": 7, "media_count": 1}
PLACE: Json = place("01a9a39529b27f36", "US", "United States") | {"geo": {"type": "Feature"}}


def page(*tweets: Json, users: list[Json] | None = None, places: list[Json] | None = None) -> Json:
    body: Json = {"data": list(tweets) or [TWEET]}
    body["includes"] = {
        "users": [USER] if users is None else users,
        "places": [PLACE] if places is None else places,
    }
    body["meta"] = {
        "newest_id": body["data"][0]["id"],
        "oldest_id": body["data"][-1]["id"],
        "result_count": len(body["data"]),
    }
    return body


def with_(base: Json, **changes: Any) -> Json:
    """A deep copy of `base` with top-level keys replaced; a value of None deletes the key."""
    result = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def one_tweet(**changes: Any) -> Page:
    return parse_page(page(with_(TWEET, **changes)))


# --- well-formed pages ---------------------------------------------------------------------------


def test_parse_page_full_page_with_unknown_fields() -> None:
    body = page()
    body["meta"] |= {"next_token": "b26v89c19zqg8o3fo7", "something_new": True}
    body["matching_rules"] = [{"id": "1", "tag": "x"}]

    result = parse_page(body)

    (tweet,), (user,), (place,) = result.tweets, result.users, result.places
    assert (tweet.id, tweet.author_id) == (1860000000000000001, 900000000000000001)
    assert tweet.created_at == datetime(2026, 11, 20, 9, tzinfo=UTC)
    assert (tweet.lang, tweet.place_id) == ("en", "01a9a39529b27f36")
    assert tweet.text == "ledger APIs are here #openbanking"
    assert (user.id, user.username, user.name) == (900000000000000001, "open_ledger", "Open Ledger")
    assert (user.followers, user.following, user.tweet_count) == (120, 10, 100)
    assert user.location == "Lisbon"
    assert (place.id, place.full_name, place.country) == (PLACE["id"], "City, US", "United States")
    assert place.country_code == "US"
    assert [json.loads(x.raw) for x in (tweet, user, place)] == [TWEET, USER, PLACE]
    assert result.next_token == "b26v89c19zqg8o3fo7"
    assert result.partial_errors == 0
    assert parse_page(page()).next_token is None  # the last page


@pytest.mark.parametrize(
    "body",
    [
        {"meta": {"result_count": 0}},
        {"meta": {"result_count": 0, "newest_id": None}},
        {},
        {"data": [], "includes": {}, "meta": {"result_count": 0}},
        {"data": None, "includes": None, "errors": None, "meta": {"result_count": 0}},
    ],
)
def test_parse_page_zero_results(body: Json) -> None:
    assert parse_page(body) == Page(tweets=(), users=(), places=(), next_token=None)


def test_parse_page_partial_errors_keep_the_tweet_without_its_include() -> None:
    orphan = with_(TWEET, id="1860000000000000002", author_id="42")
    body = page(TWEET, orphan)
    body["errors"] = [user_not_found("42")]

    result = parse_page(body)

    assert [t.author_id for t in result.tweets] == [900000000000000001, 42]
    assert [u.id for u in result.users] == [900000000000000001]
    assert result.partial_errors == 1


def test_parse_page_defaults_of_optional_fields_and_clamped_counts() -> None:
    bare = {"id": "7", "username": "bare"}
    huge = with_(USER, public_metrics={"followers_count": 2**40, "following_count": -5})
    tweet = with_(TWEET, text=None, geo=None, public_metrics=None, entities=None)

    result = parse_page(page(tweet, users=[bare, huge], places=[{"id": "abc"}]))

    assert (result.tweets[0].text, result.tweets[0].place_id) == ("", None)
    (user, clamped), place = result.users, result.places[0]
    assert (user.name, user.followers, user.following, user.tweet_count) == ("bare", 0, 0, 0)
    assert user.location is None
    assert (place.full_name, place.country, place.country_code) == (None, None, None)
    # Counts beyond 32 bits, or below zero, are clamped.
    assert (clamped.followers, clamped.following) == (2**31 - 1, 0)


@pytest.mark.parametrize("geo", [{}, {"place_id": ""}, {"place_id": 5}, "01a9", []])
def test_parse_page_malformed_geo_means_no_place(geo: object) -> None:
    assert one_tweet(geo=geo).tweets[0].place_id is None


# --- created_at ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-20T09:00:00.000Z", datetime(2026, 11, 20, 9, tzinfo=UTC)),
        ("2026-11-20T09:59:59.999Z", datetime(2026, 11, 20, 9, 59, 59, 999_000, tzinfo=UTC)),
        ("2026-11-20T09:00:00Z", datetime(2026, 11, 20, 9, tzinfo=UTC)),
        ("2026-11-20T09:00:00+00:00", datetime(2026, 11, 20, 9, tzinfo=UTC)),
        ("2026-11-20T09:00:00.123456+00:00", datetime(2026, 11, 20, 9, 0, 0, 123456, tzinfo=UTC)),
        ("2026-11-20T11:30:00+02:30", datetime(2026, 11, 20, 9, tzinfo=UTC)),
        ("2026-11-20T01:00:00-08:00", datetime(2026, 11, 20, 9, tzinfo=UTC)),
        ("2026-11-20T09:00:00", datetime(2026, 11, 20, 9, tzinfo=UTC)),  # naive: UTC, not local
        ("2026-11-20T09:00:00.500", datetime(2026, 11, 20, 9, 0, 0, 500_000, tzinfo=UTC)),
        (" 2026-11-20T09:00:00.000Z ", datetime(2026, 11, 20, 9, tzinfo=UTC)),
        ("Fri Nov 20 09:00:00 +0000 2026", datetime(2026, 11, 20, 9, tzinfo=UTC)),
        ("Fri Nov 20 10:00:00 +0100 2026", datetime(2026, 11, 20, 9, tzinfo=UTC)),
    ],
)
def test_parse_page_created_at_variants(raw: str, expected: datetime) -> None:
    created = one_tweet(created_at=raw).tweets[0].created_at

    assert created == expected
    assert created.tzinfo is UTC


def test_parse_timestamp_naive_is_utc_whatever_the_local_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert parse_timestamp("2026-11-20T09:00:00") == datetime(2026, 11, 20, 9, tzinfo=UTC)
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    "raw",
    [
        *(None, "", "yesterday", "2026-13-01T00:00:00Z", "20/11/2026 09:00", 1763629200, []),
        # Valid ISO-8601 whose UTC time falls outside what a datetime can hold.
        *("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"),
        "missing",
    ],
)
def test_parse_page_unreadable_created_at_is_a_bad_response(raw: object) -> None:
    body = page(with_(TWEET, created_at=None) if raw == "missing" else TWEET | {"created_at": raw})

    with pytest.raises(UpstreamBadResponse, match="created_at"):
        parse_page(body)


# --- lang ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *(("en", "en"), ("und", "und"), ("pt-BR", "pt-br"), ("zh-Hant", "zh-hant"), ("EN", "en")),
        ("qme", "qme"),  # X's own codes for posts of only media, hashtags, ...
    ],
)
def test_parse_page_keeps_valid_languages(raw: str, expected: str) -> None:
    assert one_tweet(lang=raw).tweets[0].lang == expected


@pytest.mark.parametrize(
    "raw",
    [None, "", "e", "english language", "en_US", "en-", "12", "en\n", "\nen", "中文", 5, ["en"]],
)
def test_parse_page_missing_or_invalid_language_is_und(raw: object) -> None:
    assert one_tweet(lang=raw).tweets[0].lang == "und"  # None: no lang at all


# --- text PostgreSQL can store -------------------------------------------------------------------


def test_parse_page_scrubs_nul_and_lone_surrogates_only_for_postgresql(
    database: Database,
) -> None:
    text = "nul\x00byte and lone \ud83d surrogate and \udfff another \u0000 #sre 🚀"
    sent = with_(TWEET, text=text)
    sent["entities"]["hashtags"][0]["tag"] = "sre\x00"
    sent["weird\x00key"] = "\ud800"
    users = [with_(USER, name="Zero\x00Cool \ud800", location="\x00")]
    body = page(sent, users=users, places=[with_(PLACE, full_name="Nul\x00City")])
    # Arrives like this from json.loads: "\u0000" and unpaired "\ud83d" escapes are valid JSON.
    result = parse_page(json.loads(json.dumps(body)))

    tweet, user, place = result.tweets[0], result.users[0], result.places[0]
    texts = [tweet.text, tweet.raw, user.name, user.raw, user.location or "", place.raw]
    for text in [*texts, place.full_name or ""]:
        assert "\x00" not in text
        assert "\\u0000" not in text
        text.encode("utf-8")  # raises on a lone surrogate
    assert tweet.text == "nulbyte and lone ? surrogate and ? another  #sre 🚀"  # pairs kept
    assert user.name == "ZeroCool ?"
    assert place.full_name == "NulCity"
    raw = json.loads(tweet.raw)
    assert raw["weirdkey"] == "?"
    assert raw["public_metrics"]["like_count"] == 1  # numbers pass through untouched
    # PostgreSQL takes every scrubbed text and raw JSON.
    strings = {"text": tweet.text, "name": user.name}
    raws = {"raw": tweet.raw, "user": user.raw, "place": place.raw}
    sql = "SELECT %(text)s::text, %(name)s::text, %(raw)s::jsonb, %(user)s::jsonb, %(place)s::jsonb"

    row = database.execute(sql, {**strings, **raws})[0]

    assert list(row) == [*strings.values(), *map(json.loads, raws.values())]


# --- duplicates and ids --------------------------------------------------------------------------


def test_parse_page_deduplicates_by_id_keeping_the_first() -> None:
    first = with_(TWEET, text="first copy")
    second = with_(TWEET, text="second copy")
    other = with_(TWEET, id="1860000000000000000")
    user_copy = with_(USER, name="Later Name")
    body = page(first, other, second, users=[USER, user_copy], places=[PLACE, PLACE])

    result = parse_page(body)

    assert [(t.id, t.text) for t in result.tweets] == [
        (1860000000000000001, "first copy"),
        (1860000000000000000, TWEET["text"]),
    ]
    assert [(u.id, u.name) for u in result.users] == [(900000000000000001, "Open Ledger")]
    assert [p.id for p in result.places] == ["01a9a39529b27f36"]


@pytest.mark.parametrize("raw", ["1", 1, "9223372036854775807", 9223372036854775807, "007"])
def test_parse_page_accepts_ids_within_bigint(raw: object) -> None:
    assert one_tweet(id=raw).tweets[0].id == int(str(raw))


@pytest.mark.parametrize(
    "raw",
    [
        *("abc", "12a", "-5", -5, "0", 0, "", " 12", "1.0", 1.0, True, None, ["1"], "1" * 40),
        *("9223372036854775808", 2**63),  # 2**63: past PostgreSQL's bigint
        "١٢٣",  # Arabic-Indic digits pass str.isdigit()
    ],
)
@pytest.mark.parametrize("field", ["id", "author_id"])
def test_parse_page_bad_tweet_ids_are_a_bad_response(field: str, raw: object) -> None:
    with pytest.raises(UpstreamBadResponse, match=field):
        parse_page(page(TWEET | {field: raw}))


# --- malformed bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "what"),
    [
        *((body, "not a JSON object") for body in (None, [], [TWEET], "data", 0, b"{}")),
        ({"data": TWEET}, "data"),
        ({"data": "tweets"}, "data"),
        ({"data": [TWEET, "x"]}, "data"),
        ({"data": [[TWEET]]}, "data"),
        ({"data": [TWEET], "includes": {"users": USER}}, "users"),
        ({"data": [TWEET], "includes": {"places": [1]}}, "places"),
        ({"data": [TWEET], "includes": ["users"]}, "includes"),
        ({"meta": []}, "meta"),
        ({"meta": "x"}, "meta"),
        ({"meta": {"next_token": 5}}, "next_token"),
        ({"meta": {"next_token": ""}}, "next_token"),
        *((page(users=[with_(USER, id=raw)]), "user") for raw in ("-1", "x", str(2**64 - 1), None)),
        (page(users=[with_(USER, username=None)]), "username"),
        (page(users=[with_(USER, username="")]), "username"),
        (page(places=[with_(PLACE, id=None)]), "place"),
        (page(places=[with_(PLACE, id="")]), "place"),
    ],
)
def test_parse_page_malformed_bodies_are_a_bad_response(body: object, what: str) -> None:
    with pytest.raises(UpstreamBadResponse, match=what) as info:
        parse_page(body)
    assert (info.value.status, info.value.code) == (502, "x_api_bad_response")


# --- places --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *(("US", "US"), ("br", "BR"), ("jP", "JP")),
        *((raw, None) for raw in ("USA", "U", "", "1A", "U.", "éé", None, 76)),
        ("ßa", None),  # isalpha(), but not ISO 3166: and "ßa".upper() is three letters
    ],
)
def test_parse_page_country_code_is_upper_case_iso_or_none(
    raw: object, expected: str | None
) -> None:
    places = [PLACE | {"country_code": raw}]

    assert parse_page(page(places=places)).places[0].country_code == expected


# --- SampleSource --------------------------------------------------------------------------------


async def test_sample_source_follows_next_token_to_the_last_page() -> None:
    # The pages' count, their tweets and the one partial error: tests/test_sample.py.
    source = SampleSource(SAMPLE_DIR)
    assert source.name == "sample"
    for tag in sample_files.manifest()["tags"]:
        results = [await source.search(tag, max_results=10, next_token=None)]
        while results[-1].next_token is not None:
            token = results[-1].next_token
            results.append(await source.search(tag, max_results=10, next_token=token))
        assert results == [parse_page(body) for body in sample_files.sample_pages(tag)], tag


@pytest.mark.parametrize(
    ("directory", "tag"),
    [(SAMPLE_DIR, t) for t in ("#opentracing", "#kubernetes", "#OpenTracing")]
    + [(Path("/nonexistent"), "#devops")],
)
async def test_sample_source_empty_or_unknown_tag_is_an_empty_page(
    directory: Path, tag: str
) -> None:
    result = await SampleSource(directory).search(tag, max_results=100, next_token=None)

    assert result == Page(tweets=(), users=(), places=(), next_token=None)


@pytest.mark.parametrize(
    ("tag", "token", "what"),
    [
        *(("#devops", t, "next_token") for t in ["", "1", "0001", "abc", "00a", "002 ", "/002"]),
        ("#devops", "../oauth/001", "next_token"),
        *((g, t, f"page {t} of {g} is missing") for g, t in [("#devops", "004"), ("#x", "002")]),
        ("#devops", "999", "page 999 of #devops is missing"),
    ],
)
async def test_sample_source_invalid_or_missing_page_is_a_bad_response(
    tag: str, token: str, what: str
) -> None:
    with pytest.raises(UpstreamBadResponse, match=what):
        await SampleSource(SAMPLE_DIR).search(tag, max_results=100, next_token=token)


@pytest.mark.parametrize(
    ("text", "what"), [('{"data": [', "not valid JSON"), ('{"data": {}}', "data")]
)
async def test_sample_source_refuses_a_broken_page(tmp_path: Path, text: str, what: str) -> None:
    (tmp_path / "devops").mkdir()
    (tmp_path / "devops" / "001.json").write_text(text, encoding="utf-8")

    with pytest.raises(UpstreamBadResponse, match=what):
        await SampleSource(tmp_path).search("#devops", max_results=100, next_token=None)


async def test_sample_source_check(tmp_path: Path) -> None:
    assert await SampleSource(SAMPLE_DIR).check() == {
        "ok": True,
        "source": "sample",
        "offline": True,
    }
    missing = await SampleSource(tmp_path).check()
    assert missing["ok"] is False
    assert str(tmp_path) in missing["error"]


def test_parse_page_accepts_any_mapping_without_includes() -> None:
    body = OrderedDict(
        data=[OrderedDict(tweet(2, 8, "2026-11-20T09:00:00.000Z"))],
        meta=OrderedDict(result_count=1),
    )

    parsed = parse_page(body)

    assert [t.id for t in parsed.tweets] == [2]
    assert (parsed.users, parsed.places) == ((), ())
    assert json.loads(parsed.tweets[0].raw)["id"] == "2"
