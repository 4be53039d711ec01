"""Generator of the bundled offline sample: X API v2 recent-search pages for the default tags.

`generate(out_dir)` writes `manifest.json` and `<tag>/<NNN>.json`. Each page file is one complete
200 body of `GET /2/tweets/search/recent`; `meta.next_token` is the next page's file stem, so a
replayer opens `<tag>/001.json` and follows `<tag>/<next_token>.json`.

The output is byte-identical on every run and machine: one seeded `random.Random`, a fixed anchor
time, integer-only draws, insertion-ordered dicts, and no iteration over sets.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from service import snowflake
from service.config import DEFAULT_TAGS
from testing.fake_x import user_not_found
from tools.samplegen import text as words

SEED: Final = 20261120
ANCHOR: Final = datetime(2026, 11, 20, 12, tzinfo=UTC)
WINDOW: Final = timedelta(days=7)
SAMPLE_TAGS: Final = DEFAULT_TAGS  # the sample covers exactly the default tags
RARE_TAG: Final = "#logmonitoring"
EMPTY_TAG: Final = "#opentracing"
NORMAL_TAGS: Final = tuple(tag for tag in SAMPLE_TAGS if tag not in (RARE_TAG, EMPTY_TAG))
MANIFEST_NAME: Final = "manifest.json"
PAGE_MAX: Final = 100
# The service reads the first 100 results of a tag by default; several guarantees target them.
HEAD: Final = 100
# Two posts one millisecond apart across an hour boundary, so hour bucketing can be tested.
BOUNDARY_TAG: Final = "#devops"
BOUNDARY_TIMES: Final = (
    datetime(2026, 11, 19, 9, 59, 59, 999_000, tzinfo=UTC),
    datetime(2026, 11, 19, 10, tzinfo=UTC),
)
PARTIAL_ERROR_TAG: Final = "#microservices"

JsonObj = dict[str, object]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR_MS: Final = 3_600_000
_DAY_MS: Final = 24 * _HOUR_MS
# Fixed sizes keep the total over 1,000 distinct posts whatever the shuffle does.
_NORMAL_COUNTS: Final = (108, 117, 126, 139, 148, 157, 166, 178)
_RARE_COUNTS: Final = (8, 12)
_CROSS_TWEETS: Final = 72
_RELATED_PAIRS: Final = (
    ("#sre", "#observability"),
    ("#observability", "#metrics"),
    ("#devops", "#sre"),
    ("#oauth", "#openbanking"),
    ("#microservices", "#observability"),
    ("#devops", "#remediation"),
    ("#devops", "#microservices"),
    ("#sre", "#metrics"),
    ("#remediation", "#sre"),
    ("#oauth", "#microservices"),
)
_USERS: Final = 340
_FAMOUS: Final = 5
_GEO_SHARE: Final = 0.30
_MIN_HEAD_LANGS: Final = 17
_DELETED_WITHIN: Final = 40  # no first page is shorter, so the error lands on page 001
_HOUR_WEIGHTS: Final = (2, 1, 1, 1, 1, 2, 3, 5, 7, 8, 9, 9, 8, 8, 9, 9, 8, 7, 6, 5, 4, 4, 3, 3)
# Heavy tails as weighted integer ranges (low, high, weight): exp() and log() may differ in the
# last bit between C libraries, and one flipped bit would change every later draw.
_FOLLOWER_TIERS: Final = (
    (0, 0, 3),
    (1, 99, 30),
    (100, 999, 42),
    (1_000, 9_999, 16),
    (10_000, 99_999, 6),
    (100_000, 999_999, 3),
)
_FOLLOWING_TIERS: Final = ((0, 50, 20), (51, 500, 50), (501, 3_000, 25), (3_001, 9_000, 5))
_TWEET_COUNT_TIERS: Final = ((0, 200, 20), (201, 5_000, 50), (5_001, 60_000, 30))
_LIKE_TIERS: Final = ((0, 0, 30), (1, 5, 35), (6, 30, 22), (31, 200, 10), (201, 2_000, 3))
_HANDLE_RE: Final = re.compile(r"[A-Za-z0-9_]{4,15}")
_DIR_RE: Final = re.compile(r"[a-z0-9_]{1,100}")
_DESCRIPTION: Final = (
    "Synthetic offline sample of X API v2 recent-search results (GET /2/tweets/search/recent), "
    "one 200 response body per file: <tag>/001.json is the first page and meta.next_token names "
    "the next page's file stem. Users, handles and posts are invented; place names are real cities."
)


@dataclass(frozen=True, slots=True)
class _Profile:
    id: str
    username: str
    name: str
    lang: str
    location: str | None


@dataclass(frozen=True, slots=True)
class _Place:
    id: str
    full_name: str
    country: str
    country_code: str
    langs: tuple[str, ...]


@dataclass(slots=True)
class _Tweet:
    id: int
    ms: int
    tags: tuple[str, ...]  # the searched tags it is filed under; the first picks the topic
    author: str = ""
    lang: str = "en"
    place: str | None = None


@dataclass(frozen=True, slots=True)
class _Sample:
    manifest: JsonObj
    pages: dict[str, list[JsonObj]]  # directory name -> its pages, first page first


def generate(out_dir: Path) -> None:
    """Write the sample under out_dir, replacing the pages and manifest of an earlier run."""
    sample = _build(random.Random(SEED))  # noqa: S311 - reproducible test data, not secrets
    _remove_stale(out_dir)
    _write(out_dir, sample)


def _build(rng: random.Random) -> _Sample:
    profiles = _make_profiles(rng)
    places = _make_places(rng)
    tweets = _schedule(rng)
    by_tag = {tag: [t for t in tweets if tag in t.tags] for tag in SAMPLE_TAGS}
    _assign_authors(rng, tweets, profiles)
    _ensure_head_languages(rng, by_tag, profiles)
    _delete_one_author(rng, by_tag[PARTIAL_ERROR_TAG], profiles)
    _assign_places(rng, tweets, places)
    followers = _followers(rng, profiles, tweets, by_tag)
    _check(tweets, by_tag, followers)
    users = _user_objects(rng, profiles, tweets, followers)
    place_objs = {p.id: _place_object(p) for p in places}
    tweet_objs = {t.id: _tweet_object(rng, t) for t in tweets}
    kinds = [0, 0, 1, 1, 2, 2, 2, 2]
    rng.shuffle(kinds)
    kind_of = dict(zip(NORMAL_TAGS, kinds, strict=True))
    pages = {
        _dir_name(tag): _paginate(
            rng, by_tag[tag], kind_of.get(tag, 2), tweet_objs, users=users, places=place_objs
        )
        for tag in SAMPLE_TAGS
    }
    manifest: JsonObj = {
        "description": _DESCRIPTION,
        "seed": SEED,
        "anchor": _timestamp(_ms(ANCHOR)),
        "window_days": WINDOW.days,
        "tags": list(SAMPLE_TAGS),
        "tweet_counts": {tag: len(by_tag[tag]) for tag in SAMPLE_TAGS},
        "page_counts": {tag: len(pages[_dir_name(tag)]) for tag in SAMPLE_TAGS},
        "distinct_tweets": len(tweets),
        "distinct_users": len(users),
    }
    return _Sample(manifest, pages)


# --- people and places -------------------------------------------------------------------------


def _make_profiles(rng: random.Random) -> list[_Profile]:
    codes = [lang for lang, _ in words.AUTHOR_LANGS]
    # Three authors per language first, so every language can be placed in every tag's head.
    langs = codes * 3
    langs += rng.choices(codes, weights=[w for _, w in words.AUTHOR_LANGS], k=_USERS - len(langs))
    ids: set[str] = set()
    handles: set[str] = set()
    profiles = []
    for lang in langs:
        location = rng.choice(words.LOCATIONS) if rng.random() < 0.55 else None
        profiles.append(
            _Profile(
                id=_user_id(rng, ids),
                username=_username(rng, handles),
                name=_display_name(rng, lang),
                lang=lang,
                location=location,
            )
        )
    return profiles


def _user_id(rng: random.Random, taken: set[str]) -> str:
    while True:
        if rng.random() < 0.3:
            # Accounts from before late 2013 have short sequential ids.
            user_id = str(rng.randint(100_000, 2_999_999_999))
        else:
            created = rng.randint(
                _ms(datetime(2014, 1, 1, tzinfo=UTC)), _ms(datetime(2025, 12, 31, tzinfo=UTC))
            )
            user_id = str(_snowflake(rng, created))
        if user_id not in taken:
            taken.add(user_id)
            return user_id


def _username(rng: random.Random, taken: set[str]) -> str:
    # X compares handles without case, so uniqueness is checked on the lower-case form.
    while True:
        stem = _word(rng, rng.randint(2, 3))
        form = rng.randrange(4)
        if form == 0:
            handle = f"{stem}{rng.randint(1, 9999)}"
        elif form == 1:
            handle = f"{stem}_{rng.choice(words.HANDLE_SUFFIXES)}"
        elif form == 2:
            handle = stem.capitalize() + rng.choice(words.HANDLE_SUFFIXES).capitalize()
        else:
            handle = stem
        if _HANDLE_RE.fullmatch(handle) and _clean(handle) and handle.lower() not in taken:
            taken.add(handle.lower())
            return handle


def _display_name(rng: random.Random, lang: str) -> str:
    roll = rng.random()
    native = words.NATIVE_NAMES.get(lang)
    if native and roll < 0.4:
        return rng.choice(native)
    first = _word(rng, 2).capitalize()
    last = _word(rng, rng.randint(2, 3)).capitalize()
    if roll < 0.6:
        return f"{first} {last}"
    if roll < 0.75:
        return f"{first} {last} {rng.choice(words.NAME_DECORATIONS)}"
    if roll < 0.9:
        return f"{first} {rng.choice(words.TEAM_WORDS)}"
    return f"{first} {last[0]}."


def _word(rng: random.Random, syllables: int) -> str:
    while True:
        word = "".join(rng.choice(words.SYLLABLES) for _ in range(syllables))
        if _clean(word):
            return word


def _clean(word: str) -> bool:
    lowered = word.lower()
    return not any(fragment in lowered for fragment in words.BLOCKED_FRAGMENTS)


def _make_places(rng: random.Random) -> list[_Place]:
    taken: set[str] = set()
    places = []
    for full_name, country, code, langs in words.PLACES:
        while (place_id := f"{rng.getrandbits(64):016x}") in taken:
            pass
        taken.add(place_id)
        places.append(_Place(place_id, full_name, country, code, tuple(langs.split())))
    return places


# --- posts -------------------------------------------------------------------------------------


def _schedule(rng: random.Random) -> list[_Tweet]:
    """Decide which tags each post is filed under and when it was posted; newest first."""
    counts = list(_NORMAL_COUNTS)
    rng.shuffle(counts)
    wanted = dict(zip(NORMAL_TAGS, counts, strict=True))
    wanted[RARE_TAG] = rng.randint(*_RARE_COUNTS)
    tag_sets: list[tuple[str, ...]] = []
    for _ in range(_CROSS_TWEETS):
        pair = rng.choice(_RELATED_PAIRS)
        tag_sets.append(pair if rng.random() < 0.5 else pair[::-1])
    tag_sets.append((RARE_TAG, "#observability"))
    filed = Counter(tag for tags in tag_sets for tag in tags)
    filed[BOUNDARY_TAG] += len(BOUNDARY_TIMES)
    for tag, count in wanted.items():
        tag_sets += [(tag,)] * (count - filed[tag])

    used = {_ms(moment) for moment in BOUNDARY_TIMES}
    tweets = [_Tweet(_snowflake(rng, _ms(m)), _ms(m), (BOUNDARY_TAG,)) for m in BOUNDARY_TIMES]
    for tags in tag_sets:
        ms = _draw_ms(rng, used)
        used.add(ms)
        tweets.append(_Tweet(_snowflake(rng, ms), ms, tags))
    tweets.sort(key=lambda t: t.id, reverse=True)
    return tweets


def _draw_ms(rng: random.Random, used: set[int]) -> int:
    # Distinct milliseconds keep id order and time order identical. Hours follow a daily rhythm.
    start, end = _ms(ANCHOR - WINDOW), _ms(ANCHOR)
    first_midnight = start - start % _DAY_MS
    while True:
        day = rng.randrange(WINDOW.days + 1)
        hour = rng.choices(range(24), weights=_HOUR_WEIGHTS)[0]
        ms = first_midnight + day * _DAY_MS + hour * _HOUR_MS + rng.randrange(_HOUR_MS)
        if start <= ms < end and ms not in used:
            return ms


def _assign_authors(
    rng: random.Random, tweets: Sequence[_Tweet], profiles: Sequence[_Profile]
) -> None:
    weights = {tag: _community(rng, len(profiles)) for tag in SAMPLE_TAGS if tag != EMPTY_TAG}
    for tweet in tweets:
        author = rng.choices(profiles, weights=weights[tweet.tags[0]])[0]
        tweet.author = author.id
        roll = rng.random()
        tweet.lang = author.lang if roll < 0.85 else ("en" if roll < 0.95 else "und")


def _community(rng: random.Random, size: int) -> list[float]:
    # Each tag has its own regulars: a random ranking of everyone with Zipf-like weights.
    order = list(range(size))
    rng.shuffle(order)
    weights = [0.0] * size
    for rank, index in enumerate(order):
        weights[index] = 1 / (rank + 8)
    return weights


def _ensure_head_languages(
    rng: random.Random, by_tag: Mapping[str, Sequence[_Tweet]], profiles: Sequence[_Profile]
) -> None:
    # Language statistics are computed over the first 100 posts per tag, so each of those windows
    # needs many languages. Only single-tag English posts are rewritten: no other head changes.
    speakers: dict[str, list[_Profile]] = {}
    for profile in profiles:
        speakers.setdefault(profile.lang, []).append(profile)
    for tag in NORMAL_TAGS:
        head = by_tag[tag][:HEAD]
        present = {t.lang for t in head}
        spare = [t for t in head if t.lang == "en" and len(t.tags) == 1]
        for lang in [*speakers, "und"]:
            if len(present) >= _MIN_HEAD_LANGS:
                break
            if lang in present:
                continue
            tweet = spare.pop(rng.randrange(len(spare)))
            tweet.lang = lang
            if lang in speakers:
                tweet.author = rng.choice(speakers[lang]).id
            present.add(lang)


def _delete_one_author(
    rng: random.Random, tweets: Sequence[_Tweet], profiles: Sequence[_Profile]
) -> None:
    # X keeps a post whose author is gone and reports the missing include under `errors`.
    candidates = [t for t in tweets[:_DELETED_WITHIN] if len(t.tags) == 1]
    rng.choice(candidates).author = _user_id(rng, {p.id for p in profiles})


def _assign_places(rng: random.Random, tweets: Sequence[_Tweet], places: Sequence[_Place]) -> None:
    by_lang: dict[str, list[_Place]] = {}
    for place in places:
        for lang in place.langs:
            by_lang.setdefault(lang, []).append(place)
    for tweet in tweets:
        if rng.random() < _GEO_SHARE:
            tweet.place = rng.choice(by_lang.get(tweet.lang, places)).id


def _followers(
    rng: random.Random,
    profiles: Sequence[_Profile],
    tweets: Sequence[_Tweet],
    by_tag: Mapping[str, Sequence[_Tweet]],
) -> dict[str, int]:
    # Counts are unique apart from zeros and one deliberate pair, so every tag's top five is
    # unambiguous while ordering ties by username is still exercised.
    authors = {t.author for t in tweets}
    ids = [p.id for p in profiles if p.id in authors]
    famous = set(rng.sample(ids, _FAMOUS))
    used: set[int] = set()
    followers: dict[str, int] = {}
    for user_id in ids:
        while True:
            if user_id in famous:
                count = rng.randint(1_000_000, 12_000_000)
            else:
                count = _tiered(rng, _FOLLOWER_TIERS)
            if count == 0 or count not in used:
                break
        used.add(count)
        followers[user_id] = count
    # The tied pair sits mid-table in one head, far below any tag's top six.
    head_authors = {t.author for t in by_tag[BOUNDARY_TAG][:HEAD] if t.author in followers}
    ranked = sorted(head_authors, key=lambda a: (followers[a], a), reverse=True)
    middle = len(ranked) // 2
    followers[ranked[middle]] = followers[ranked[middle + 1]]
    return followers


def _check(
    tweets: Sequence[_Tweet], by_tag: Mapping[str, Sequence[_Tweet]], followers: Mapping[str, int]
) -> None:
    # The seed is fixed, so these hold; they guard later edits of this module or its word lists.
    problems = []
    heads = {tag: {t.id for t in by_tag[tag][:HEAD]} for tag in SAMPLE_TAGS}
    shared = [t for t in tweets if len(t.tags) == 2 and all(t.id in heads[g] for g in t.tags)]
    if len(shared) < 10:
        problems.append(f"only {len(shared)} two-tag posts are in the first 100 of both tags")
    boundary = {_ms(m) for m in BOUNDARY_TIMES}
    if sum(t.ms in boundary for t in by_tag[BOUNDARY_TAG][:HEAD]) != len(boundary):
        problems.append("the hour-boundary pair is not in the first 100 of its tag")
    for tag in SAMPLE_TAGS:
        head = by_tag[tag][:HEAD]
        if not head:
            continue
        authors = dict.fromkeys(t.author for t in head if t.author in followers)
        top = sorted((followers[a] for a in authors), reverse=True)[:6]
        if len(set(top)) < 6:
            problems.append(f"{tag}: the top five authors by followers are ambiguous: {top}")
        if tag in NORMAL_TAGS and len({t.lang for t in head}) < _MIN_HEAD_LANGS:
            problems.append(f"{tag}: too few languages in the first 100")
    if problems:
        raise ValueError("sample invariants broken: " + "; ".join(problems))


def _tiered(rng: random.Random, tiers: Sequence[tuple[int, int, int]]) -> int:
    low, high, _ = rng.choices(tiers, weights=[weight for _, _, weight in tiers])[0]
    return rng.randint(low, high)


# --- JSON objects ------------------------------------------------------------------------------


def _user_objects(
    rng: random.Random,
    profiles: Sequence[_Profile],
    tweets: Sequence[_Tweet],
    followers: Mapping[str, int],
) -> dict[str, JsonObj]:
    authored = Counter(t.author for t in tweets)
    users: dict[str, JsonObj] = {}
    for profile in profiles:
        if profile.id not in followers:
            continue
        count = followers[profile.id]
        user: JsonObj = {"id": profile.id, "name": profile.name, "username": profile.username}
        if profile.location is not None:
            user["location"] = profile.location
        user["public_metrics"] = {
            "followers_count": count,
            "following_count": _tiered(rng, _FOLLOWING_TIERS),
            "tweet_count": authored[profile.id] + _tiered(rng, _TWEET_COUNT_TIERS),
            "listed_count": rng.randint(0, count // 50),
        }
        users[profile.id] = user
    return users


def _place_object(place: _Place) -> JsonObj:
    return {
        "id": place.id,
        "full_name": place.full_name,
        "country": place.country,
        "country_code": place.country_code,
    }


def _tweet_object(rng: random.Random, tweet: _Tweet) -> JsonObj:
    text, hashtags = _text(rng, tweet)
    obj: JsonObj = {
        "id": str(tweet.id),
        "text": text,
        "edit_history_tweet_ids": [str(tweet.id)],
        "author_id": tweet.author,
        "created_at": _timestamp(tweet.ms),
        "lang": tweet.lang,
    }
    if tweet.place is not None:
        obj["geo"] = {"place_id": tweet.place}
    obj["public_metrics"] = _public_metrics(rng)
    obj["entities"] = {"hashtags": hashtags}
    return obj


def _public_metrics(rng: random.Random) -> dict[str, int]:
    likes = _tiered(rng, _LIKE_TIERS)
    retweets = rng.randint(0, likes // 3)
    metrics = {
        "retweet_count": retweets,
        "reply_count": rng.randint(0, min(likes, 12)),
        "like_count": likes,
        "quote_count": rng.randint(0, retweets // 4),
    }
    # X adds counters over time; a few posts carry newer ones that consumers must ignore.
    roll = rng.random()
    if roll < 0.03:
        metrics["bookmark_count"] = rng.randint(0, likes // 2)
    if roll < 0.015:
        metrics["impression_count"] = likes * rng.randint(20, 120) + rng.randint(10, 400)
    return metrics


def _text(rng: random.Random, tweet: _Tweet) -> tuple[str, list[JsonObj]]:
    if tweet.lang == "en":
        topic = rng.choice(words.TOPICS[tweet.tags[0]])
        sentence = rng.choice(words.EN_TEMPLATES).replace("{topic}", topic)
    else:
        sentence = rng.choice(words.TEMPLATES[tweet.lang])
    # X matches hashtags without case; the entity keeps the spelling as typed.
    tags = [
        words.CASE_VARIANTS[tag] if rng.random() < 0.12 else tag.removeprefix("#")
        for tag in tweet.tags
    ]
    pool = words.EXTRA_HASHTAGS + words.NATIVE_HASHTAGS.get(tweet.lang, ())
    tags += rng.sample(pool, rng.choice((0, 0, 1, 1, 2)))
    return _compose(rng, sentence, tags)


def _compose(rng: random.Random, sentence: str, tags: Sequence[str]) -> tuple[str, list[JsonObj]]:
    # Pieces are (is_hashtag, text). Offsets are counted while joining, in code points as X counts
    # them; hashtags always follow a space or the start, which is where X's parser expects them.
    pieces: list[tuple[bool, str]]
    if "{h}" in sentence:
        before, after = sentence.split("{h}", 1)
        pieces = [(False, before), (True, tags[0]), (False, after)]
        rest = tags[1:]
    elif rng.random() < 0.15:
        pieces = [(True, tags[0]), (False, " " + sentence)]
        rest = tags[1:]
    else:
        pieces = [(False, sentence)]
        rest = tags
    for tag in rest:
        pieces += [(False, " "), (True, tag)]
    roll = rng.random()
    if roll < 0.2:
        pieces.append((False, " " + rng.choice(words.EMOJI)))
    elif roll < 0.3:
        pieces.insert(0, (False, rng.choice(words.EMOJI) + " "))
    text = ""
    hashtags: list[JsonObj] = []
    for is_tag, piece in pieces:
        if is_tag:
            hashtags.append({"start": len(text), "end": len(text) + 1 + len(piece), "tag": piece})
            piece = "#" + piece
        text += piece
    return text, hashtags


# --- pages -------------------------------------------------------------------------------------


def _paginate(
    rng: random.Random,
    tweets: Sequence[_Tweet],
    kind: int,
    tweet_objs: Mapping[int, JsonObj],
    *,
    users: Mapping[str, JsonObj],
    places: Mapping[str, JsonObj],
) -> list[JsonObj]:
    if not tweets:
        return [{"meta": {"result_count": 0}}]
    sizes = _page_sizes(rng, len(tweets), kind)
    pages = []
    start = 0
    for number, size in enumerate(sizes, start=1):
        chunk = tweets[start : start + size]
        start += size
        next_token = _stem(number + 1) if number < len(sizes) else None
        pages.append(_page(chunk, tweet_objs, users=users, places=places, next_token=next_token))
    return pages


def _page_sizes(rng: random.Random, count: int, kind: int) -> list[int]:
    # X may return fewer posts than max_results and still give a next_token, so every multi-page
    # tag has a short page before its last: consumers must page by token, not by count.
    if count <= PAGE_MAX:
        return [count]
    if kind == 0 and count >= 130:
        second = rng.randint(15, min(60, count - PAGE_MAX - 1))
        return [PAGE_MAX, second, count - PAGE_MAX - second]
    if kind == 1:
        first = rng.randint(_DELETED_WITHIN, 70)
        second = rng.randint(max(20, count - first - PAGE_MAX), min(60, count - first - 1))
        return [first, second, count - first - second]
    first = rng.randint(max(count - PAGE_MAX, 55), 97)
    return [first, count - first]


def _page(
    chunk: Sequence[_Tweet],
    tweet_objs: Mapping[int, JsonObj],
    *,
    users: Mapping[str, JsonObj],
    places: Mapping[str, JsonObj],
    next_token: str | None,
) -> JsonObj:
    authors = list(dict.fromkeys(t.author for t in chunk))
    place_ids = list(dict.fromkeys(t.place for t in chunk if t.place is not None))
    includes: JsonObj = {"users": [users[a] for a in authors if a in users]}
    if place_ids:
        includes["places"] = [places[p] for p in place_ids]
    page: JsonObj = {"data": [tweet_objs[t.id] for t in chunk], "includes": includes}
    errors = [user_not_found(a) for a in authors if a not in users]
    if errors:
        page["errors"] = errors
    meta: JsonObj = {
        "newest_id": str(chunk[0].id),
        "oldest_id": str(chunk[-1].id),
        "result_count": len(chunk),
    }
    if next_token is not None:
        meta["next_token"] = next_token
    page["meta"] = meta
    return page


# --- files -------------------------------------------------------------------------------------


def _remove_stale(out_dir: Path) -> None:
    # Only what this generator writes is removed: --out may name a directory holding other files.
    for name in _owned_dirs(out_dir):
        directory = out_dir / name
        if not directory.is_dir():
            continue
        for page in sorted(directory.glob("*.json")):
            page.unlink()
        with suppress(OSError):  # it still holds files that are not ours
            directory.rmdir()
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)


def _owned_dirs(out_dir: Path) -> list[str]:
    names = [_dir_name(tag) for tag in SAMPLE_TAGS]
    # Tags an earlier run listed may since have been dropped; their pages are stale too.
    with suppress(OSError, ValueError):
        old = json.loads((out_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
        if isinstance(old, dict) and isinstance(old.get("tags"), list):
            names += [_dir_name(t) for t in old["tags"] if isinstance(t, str)]
    # The manifest is data, not a trusted path: only plain child directory names are touched.
    return [name for name in dict.fromkeys(names) if _DIR_RE.fullmatch(name)]


def _write(out_dir: Path, sample: _Sample) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, pages in sample.pages.items():
        (out_dir / name).mkdir(exist_ok=True)
        for number, page in enumerate(pages, start=1):
            _write_json(out_dir / name / f"{_stem(number)}.json", page)
    _write_json(out_dir / MANIFEST_NAME, sample.manifest)


def _write_json(path: Path, obj: JsonObj) -> None:
    # Bytes, not text mode: no newline translation, so every platform writes identical files.
    path.write_bytes(json.dumps(obj, ensure_ascii=False, indent=1).encode("utf-8") + b"\n")


# --- small helpers -----------------------------------------------------------------------------


def _dir_name(tag: str) -> str:
    return tag.removeprefix("#").lower()


def _stem(number: int) -> str:
    return f"{number:03d}"


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _timestamp(ms: int) -> str:
    moment = _EPOCH + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _snowflake(rng: random.Random, ms: int) -> int:
    return snowflake.make_id(ms, rng.getrandbits(snowflake.LOW_BITS))
