"""Synthetic recent-search results in the X API v2 wire format, at any size, deterministically.

The shape follows the bundled sample (tools/samplegen/): the same languages and places, 30 %
of tweets geo-tagged, and per stored tweet about 1.15 tag rows and 0.3 authors, i.e. 2.45 rows
per tweet across tweets, tweet_tags and users, as in the issue's reference figures. Tweets are
spread over DAYS days, so the views grow with the data only as far as their keys allow: the
tag view is bounded by tags x languages x countries, the hour view by DAYS x 24.

`SyntheticSource` is a `TweetSource`: the service's own Populator drives it exactly like the X
source, and every page it serves is a v2 response body that goes through `parse_page`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from service import snowflake
from service.config import DEFAULT_TAGS
from service.model import Page, Place, Tweet, User
from service.sources.parse import parse_page
from tools.samplegen.text import AUTHOR_LANGS, PLACES

DAYS: Final = 30
ANCHOR: Final = datetime(2026, 11, 20, 12, tzinfo=UTC)
CROSS_PERCENT: Final = 15  # tweets that a second searched tag also returns
GEO_PERCENT: Final = 30
USERS_PER_TWEET: Final = 0.3
PAGE_SIZE: Final = 100
_ANCHOR_MS: Final = int(ANCHOR.timestamp() * 1000)
_SPAN_MS: Final = DAYS * 86_400_000
# Knuth's multiplicative hash: cheap, deterministic, well spread; no random module state.
_MIX: Final = 2_654_435_761
# Synthetic user ids start far above the sample's, so stacked datasets never share an author.
USER_BASE: Final = 7_000_000_000


def _h(n: int, salt: int) -> int:
    return ((n + salt) * _MIX) & 0xFFFFFFFF


def _weighted(pairs: Sequence[tuple[str, int]]) -> tuple[str, ...]:
    return tuple(value for value, weight in pairs for _ in range(weight))


_LANGS: Final = _weighted(AUTHOR_LANGS)
_PLACES_BY_LANG: Final = {
    lang: tuple(i for i, place in enumerate(PLACES) if lang in place[3].split())
    for lang, _ in AUTHOR_LANGS
}


def place_id(index: int) -> str:
    return f"{0xB0000000 + index:08x}{index * 7919:08x}"


def place_object(index: int) -> dict[str, Any]:
    full_name, country, code, _ = PLACES[index]
    return {"id": place_id(index), "full_name": full_name, "country": country, "country_code": code}


@dataclass(frozen=True, slots=True)
class Dataset:
    """`tweets` distinct tweets numbered 0..tweets-1, offset by `first` so datasets can stack."""

    tweets: int
    first: int = 0
    tags: tuple[str, ...] = DEFAULT_TAGS

    @property
    def users(self) -> int:
        return max(1, int(self.tweets * USERS_PER_TWEET))

    def tag_of(self, n: int) -> int:
        return n % len(self.tags)

    def second_tag_of(self, n: int) -> int | None:
        if _h(n, 1) % 100 >= CROSS_PERCENT:
            return None
        return (self.tag_of(n) + 1 + _h(n, 2) % (len(self.tags) - 1)) % len(self.tags)

    def author_of(self, n: int) -> int:
        return self.first + _h(n, 3) % self.users

    def all_members(self) -> list[list[int]]:
        """members() of every tag, in one pass over the tweets."""
        found: list[list[int]] = [[] for _ in self.tags]
        for n in range(self.first, self.first + self.tweets):
            found[self.tag_of(n)].append(n)
            second = self.second_tag_of(n)
            if second is not None:
                found[second].append(n)
        for members in found:
            members.sort(key=self.tweet_id, reverse=True)
        return found

    def created_ms(self, n: int) -> int:
        # Spread evenly over the span; the hash breaks the id/time lock-step between tags.
        return _ANCHOR_MS - (_h(n, 4) * _SPAN_MS >> 32)

    def tweet_id(self, n: int) -> int:
        # Snowflake layout: a newer tweet has a bigger id. The low 22 bits keep ids unique.
        return snowflake.make_id(self.created_ms(n), n & 0x3FFFFF)

    def lang_of_user(self, user: int) -> str:
        return _LANGS[_h(user, 5) % len(_LANGS)]

    def tweet_object(self, n: int) -> dict[str, Any]:
        tag = self.tags[self.tag_of(n)]
        second = self.second_tag_of(n)
        tags = [tag] if second is None else [tag, self.tags[second]]
        text = "Notes from today's work on " + " ".join(tags) + f" (#{n})"
        author = self.author_of(n)
        lang = self.lang_of_user(author)
        ms = self.created_ms(n)
        tweet_id = str(self.tweet_id(n))
        start = 27
        hashtags = []
        for t in tags:
            hashtags.append({"start": start, "end": start + len(t), "tag": t[1:]})
            start += len(t) + 1
        body: dict[str, Any] = {
            "id": tweet_id,
            "text": text,
            "edit_history_tweet_ids": [tweet_id],
            "author_id": str(USER_BASE + author),
            "created_at": _iso(ms),
            "lang": lang,
            "public_metrics": {
                "retweet_count": _h(n, 6) % 20,
                "reply_count": _h(n, 7) % 10,
                "like_count": _h(n, 8) % 300,
                "quote_count": _h(n, 9) % 3,
            },
            "entities": {"hashtags": hashtags},
        }
        places = _PLACES_BY_LANG.get(lang, ())
        if places and _h(n, 10) % 100 < GEO_PERCENT:
            body["geo"] = {"place_id": place_id(places[_h(n, 11) % len(places)])}
        return body

    def user_object(self, user: int) -> dict[str, Any]:
        return {
            "id": str(USER_BASE + user),
            "name": f"Synthetic Author {user}",
            "username": f"author_{user:07d}",
            "public_metrics": {
                "followers_count": _h(user, 12) % 1_000_000 >> (_h(user, 13) % 12),
                "following_count": _h(user, 14) % 3000,
                "tweet_count": _h(user, 15) % 60_000,
                "listed_count": _h(user, 16) % 50,
            },
        }

    def page_body(self, numbers: Sequence[int], next_token: str | None) -> dict[str, Any]:
        """One 200 body of GET /2/tweets/search/recent holding these tweets."""
        tweets = [self.tweet_object(n) for n in numbers]
        authors = sorted({self.author_of(n) for n in numbers})
        place_ids = sorted({t["geo"]["place_id"] for t in tweets if "geo" in t})
        by_id = {place_id(i): i for i in range(len(PLACES))}
        includes: dict[str, Any] = {"users": [self.user_object(a) for a in authors]}
        if place_ids:
            includes["places"] = [place_object(by_id[p]) for p in place_ids]
        meta: dict[str, Any] = {
            "newest_id": tweets[0]["id"],
            "oldest_id": tweets[-1]["id"],
            "result_count": len(tweets),
        }
        if next_token is not None:
            meta["next_token"] = next_token
        return {"data": tweets, "includes": includes, "meta": meta}


def _iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


@dataclass
class SyntheticSource:
    """A TweetSource serving a Dataset; keeps every parsed page for the COPY baseline."""

    dataset: Dataset
    name: str = "synthetic"
    served: list[tuple[str, Page]] = field(default_factory=list)
    _members: dict[str, list[int]] = field(default_factory=dict)

    def per_tag(self) -> int:
        """The largest number of tweets any tag returns: the Populator's tweets_per_tag."""
        return max(len(self._members_of(tag)) for tag in self.dataset.tags)

    def _members_of(self, tag: str) -> list[int]:
        if not self._members:
            every = self.dataset.all_members()
            self._members = {t: every[i] for i, t in enumerate(self.dataset.tags)}
        return self._members[tag]

    async def search(
        self, tag: str, *, max_results: int, next_token: str | None, since_id: int | None = None
    ) -> Page:
        del since_id  # the bench loads full runs
        members = self._members_of(tag)
        start = int(next_token or 0) * PAGE_SIZE
        chunk = members[start : start + min(PAGE_SIZE, max(10, max_results))]
        if not chunk:
            return Page(tweets=(), users=(), places=(), next_token=None)
        more = start + len(chunk) < len(members)
        body = self.dataset.page_body(chunk, str(start // PAGE_SIZE + 1) if more else None)
        page = parse_page(body)
        self.served.append((tag, page))
        return page

    async def check(self) -> dict[str, Any]:
        return {"ok": True, "source": self.name}


@dataclass(frozen=True, slots=True)
class Rows:
    """What a populate stores for the served pages, deduplicated the way the Populator does."""

    tweets: list[Tweet]
    users: list[User]
    places: list[Place]
    tweet_tags: list[tuple[str, int]]

    @property
    def count(self) -> int:
        return len(self.tweets) + len(self.users) + len(self.places) + len(self.tweet_tags)


def rows_of(served: Sequence[tuple[str, Page]]) -> Rows:
    tweets: dict[int, Tweet] = {}
    users: dict[int, User] = {}
    places: dict[str, Place] = {}
    tags: dict[tuple[str, int], None] = {}
    for tag, page in served:
        for t in page.tweets:
            tweets.setdefault(t.id, t)
            tags[(tag, t.id)] = None
        users.update((u.id, u) for u in page.users)
        places.update((p.id, p) for p in page.places)
    return Rows(
        tweets=[tweets[k] for k in sorted(tweets)],
        users=[users[k] for k in sorted(users)],
        places=[places[k] for k in sorted(places)],
        tweet_tags=list(tags),
    )
