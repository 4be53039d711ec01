"""X API v2 search pages -> domain records. Both sources (live X and the bundled sample) use this.

The parser is strict about what the service relies on (ids, authors, timestamps) and lenient about
everything else: unknown fields are ignored, a missing include just leaves the tweet without it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from service.errors import UpstreamBadResponse
from service.model import Page, Place, Tweet, User

_BIGINT_MAX: Final = 2**63 - 1
_LANG_RE: Final = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")
# X sends `2026-11-20T09:00:00.000Z`; accept any ISO-8601 form, plus Twitter v1's
# `Wed Nov 20 09:00:00 +0000 2026`, which some proxies and archives still emit.
_V1_FORMAT: Final = "%a %b %d %H:%M:%S %z %Y"


def parse_page(body: object) -> Page:
    """Parse one 200 response body of GET /2/tweets/search/recent."""
    if not isinstance(body, Mapping):
        raise UpstreamBadResponse("X API response is not a JSON object")
    return _parse_page(_scrub(body))


def _parse_page(body: Mapping[str, Any]) -> Page:
    meta = body.get("meta", {})
    if not isinstance(meta, Mapping):
        raise UpstreamBadResponse("X API response has a malformed 'meta'")
    includes = body.get("includes") or {}
    if not isinstance(includes, Mapping):
        raise UpstreamBadResponse("X API response has a malformed 'includes'")

    tweets = _unique(_parse_tweet(item) for item in _list(body, "data"))
    users = _unique(_parse_user(item) for item in _list(includes, "users"))
    places = _unique(_parse_place(item) for item in _list(includes, "places"))
    token = meta.get("next_token")
    if token is not None and (not isinstance(token, str) or not token):
        raise UpstreamBadResponse("X API response has a malformed 'meta.next_token'")
    errors = body.get("errors") or []
    return Page(
        tweets=tuple(tweets),
        users=tuple(users),
        places=tuple(places),
        next_token=token,
        partial_errors=len(errors) if isinstance(errors, list) else 0,
    )


_T = TypeVar("_T", Tweet, User, Place)


def _unique(items: Iterable[_T]) -> list[_T]:
    # A page can repeat an object; keep the first, as the API orders newest first.
    seen: set[object] = set()
    result: list[_T] = []
    for item in items:
        if item.id not in seen:
            seen.add(item.id)
            result.append(item)
    return result


def _list(parent: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise UpstreamBadResponse(f"X API response has a malformed '{key}' list")
    return value


def _id(obj: Mapping[str, Any], key: str, what: str) -> int:
    value = obj.get(key)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise UpstreamBadResponse(f"X API {what} has a missing or non-numeric {key!r}")
    if not 0 < number <= _BIGINT_MAX:
        raise UpstreamBadResponse(f"X API {what} has an out-of-range {key!r}")
    return number


def _str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) else None


def _count(obj: Mapping[str, Any], key: str) -> int:
    metrics = obj.get("public_metrics")
    value = metrics.get(key) if isinstance(metrics, Mapping) else None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        # The columns are 32-bit; no account comes near that, so clamp rather than fail a run.
        return min(value, 2**31 - 1)
    return 0


def parse_timestamp(value: object) -> datetime:
    if not isinstance(value, str) or not value:
        raise UpstreamBadResponse("X API tweet has no 'created_at'")
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            parsed = datetime.strptime(text, _V1_FORMAT)
        except ValueError:
            raise UpstreamBadResponse(
                f"X API tweet has an unreadable 'created_at': {text[:40]!r}"
            ) from None
    # The API speaks UTC; a timestamp without an offset is taken as UTC, not local time.
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00 is before year 1 in UTC
        raise UpstreamBadResponse(
            f"X API tweet has an out-of-range 'created_at': {text[:40]!r}"
        ) from None


def _lang(value: str | None) -> str:
    # fullmatch: `$` would also match before a trailing newline.
    if value is None or not _LANG_RE.fullmatch(value):
        return "und"
    return value.lower()


def _parse_tweet(obj: Mapping[str, Any]) -> Tweet:
    geo = obj.get("geo")
    place_id = geo.get("place_id") if isinstance(geo, Mapping) else None
    return Tweet(
        id=_id(obj, "id", "tweet"),
        author_id=_id(obj, "author_id", "tweet"),
        created_at=parse_timestamp(obj.get("created_at")),
        lang=_lang(_str(obj, "lang")),
        place_id=place_id if isinstance(place_id, str) and place_id else None,
        text=_str(obj, "text") or "",
        raw=_dump(obj),
    )


def _parse_user(obj: Mapping[str, Any]) -> User:
    username = _str(obj, "username")
    if not username:
        raise UpstreamBadResponse("X API user has no 'username'")
    return User(
        id=_id(obj, "id", "user"),
        username=username,
        name=_str(obj, "name") or username,
        followers=_count(obj, "followers_count"),
        following=_count(obj, "following_count"),
        tweet_count=_count(obj, "tweet_count"),
        location=_str(obj, "location"),
        raw=_dump(obj),
    )


def _parse_place(obj: Mapping[str, Any]) -> Place:
    place_id = _str(obj, "id")
    if not place_id:
        raise UpstreamBadResponse("X API place has no 'id'")
    code = _str(obj, "country_code")
    # ISO 3166-1 alpha-2 is two ASCII letters; isalpha() alone lets "éé" or "ßa" (-> "SSA") in.
    if not (code and len(code) == 2 and code.isascii() and code.isalpha()):
        code = None
    return Place(
        id=place_id,
        full_name=_str(obj, "full_name"),
        country=_str(obj, "country"),
        country_code=code.upper() if code else None,
        raw=_dump(obj),
    )


# One encoder for every object: json.dumps with options builds a new JSONEncoder per call.
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _dump(obj: Mapping[str, Any]) -> str:
    return _ENCODER.encode(obj)


def _scrub(value: Any) -> Any:
    """Drop what PostgreSQL cannot store: NUL characters and lone UTF-16 surrogates.

    It visits every value of every page, so the common cases go first and cheaply: json.loads
    gives str, dict and list, and an ASCII string cannot hold a surrogate (bench/README.md has
    the figures; this walk was more than half of parse_page).
    """
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                value = value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, int | float | None):  # bool is an int; the rest of a JSON document
        return value
    if isinstance(value, Mapping):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    return value
