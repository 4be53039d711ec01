"""The bundled offline sample regenerates byte for byte and has the properties the service needs.

Property tests read the committed files under service/sample_data, which is what the service ships.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from service.config import DEFAULT_TAGS, SAMPLE_DIR
from service.samplegen.generator import (
    ANCHOR,
    EMPTY_TAG,
    NORMAL_TAGS,
    RARE_TAG,
    SAMPLE_TAGS,
    SEED,
    WINDOW,
    generate,
)
from service.snowflake import created_ms

Json = dict[str, Any]

TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
ID_RE = re.compile(r"[1-9]\d{18}")
USER_ID_RE = re.compile(r"[1-9]\d{0,19}")
HANDLE_RE = re.compile(r"[A-Za-z0-9_]{4,15}")
LANG_RE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*")
PAGE_KEYS = ("data", "includes", "errors", "meta")
TWEET_KEYS = ("id", "text", "edit_history_tweet_ids", "author_id", "created_at", "lang", "geo")
BASE_COUNTERS = {"retweet_count", "reply_count", "like_count", "quote_count"}
NEWER_COUNTERS = {"bookmark_count", "impression_count"}
USER_COUNTERS = {"followers_count", "following_count", "tweet_count", "listed_count"}


@dataclass(frozen=True)
class Sample:
    manifest: Json
    pages: dict[str, list[Json]]  # tag -> pages in next_token order, starting at 001.json
    visited: dict[str, list[str]]  # tag -> file names opened while following next_token

    def results(self, tag: str) -> list[Json]:
        return [tweet for page in self.pages[tag] for tweet in page.get("data", [])]

    def head(self, tag: str) -> list[Json]:
        return self.results(tag)[:100]

    def tweets(self) -> dict[str, Json]:
        return {t["id"]: t for tag in SAMPLE_TAGS for t in self.results(tag)}

    def tags_of(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = defaultdict(list)
        for tag in SAMPLE_TAGS:
            for tweet in self.results(tag):
                found[tweet["id"]].append(tag)
        return found

    def all_pages(self) -> list[Json]:
        return [page for tag in SAMPLE_TAGS for page in self.pages[tag]]

    def users(self) -> dict[str, Json]:
        return {
            u["id"]: u for p in self.all_pages() for u in p.get("includes", {}).get("users", [])
        }


def _load(root: Path) -> Sample:
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    pages: dict[str, list[Json]] = {}
    visited: dict[str, list[str]] = {}
    for tag in SAMPLE_TAGS:
        directory = root / tag.removeprefix("#")
        token: str | None = "001"
        pages[tag], visited[tag] = [], []
        while token is not None and len(pages[tag]) < 50:
            name = f"{token}.json"
            page = json.loads((directory / name).read_text(encoding="utf-8"))
            pages[tag].append(page)
            visited[tag].append(name)
            token = page["meta"].get("next_token")
    return Sample(manifest, pages, visited)


@pytest.fixture(scope="module")
def sample() -> Sample:
    return _load(SAMPLE_DIR)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _ms(created_at: str) -> int:
    moment = datetime.strptime(created_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def _stamp(ms: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _top(sample: Sample, tag: str, count: int) -> list[tuple[int, str]]:
    users = sample.users()
    authors = dict.fromkeys(t["author_id"] for t in sample.head(tag) if t["author_id"] in users)
    ranked = sorted(
        ((users[a]["public_metrics"]["followers_count"], a) for a in authors), reverse=True
    )
    return ranked[:count]


# --- determinism and files ---------------------------------------------------------------------


def test_sample_regeneration_is_byte_identical(tmp_path: Path) -> None:
    generate(tmp_path)
    fresh, committed = _tree(tmp_path), _tree(SAMPLE_DIR)
    assert sorted(fresh) == sorted(committed)
    differing = [name for name in sorted(committed) if fresh[name] != committed[name]]
    assert differing == [], "regenerate with `make sample` and commit the result"


def test_sample_generate_replaces_only_its_own_stale_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    generate(out)
    (out / "devops" / "009.json").write_text("{}", encoding="utf-8")
    (out / "retired").mkdir()
    (out / "retired" / "001.json").write_text("{}", encoding="utf-8")
    (out / "notes.txt").write_text("kept", encoding="utf-8")
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "001.json").write_text("{}", encoding="utf-8")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    manifest["tags"] += ["#retired", "#../victim"]
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")

    generate(out)

    assert not (out / "devops" / "009.json").exists()
    assert not (out / "retired").exists()
    assert (out / "notes.txt").read_text(encoding="utf-8") == "kept"
    assert (tmp_path / "victim" / "001.json").exists()
    pages = {name: data for name, data in _tree(out).items() if name.endswith(".json")}
    assert pages == _tree(SAMPLE_DIR)


def test_sample_layout_follows_next_token_from_001(sample: Sample) -> None:
    dirs = sorted(p.name for p in SAMPLE_DIR.iterdir() if p.is_dir())
    assert dirs == sorted(tag.removeprefix("#").lower() for tag in SAMPLE_TAGS)
    for tag in SAMPLE_TAGS:
        files = sorted(p.name for p in (SAMPLE_DIR / tag.removeprefix("#")).iterdir())
        numbered = [f"{n:03d}.json" for n in range(1, len(files) + 1)]
        assert files == numbered, tag
        assert sample.visited[tag] == numbered, f"{tag}: next_token chain skips or loops"


def test_sample_manifest_matches_pages(sample: Sample) -> None:
    manifest = sample.manifest
    assert SAMPLE_TAGS == DEFAULT_TAGS
    assert manifest["tags"] == list(SAMPLE_TAGS)
    assert manifest["seed"] == SEED
    assert manifest["anchor"] == "2026-11-20T12:00:00.000Z"
    assert manifest["description"]
    assert manifest["tweet_counts"] == {t: len(sample.results(t)) for t in SAMPLE_TAGS}
    assert manifest["page_counts"] == {t: len(sample.pages[t]) for t in SAMPLE_TAGS}
    assert manifest["distinct_tweets"] == len(sample.tweets())
    assert manifest["distinct_users"] == len(sample.users())


def test_sample_total_size_is_small() -> None:
    assert sum(len(data) for data in _tree(SAMPLE_DIR).values()) < 2_000_000


# --- pages ---------------------------------------------------------------------------------------


def test_sample_pages_have_the_recent_search_shape(sample: Sample) -> None:
    for tag in SAMPLE_TAGS:
        pages = sample.pages[tag]
        for number, page in enumerate(pages, start=1):
            where = f"{tag} page {number}"
            assert list(page) == [key for key in PAGE_KEYS if key in page], where
            meta, data = page["meta"], page.get("data", [])
            if not data:
                assert page == {"meta": {"result_count": 0}}, where
                continue
            assert meta["result_count"] == len(data) <= 100, where
            assert meta["newest_id"] == data[0]["id"], where
            assert meta["oldest_id"] == data[-1]["id"], where
            expected_token = f"{number + 1:03d}" if number < len(pages) else None
            assert meta.get("next_token") == expected_token, where
            assert set(meta) <= {"newest_id", "oldest_id", "result_count", "next_token"}, where


def test_sample_includes_cover_each_page(sample: Sample) -> None:
    for page in sample.all_pages():
        if "data" not in page:
            continue
        includes = page["includes"]
        authors = list(dict.fromkeys(t["author_id"] for t in page["data"]))
        missing = {e["resource_id"] for e in page.get("errors", [])}
        assert [u["id"] for u in includes["users"]] == [a for a in authors if a not in missing]
        place_ids = list(dict.fromkeys(t["geo"]["place_id"] for t in page["data"] if "geo" in t))
        if place_ids:
            assert [p["id"] for p in includes["places"]] == place_ids
        else:
            assert "places" not in includes
        assert set(includes) <= {"users", "places"}


def test_sample_tag_sizes_and_page_splits(sample: Sample) -> None:
    assert len(sample.tweets()) >= 1000
    for tag in NORMAL_TAGS:
        sizes = [page["meta"]["result_count"] for page in sample.pages[tag]]
        assert 105 <= sum(sizes) <= 180, tag
        assert 2 <= len(sizes) <= 3, tag
        assert max(sizes) <= 100, tag
        assert any(size < 100 for size in sizes[:-1]), f"{tag}: no short page before the last"
    assert 5 <= len(sample.results(RARE_TAG)) <= 15
    assert len(sample.pages[RARE_TAG]) == 1
    assert sample.pages[EMPTY_TAG] == [{"meta": {"result_count": 0}}]
    empty = (SAMPLE_DIR / EMPTY_TAG.removeprefix("#") / "001.json").read_text(encoding="utf-8")
    assert json.loads(empty) == {"meta": {"result_count": 0}}


# --- posts ---------------------------------------------------------------------------------------


def test_sample_results_newest_first_with_snowflake_ids(sample: Sample) -> None:
    for tag in SAMPLE_TAGS:
        ids = [int(t["id"]) for t in sample.results(tag)]
        assert ids == sorted(ids, reverse=True), tag
        assert len(set(ids)) == len(ids), tag
    tweets = sorted(sample.tweets().values(), key=lambda t: int(t["id"]))
    assert tweets
    for tweet in tweets:
        assert ID_RE.fullmatch(tweet["id"]), tweet["id"]
        assert int(tweet["id"]) < 2**63
        assert created_ms(int(tweet["id"])) == _ms(tweet["created_at"])
    times = [_ms(t["created_at"]) for t in tweets]
    assert times == sorted(times)


def test_sample_timestamps_are_utc_millis_within_seven_days(sample: Sample) -> None:
    anchor_ms = (ANCHOR - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    week_ms = WINDOW // timedelta(milliseconds=1)
    tweets = sample.tweets().values()
    assert tweets
    for tweet in tweets:
        assert TIME_RE.fullmatch(tweet["created_at"]), tweet["created_at"]
        assert anchor_ms - week_ms <= _ms(tweet["created_at"]) < anchor_ms
    times = [_ms(t["created_at"]) for t in tweets]
    assert max(times) - min(times) > week_ms - 12 * 3_600_000


def test_sample_has_an_hour_boundary_pair_in_a_head(sample: Sample) -> None:
    pairs = []
    for tag in NORMAL_TAGS:
        stamps = {t["created_at"] for t in sample.head(tag)}
        for stamp in stamps:
            if stamp.endswith(":59:59.999Z"):
                after = _ms(stamp) + 1
                same_day = after % 86_400_000 != 0
                if same_day and _stamp(after) in stamps:
                    pairs.append((tag, stamp))
    assert ("#devops", "2026-11-19T09:59:59.999Z") in pairs


def test_sample_cross_tag_tweets(sample: Sample) -> None:
    tags_of = sample.tags_of()
    shared = {tweet_id: tags for tweet_id, tags in tags_of.items() if len(tags) > 1}
    assert all(len(tags) == 2 for tags in shared.values())
    assert 0.05 <= len(shared) / len(tags_of) <= 0.08
    heads = {tag: {t["id"]: t for t in sample.head(tag)} for tag in SAMPLE_TAGS}
    in_both_heads = [i for i, (a, b) in shared.items() if i in heads[a] and i in heads[b]]
    assert len(in_both_heads) >= 10
    results = {tag: {t["id"]: t for t in sample.results(tag)} for tag in SAMPLE_TAGS}
    for tweet_id, (first, second) in shared.items():
        assert results[first][tweet_id] == results[second][tweet_id], tweet_id


def test_sample_tweet_objects_have_the_requested_fields(sample: Sample) -> None:
    tweets = list(sample.tweets().values())
    with_newer_counters = 0
    for tweet in tweets:
        keys = [k for k in tweet if k not in ("public_metrics", "entities")]
        assert keys == [k for k in TWEET_KEYS if k in tweet], tweet["id"]
        assert list(tweet)[-2:] == ["public_metrics", "entities"], tweet["id"]
        assert tweet["edit_history_tweet_ids"] == [tweet["id"]]
        assert USER_ID_RE.fullmatch(tweet["author_id"])
        assert tweet["text"]
        assert len(tweet["text"]) <= 280
        if "geo" in tweet:
            assert list(tweet["geo"]) == ["place_id"]
        metrics = tweet["public_metrics"]
        assert BASE_COUNTERS <= set(metrics) <= BASE_COUNTERS | NEWER_COUNTERS
        assert all(isinstance(v, int) and v >= 0 for v in metrics.values())
        with_newer_counters += bool(set(metrics) & NEWER_COUNTERS)
    assert 5 <= with_newer_counters <= len(tweets) // 20


def test_sample_hashtag_entities_match_text_and_tags(sample: Sample) -> None:
    searched = {tag.removeprefix("#") for tag in SAMPLE_TAGS}
    tags_of = sample.tags_of()
    mixed_case = 0
    for tweet_id, tweet in sample.tweets().items():
        text, hashtags = tweet["text"], tweet["entities"]["hashtags"]
        assert list(tweet["entities"]) == ["hashtags"]
        assert text.count("#") == len(hashtags), tweet_id
        previous_end = 0
        for entity in hashtags:
            assert list(entity) == ["start", "end", "tag"]
            start, end, tag = entity["start"], entity["end"], entity["tag"]
            assert "#" not in tag
            assert text[start:end] == "#" + tag, tweet_id
            assert start >= previous_end
            assert start == 0 or text[start - 1].isspace(), tweet_id
            after = text[end : end + 1]
            if after:  # X's parser would extend the hashtag over any of these
                assert not after.isalnum(), tweet_id
                assert after != "_", tweet_id
                assert not unicodedata.category(after).startswith("M"), tweet_id
            previous_end = end
            if tag.lower() in searched and tag != tag.lower():
                mixed_case += 1
        found = {h["tag"].lower() for h in hashtags} & searched
        assert found == {t.removeprefix("#") for t in tags_of[tweet_id]}, tweet_id
    assert mixed_case > 0


def test_sample_languages(sample: Sample) -> None:
    langs = Counter(t["lang"] for t in sample.tweets().values())
    assert all(LANG_RE.fullmatch(lang) for lang in langs)
    assert len(langs) >= 15
    assert langs["und"] > 0
    for tag in NORMAL_TAGS:
        assert len({t["lang"] for t in sample.head(tag)}) >= 15, tag


def test_sample_geo_tags_and_places(sample: Sample) -> None:
    tweets = list(sample.tweets().values())
    geo = [t for t in tweets if "geo" in t]
    assert 0.25 <= len(geo) / len(tweets) <= 0.35
    places: dict[str, Json] = {}
    for page in sample.all_pages():
        for place in page.get("includes", {}).get("places", []):
            assert places.setdefault(place["id"], place) == place
    assert {t["geo"]["place_id"] for t in geo} == set(places)
    for place in places.values():
        assert list(place) == ["id", "full_name", "country", "country_code"]
        assert re.fullmatch(r"[0-9a-f]{16}", place["id"])
        assert re.fullmatch(r"[A-Z]{2}", place["country_code"])
        assert place["full_name"]
        assert place["country"]
    assert len({p["country_code"] for p in places.values()}) >= 10


def test_sample_partial_error_page(sample: Sample) -> None:
    with_errors = [page for page in sample.all_pages() if "errors" in page]
    assert len(with_errors) == 1
    page = with_errors[0]
    assert len(page["errors"]) == 1
    missing = page["errors"][0]["resource_id"]
    assert page["errors"][0] == {
        "value": missing,
        "detail": f"Could not find user with ids: [{missing}].",
        "title": "Not Found Error",
        "resource_type": "user",
        "parameter": "expansions",
        "resource_id": missing,
        "type": "https://api.twitter.com/2/problems/resource-not-found",
    }
    assert [t["author_id"] for t in page["data"]].count(missing) == 1
    assert missing not in sample.users()


def test_sample_text_covers_hard_unicode(sample: Sample) -> None:
    texts = "\n".join(t["text"] for t in sample.tweets().values())
    assert "\u200d" in texts, "ZWJ emoji such as 👩‍💻"
    assert re.search("[\U0001f1e6-\U0001f1ff]{2}", texts), "flag emoji"
    assert re.search("[\u0600-\u06ff]", texts), "Arabic"
    assert re.search("[\u0590-\u05ff]", texts), "Hebrew"
    assert re.search("[\u4e00-\u9fff]", texts), "Han"
    assert re.search("[\u3040-\u30ff]", texts), "kana"
    assert re.search("[\uac00-\ud7af]", texts), "Hangul"
    assert unicodedata.normalize("NFC", texts) != texts, "decomposed accents"


# --- users ---------------------------------------------------------------------------------------


def test_sample_users_are_identical_across_pages(sample: Sample) -> None:
    seen: dict[str, Json] = {}
    for page in sample.all_pages():
        ids = [u["id"] for u in page.get("includes", {}).get("users", [])]
        assert len(ids) == len(set(ids))
        for user in page.get("includes", {}).get("users", []):
            assert seen.setdefault(user["id"], user) == user, user["id"]
    assert 200 <= len(seen) <= 999
    handles = [u["username"] for u in seen.values()]
    assert len({h.lower() for h in handles}) == len(handles)
    assert all(HANDLE_RE.fullmatch(h) for h in handles)
    assert any("location" in u for u in seen.values())
    assert any("location" not in u for u in seen.values())
    for user in seen.values():
        assert set(user) <= {"id", "name", "username", "location", "public_metrics"}
        assert USER_ID_RE.fullmatch(user["id"])
        assert user["name"]
        assert set(user["public_metrics"]) == USER_COUNTERS


def test_sample_followers_are_heavy_tailed(sample: Sample) -> None:
    counts = [u["public_metrics"]["followers_count"] for u in sample.users().values()]
    assert sum(c < 1000 for c in counts) > len(counts) / 2
    assert 2 <= sum(c > 1_000_000 for c in counts) <= 10
    assert 0 in counts


def test_sample_top_five_authors_by_followers_are_unambiguous(sample: Sample) -> None:
    for tag in SAMPLE_TAGS:
        if not sample.results(tag):
            continue
        top = [count for count, _ in _top(sample, tag, 6)]
        assert len(top) == 6, tag
        assert len(set(top)) == 6, f"{tag}: ties within or just below the top five: {top}"


def test_sample_has_a_follower_tie_outside_every_top_five(sample: Sample) -> None:
    users = sample.users().values()
    by_count: dict[int, list[str]] = defaultdict(list)
    for user in users:
        by_count[user["public_metrics"]["followers_count"]].append(user["id"])
    in_a_top_five = {user_id for tag in SAMPLE_TAGS for _, user_id in _top(sample, tag, 5)}
    ties = [ids for count, ids in by_count.items() if count > 0 and len(ids) > 1]
    assert ties
    assert all(not set(ids) & in_a_top_five for ids in ties)
    heads = {t["author_id"] for tag in NORMAL_TAGS for t in sample.head(tag)}
    assert any(set(ids) <= heads for ids in ties), "a tie among authors of the first 100"
