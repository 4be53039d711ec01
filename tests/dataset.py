"""A small hand-made dataset whose aggregates are worked out by hand below. Tweet ids follow
time, as X ids do; 1007 is found by both searches."""

from __future__ import annotations

from typing import Any

from testing.fake_x import FakeX, place, tweet, user

USERS = {
    "alice": user(501, "alice", 5000),
    "bob": user(502, "bob", 120),
    "carol": user(503, "carol", 5000, name="Carol 👩‍💻"),
    "dave": user(504, "dave", 0),
    "erin": user(505, "erin", 999_999, name="إيرين"),
}
PLACES = {
    "p-br": place("0a0b0c0d0e0f0001", "BR", "Brazil"),
    "p-jp": place("0a0b0c0d0e0f0002", "JP", "Japan"),
    "p-us": place("0a0b0c0d0e0f0003", "US", "United States"),
}


def _t(
    tweet_id: int, who: str, when: str, lang: str, where: str | None, text: str
) -> dict[str, Any]:
    place_id = PLACES[where]["id"] if where else None
    return tweet(tweet_id, int(USERS[who]["id"]), when, lang=lang, place_id=place_id, text=text)


T1001 = _t(1001, "alice", "2026-11-19T23:00:00.000Z", "und", None, "late night #sre")
T1002 = _t(1002, "erin", "2026-11-20T08:15:00.000Z", "ar", None, "مرحبا بالجميع #devops 🚀")
T1003 = _t(1003, "bob", "2026-11-20T09:00:00.000Z", "es", "p-jp", "guardia #sre 日本")
T1004 = _t(1004, "alice", "2026-11-20T09:59:59.999Z", "en", "p-br", "pipeline green #devops")
T1005 = _t(1005, "bob", "2026-11-20T10:00:00.000Z", "es", None, "despliegue #devops")
T1006 = _t(1006, "carol", "2026-11-20T10:30:00.000Z", "en", "p-us", "café ☕ #devops")
T1007 = _t(1007, "dave", "2026-11-20T10:59:59.999Z", "en", "p-br", "both #devops #sre")

DEVOPS = [T1002, T1004, T1005, T1006, T1007]
SRE = [T1001, T1003, T1007]


def load(fake: FakeX) -> None:
    fake.add("#devops", DEVOPS, list(USERS.values()), list(PLACES.values()))
    fake.add("#sre", SRE, list(USERS.values()), list(PLACES.values()))


EXPECTED_USERS = [
    {"username": "erin", "followers": 999_999},
    {"username": "alice", "followers": 5000},
    {"username": "carol", "followers": 5000},  # tie with alice: username decides
    {"username": "bob", "followers": 120},
    {"username": "dave", "followers": 0},
]
EXPECTED_HOURS = [
    {"date": "2026-11-19T23:00:00Z", "count": 1},
    {"date": "2026-11-20T08:00:00Z", "count": 1},
    {"date": "2026-11-20T09:00:00Z", "count": 2},  # 09:00:00.000 and 09:59:59.999
    {"date": "2026-11-20T10:00:00Z", "count": 3},  # 10:00:00.000, 10:30, 10:59:59.999
]
EXPECTED_TAGS = [
    {"tag": "#devops", "language": "en", "country": "BR", "count": 2},
    {"tag": "#devops", "language": "ar", "country": None, "count": 1},
    {"tag": "#devops", "language": "en", "country": "US", "count": 1},
    {"tag": "#devops", "language": "es", "country": None, "count": 1},
    {"tag": "#sre", "language": "en", "country": "BR", "count": 1},
    {"tag": "#sre", "language": "es", "country": "JP", "count": 1},
    {"tag": "#sre", "language": "und", "country": None, "count": 1},
]
# The three reads, in the order of calls.READS, and the rows the dataset leaves stored.
EXPECTED_READS = [EXPECTED_USERS, EXPECTED_HOURS, EXPECTED_TAGS]
STORED = {"tweets": 7, "tweet_tags": 8, "users": 5, "places": 3}
NOTHING = dict.fromkeys(STORED, 0)
