"""Domain records shared by the sources, ingestion and queries. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    name: str
    followers: int
    following: int
    tweet_count: int
    location: str | None
    raw: str  # the user object as received, JSON text


@dataclass(frozen=True, slots=True)
class Place:
    id: str
    full_name: str | None
    country: str | None
    country_code: str | None
    raw: str


@dataclass(frozen=True, slots=True)
class Tweet:
    id: int
    author_id: int
    created_at: datetime
    lang: str
    place_id: str | None
    text: str
    raw: str


@dataclass(frozen=True, slots=True)
class Page:
    """One search response, parsed. `next_token` is None on the last page."""

    tweets: tuple[Tweet, ...]
    users: tuple[User, ...]
    places: tuple[Place, ...]
    next_token: str | None
    partial_errors: int = 0


@dataclass(slots=True)
class TagBatch:
    """Everything one tag's search returned in a populate run, trimmed to the requested count."""

    tag: str
    tweets: list[Tweet] = field(default_factory=list)
    users: list[User] = field(default_factory=list)
    places: list[Place] = field(default_factory=list)
    pages: int = 0


@dataclass(frozen=True, slots=True)
class PopulateResult:
    run_id: int
    source: str
    per_tag: dict[str, int]
    tweets_new: int
    tweets_seen: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Summary:
    """Totals over the stored data and the populate that last changed it."""

    tweets: int
    authors: int
    tags: int
    first_hour: datetime | None
    last_hour: datetime | None
    run_id: int | None
    source: str | None
    finished_at: datetime | None


ComplianceKind = Literal["tweets", "users"]


@dataclass(frozen=True, slots=True)
class ComplianceItem:
    """One line of a compliance job's results file."""

    kind: ComplianceKind
    id: int
    # "delete" | "scrub_geo"; X may add more: unknown actions are counted, not applied.
    action: str
    reason: str  # e.g. "deleted", "suspended", "protected", "deactivated", "scrub_geo"


@dataclass(frozen=True, slots=True)
class ComplianceCounts:
    checked: dict[str, int]  # ids uploaded: {"tweets": n, "users": n}
    applied: dict[str, dict[str, dict[str, int]]]  # kind -> action -> reason -> rows changed
