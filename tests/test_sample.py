"""The bundled offline sample: it regenerates byte for byte, and has the shape of X's recent
search answers that the service replays.

The generator checks its own invariants as it writes (tools/samplegen/generator.py `_check`:
the hour-boundary pair, the two-tag posts in both heads, an unambiguous top five, languages per
head); byte-identical regeneration holds the committed files to them. What the service makes
of the sample is tests/test_sample_populate.py's subject.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from service.config import DEFAULT_TAGS, SAMPLE_DIR
from service.snowflake import created_ms
from testing.fake_x import user_not_found
from tests.sample_files import manifest, sample_pages
from tools.samplegen.generator import ANCHOR, EMPTY_TAG, RARE_TAG, SAMPLE_TAGS, SEED, generate

Json = dict[str, Any]

USER_ID_RE = re.compile(r"[1-9]\d{0,19}")
TWEET_KEYS = ("id", "text", "edit_history_tweet_ids", "author_id", "created_at", "lang", "geo")
BASE_COUNTERS = {"retweet_count", "reply_count", "like_count", "quote_count"}
NEWER_COUNTERS = {"bookmark_count", "impression_count"}
SAMPLE_TAGS_BARE = {tag.removeprefix("#") for tag in SAMPLE_TAGS}


@dataclass(frozen=True)
class Sample:
    manifest: Json
    pages: dict[str, list[Json]]  # tag -> pages in next_token order, starting at 001.json

    def results(self, tag: str) -> list[Json]:
        return [tweet for page in self.pages[tag] for tweet in page.get("data", [])]

    def tweets(self) -> dict[str, Json]:
        return {t["id"]: t for tag in SAMPLE_TAGS for t in self.results(tag)}

    def all_pages(self) -> list[Json]:
        return [page for tag in SAMPLE_TAGS for page in self.pages[tag]]

    def included(self, kind: str) -> list[Json]:
        return [
            item for page in self.all_pages() for item in page.get("includes", {}).get(kind, [])
        ]


@pytest.fixture(scope="module")
def sample() -> Sample:
    return Sample(manifest(), {tag: sample_pages(tag) for tag in SAMPLE_TAGS})


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _ms(created_at: str) -> int:
    moment = datetime.strptime(created_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


# --- determinism and files ---------------------------------------------------------------------


def test_sample_regenerates_byte_identical_replacing_only_its_own_stale_files(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    generate(out)
    fresh, committed = _tree(out), _tree(SAMPLE_DIR)
    assert sorted(fresh) == sorted(committed)
    differing = [name for name in sorted(committed) if fresh[name] != committed[name]]
    assert differing == [], "regenerate with `make sample` and commit the result"
    assert sum(len(data) for data in committed.values()) < 2_000_000
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
    assert pages == committed


def test_sample_layout_and_manifest_follow_next_token_from_001(sample: Sample) -> None:
    dirs = sorted(p.name for p in SAMPLE_DIR.iterdir() if p.is_dir())
    assert dirs == sorted(tag.removeprefix("#").lower() for tag in SAMPLE_TAGS)
    for tag in SAMPLE_TAGS:
        files = sorted(p.name for p in (SAMPLE_DIR / tag.removeprefix("#")).iterdir())
        # As many files as pages on the next_token chain, where page n names n + 1 (asserted
        # by test_sample_pages_have_the_recent_search_shape): the chain skips no file.
        assert files == [f"{n:03d}.json" for n in range(1, len(sample.pages[tag]) + 1)], tag
    manifest = sample.manifest
    assert SAMPLE_TAGS == DEFAULT_TAGS
    assert manifest["tags"] == list(SAMPLE_TAGS)
    assert (manifest["seed"], manifest["anchor"]) == (SEED, "2026-11-20T12:00:00.000Z")
    assert manifest["description"]
    assert manifest["tweet_counts"] == {t: len(sample.results(t)) for t in SAMPLE_TAGS}
    assert manifest["page_counts"] == {t: len(sample.pages[t]) for t in SAMPLE_TAGS}
    assert manifest["distinct_tweets"] == len(sample.tweets()) >= 1000
    assert manifest["distinct_users"] == len({u["id"] for u in sample.included("users")})
    assert len(sample.pages[RARE_TAG]) == 1
    assert sample.pages[EMPTY_TAG] == [{"meta": {"result_count": 0}}]


# --- X's recent search shape -------------------------------------------------------------------


def test_sample_pages_have_the_recent_search_shape(sample: Sample) -> None:
    for tag in SAMPLE_TAGS:
        pages = sample.pages[tag]
        for number, page in enumerate(pages, start=1):
            where = f"{tag} page {number}"
            assert list(page) == [k for k in ("data", "includes", "errors", "meta") if k in page]
            meta, data = page["meta"], page.get("data", [])
            if not data:
                assert page == {"meta": {"result_count": 0}}, where
                continue
            assert meta["result_count"] == len(data) <= 100, where
            assert (meta["newest_id"], meta["oldest_id"]) == (data[0]["id"], data[-1]["id"])
            expected_token = f"{number + 1:03d}" if number < len(pages) else None
            assert meta.get("next_token") == expected_token, where
            assert set(meta) <= {"newest_id", "oldest_id", "result_count", "next_token"}, where
            # includes: each author and place of the page once, in order of first use, except
            # the author X reports missing in `errors`.
            includes = page["includes"]
            assert set(includes) <= {"users", "places"}
            authors = list(dict.fromkeys(t["author_id"] for t in data))
            missing = {e["resource_id"] for e in page.get("errors", [])}
            assert [u["id"] for u in includes["users"]] == [a for a in authors if a not in missing]
            place_ids = list(dict.fromkeys(t["geo"]["place_id"] for t in data if "geo" in t))
            assert [p["id"] for p in includes.get("places", [])] == place_ids


def test_sample_has_one_partial_error_page(sample: Sample) -> None:
    (page,) = [page for page in sample.all_pages() if "errors" in page]
    (error,) = page["errors"]
    missing = error["resource_id"]
    assert error == user_not_found(missing)
    assert [t["author_id"] for t in page["data"]].count(missing) == 1
    assert missing not in {u["id"] for u in sample.included("users")}


def test_sample_tweets_have_the_requested_fields_and_snowflake_ids(sample: Sample) -> None:
    anchor_ms = (ANCHOR - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    for tag in SAMPLE_TAGS:
        ids = [int(t["id"]) for t in sample.results(tag)]
        assert ids == sorted(set(ids), reverse=True), tag  # newest first, each once
    tweets = list(sample.tweets().values())
    assert any(set(t["public_metrics"]) & NEWER_COUNTERS for t in tweets)
    entities = [h["tag"] for t in tweets for h in t["entities"]["hashtags"]]
    assert any(h.lower() in SAMPLE_TAGS_BARE and h != h.lower() for h in entities)  # #DevOps
    tags_of = defaultdict(set)
    for tag in SAMPLE_TAGS:
        for tweet in sample.results(tag):
            tags_of[tweet["id"]].add(tag.removeprefix("#"))
    for tweet in tweets:
        keys = [k for k in tweet if k not in ("public_metrics", "entities")]
        assert keys == [k for k in TWEET_KEYS if k in tweet], tweet["id"]
        assert list(tweet)[-2:] == ["public_metrics", "entities"], tweet["id"]
        # The id carries the creation time (the service's since_id window relies on it), within
        # the seven days before the anchor that recent search covers.
        assert re.fullmatch(r"[1-9]\d{18}", tweet["id"])
        assert int(tweet["id"]) < 2**63
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", tweet["created_at"])
        assert created_ms(int(tweet["id"])) == _ms(tweet["created_at"])
        assert anchor_ms - 7 * 86_400_000 <= _ms(tweet["created_at"]) < anchor_ms
        assert tweet["edit_history_tweet_ids"] == [tweet["id"]]
        assert USER_ID_RE.fullmatch(tweet["author_id"])
        assert 0 < len(tweet["text"]) <= 280
        assert re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*", tweet["lang"])
        assert list(tweet.get("geo", {"place_id": 1})) == ["place_id"]
        metrics = tweet["public_metrics"]
        assert BASE_COUNTERS <= set(metrics) <= BASE_COUNTERS | NEWER_COUNTERS
        assert all(isinstance(v, int) and v >= 0 for v in metrics.values())
        # Hashtag entities point at the text and name the tags the tweet was found under.
        text, hashtags = tweet["text"], tweet["entities"]["hashtags"]
        assert list(tweet["entities"]) == ["hashtags"]
        assert text.count("#") == len(hashtags), tweet["id"]
        for entity in hashtags:
            assert list(entity) == ["start", "end", "tag"]
            start, end = entity["start"], entity["end"]
            assert text[start:end] == "#" + entity["tag"], tweet["id"]
            assert start == 0 or text[start - 1].isspace(), tweet["id"]
            after = text[end : end + 1]
            # X's parser would extend the hashtag over any of these.
            assert not after.isalnum(), tweet["id"]
            assert after != "_", tweet["id"]
            assert not unicodedata.category(after or " ").startswith("M"), tweet["id"]
        found = {h["tag"].lower() for h in hashtags} & SAMPLE_TAGS_BARE
        assert found == tags_of[tweet["id"]], tweet["id"]


def test_sample_users_and_places_are_the_same_on_every_page(sample: Sample) -> None:
    for kind, keys in (
        ("users", {"id", "name", "username", "location", "public_metrics"}),
        ("places", {"id", "full_name", "country", "country_code"}),
    ):
        seen: dict[str, Json] = {}
        for item in sample.included(kind):
            assert seen.setdefault(item["id"], item) == item, item["id"]
            assert set(item) <= keys
    users = {u["id"]: u for u in sample.included("users")}
    handles = [u["username"] for u in users.values()]
    assert len({h.lower() for h in handles}) == len(handles)
    assert all(re.fullmatch(r"[A-Za-z0-9_]{4,15}", h) for h in handles)
    assert {"location" in u for u in users.values()} == {True, False}
    for user in users.values():
        assert USER_ID_RE.fullmatch(user["id"])
        assert user["name"]
        assert set(user["public_metrics"]) == {
            *("followers_count", "following_count", "tweet_count", "listed_count")
        }
    for place in sample.included("places"):
        assert list(place) == ["id", "full_name", "country", "country_code"]
        assert re.fullmatch(r"[0-9a-f]{16}", place["id"])
        assert re.fullmatch(r"[A-Z]{2}", place["country_code"])
        assert place["full_name"]
        assert place["country"]


def test_sample_text_covers_hard_unicode(sample: Sample) -> None:
    texts = "\n".join(t["text"] for t in sample.tweets().values())
    assert "\u200d" in texts, "ZWJ emoji such as 👩‍💻"
    for script, pattern in {
        "flag emoji": "[\U0001f1e6-\U0001f1ff]{2}",
        "Arabic": "[\u0600-\u06ff]",
        "Hebrew": "[\u0590-\u05ff]",
        "Han": "[\u4e00-\u9fff]",
        "kana": "[\u3040-\u30ff]",
        "Hangul": "[\uac00-\ud7af]",
    }.items():
        assert re.search(pattern, texts), script
    assert unicodedata.normalize("NFC", texts) != texts, "decomposed accents"
