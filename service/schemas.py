"""Marshmallow schemas: request validation and the OpenAPI description of every body."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

# A hashtag as TAGS spells one (service.config): word characters, at least one not a digit;
# `#` optional. The OpenAPI document carries this pattern and length, and the check below is
# exactly theirs (Python's re, as the document's consumers in the tests use), so what the
# document calls valid is accepted and nothing else.
TAG_PATTERN: Final = r"^#?\w*[^\W\d_]\w*$"
TAG_MAX_LENGTH: Final = 101
_TAG_RE: Final = re.compile(TAG_PATTERN)
# RFC 3339 date-time (what OpenAPI's format date-time means), read here to the microsecond:
# lower-case t/z, any number of fraction digits, and a leap second are all RFC 3339.
_RFC3339: Final = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$"
)
# An unencoded "+" in a query string arrives as a space: "...T09:00:00 02:00" meant "+02:00".
_SPACED_OFFSET: Final = re.compile(r"T.* (\d\d(:?\d\d)?)$")
_HOUR: Final = timedelta(hours=1)
_EARLIEST: Final = datetime.min.replace(tzinfo=UTC)
_LATEST: Final = datetime.max.replace(tzinfo=UTC)

TIME_RANGE_NOTE: Final = (
    "Counts are kept per UTC hour: `since` and `until` select the hours whose start lies in "
    "[since, until). A bound inside an hour therefore moves to the start of the next hour "
    "(since=09:30Z counts from 10:00Z; until=09:30Z counts up to 10:00Z, so 09:00-10:00 is "
    "included). Timestamps are ISO 8601 with a zone, such as RFC 3339's "
    "`2026-11-20T09:00:00Z` or `2026-11-20T11:00:00+02:00` (send `+` as `%2B`); `since` must "
    "be earlier than `until`, else 400."
)


class Hashtag(fields.String):
    """One hashtag, `#` optional, any case: normalized to `#lowercase` as TAGS stores it."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text: str = super()._deserialize(value, attr, data, **kwargs)
        if len(text) > TAG_MAX_LENGTH or not _TAG_RE.match(text):
            raise ValidationError("not a hashtag (letters, digits, underscore; # optional)")
        return "#" + text.rstrip("\n").removeprefix("#").lower()


class Instant(fields.String):
    """An ISO 8601 timestamp with a zone, as a UTC datetime."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        text: str = super()._deserialize(value, attr, data, **kwargs)
        spaced = _SPACED_OFFSET.search(text)
        if spaced:
            text = text[: spaced.start(1) - 1] + "+" + spaced.group(1)
        try:
            moment = datetime.fromisoformat(_from_rfc3339(text))
        except ValueError:
            raise ValidationError("not an ISO 8601 timestamp (e.g. 2026-11-20T09:00:00Z)") from None
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValidationError("the timestamp needs a zone: Z or an offset such as +02:00")
        try:
            return moment.astimezone(UTC)
        except OverflowError:  # year 1 or 9999 past an offset: before or after anything stored
            return _EARLIEST if moment.year == 1 else _LATEST


def _from_rfc3339(text: str) -> str:
    """An RFC 3339 date-time in the spelling datetime.fromisoformat reads; other text as is."""
    found = _RFC3339.match(text)
    if found is None:
        return text
    day, minutes, seconds, fraction, zone = found.groups()
    micros = (fraction or "0")[:6].ljust(6, "0")
    if seconds == "60":  # a leap second: the last instant of its minute
        seconds, micros = "59", "999999"
    zone = "+00:00" if zone in ("Z", "z") else zone
    return f"{day}T{minutes}:{seconds}.{micros}{zone}"


def ceil_hour(moment: datetime) -> datetime:
    """The start of the first UTC hour at or after `moment` (TIME_RANGE_NOTE)."""
    floor = moment.replace(minute=0, second=0, microsecond=0)
    if floor == moment:
        return floor
    try:
        return floor + _HOUR
    except OverflowError:  # within the last hour of year 9999: no hour starts after it anyway
        return moment


def _tag_field(what: str) -> Hashtag:
    return Hashtag(
        load_default=None,
        metadata={
            "pattern": TAG_PATTERN,
            "maxLength": TAG_MAX_LENGTH,
            "description": f"Only {what}: one of the configured hashtags, `#` optional, any "
            "case (`sre`, `%23SRE`). Another hashtag gives an empty list.",
            "example": "#sre",
        },
    )


def _format_field() -> fields.String:
    return fields.String(
        load_default=None,
        validate=validate.OneOf(["json", "csv"]),
        metadata={
            "description": "`csv` for text/csv (RFC 4180, a header row with the JSON field names, "
            "null as an empty field; same rows, same order). Wins over the Accept header, which "
            "may ask for text/csv too."
        },
    )


def _bound_field(which: str, example: str) -> Instant:
    return Instant(
        load_default=None,
        metadata={
            "description": f"{which} ISO 8601 timestamp with a zone. {TIME_RANGE_NOTE}",
            "format": "date-time",
            "example": example,
        },
    )


class _QuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE  # cache-busting parameters and the like are ignored, not rejected


class UsersQuerySchema(_QuerySchema):
    limit = fields.Integer(
        load_default=5,
        strict=False,
        validate=validate.Range(min=1, max=100),
        metadata={"description": "How many authors to return (1-100)."},
    )
    tag = _tag_field("authors of tweets with this tag, ranked the same way")
    format = _format_field()


class _RangeQuerySchema(_QuerySchema):
    since = _bound_field("Inclusive start:", "2026-11-19T12:00:00Z")
    until = _bound_field("Exclusive end:", "2026-11-20T12:00:00Z")
    format = _format_field()

    @validates_schema
    def _ordered(self, data: dict[str, Any], **kwargs: Any) -> None:
        del kwargs
        # Compared as sent, before rounding: 09:10Z..09:40Z is an empty range, not a bad one.
        since, until = data.get("since"), data.get("until")
        if since is None or until is None:
            return
        if since >= until:
            raise ValidationError("since must be earlier than until", field_name="since")


class HourQuerySchema(_RangeQuerySchema):
    tag = _tag_field("tweets with this tag")


class TagsQuerySchema(_RangeQuerySchema):
    tag = _tag_field("this tag's rows")


class PopulateQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    full = fields.Boolean(
        load_default=False,
        metadata={
            "description": "Refetch the most recent tweets of every tag. By default a populate is "
            "incremental: it asks X only for tweets newer than the newest stored per tag."
        },
    )


class TopUserSchema(Schema):
    username = fields.String(required=True, metadata={"example": "devops_daily"})
    followers = fields.Integer(required=True, metadata={"example": 120345})


class HourCountSchema(Schema):
    date = fields.String(
        required=True,
        metadata={
            "description": "Start of the UTC hour, ISO 8601.",
            "example": "2026-11-20T09:00:00Z",
        },
    )
    count = fields.Integer(required=True, metadata={"example": 42})


class TagCountSchema(Schema):
    tag = fields.String(required=True, metadata={"example": "#devops"})
    language = fields.String(
        required=True,
        metadata={"description": "BCP 47 code; und when undetermined.", "example": "en"},
    )
    country = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "ISO 3166-1 alpha-2 code of the place; null when unknown.",
            "example": "BR",
        },
    )
    count = fields.Integer(required=True, metadata={"example": 7})


class PopulateResultSchema(Schema):
    run_id = fields.Integer(required=True)
    source = fields.String(required=True, metadata={"description": "x or sample"})
    per_tag = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        required=True,
        metadata={"description": "Tweets received per tag.", "example": {"#devops": 100}},
    )
    tweets_new = fields.Integer(
        required=True, metadata={"description": "Tweets stored for the first time."}
    )
    tweets_seen = fields.Integer(
        required=True, metadata={"description": "Distinct tweets received."}
    )
    duration_ms = fields.Integer(required=True)


def _counts_field() -> fields.Dict:
    return fields.Dict(
        keys=fields.String(),
        values=fields.Dict(
            keys=fields.String(), values=fields.Dict(keys=fields.String(), values=fields.Integer())
        ),
        required=True,
        metadata={
            "description": "Rows removed or scrubbed: kind (tweets, users) -> action -> "
            "reason -> rows.",
            "example": {"tweets": {"delete": {"deleted": 3}, "scrub_geo": {"scrub_geo": 1}}},
        },
    )


class ComplianceResultSchema(Schema):
    pass_id = fields.Integer(required=True)
    job_ids = fields.List(
        fields.String(), required=True, metadata={"description": "X's compliance job ids."}
    )
    checked = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        required=True,
        metadata={
            "description": "Stored ids sent to X, per kind.",
            "example": {"tweets": 1200, "users": 800},
        },
    )
    applied = _counts_field()
    raw_cleared = fields.Integer(
        required=True,
        metadata={"description": "Rows whose raw JSON and text RAW_RETENTION_DAYS cleared."},
    )
    duration_ms = fields.Integer(required=True)


def _last_compliance_field(required: bool) -> fields.Dict:
    return fields.Dict(
        required=required,
        allow_none=True,
        metadata={
            "description": "The last successful compliance pass: pass_id, finished_at (ISO "
            "8601, UTC) and applied (kind -> action -> reason -> rows); null before the first.",
            "example": {
                "pass_id": 3,
                "finished_at": "2026-11-20T12:00:00Z",
                "applied": {"tweets": {"delete": {"deleted": 3}}},
            },
        },
    )


class ComplianceSummarySchema(Schema):
    interval_seconds = fields.Float(
        required=True,
        metadata={"description": "Seconds between scheduled passes; 0 when none are scheduled."},
    )
    last_pass = _last_compliance_field(required=True)


class ErrorDetailSchema(Schema):
    code = fields.String(required=True, metadata={"example": "invalid_parameter"})
    message = fields.String(required=True)
    details = fields.Raw(metadata={"description": "Extra facts, such as the invalid fields."})


class ErrorSchema(Schema):
    error = fields.Nested(ErrorDetailSchema, required=True)


class DatabaseHealthSchema(Schema):
    ok = fields.Boolean(required=True)
    latency_ms = fields.Float()
    error = fields.String()


class XApiHealthSchema(Schema):
    ok = fields.Boolean(required=True)
    source = fields.String(required=True, metadata={"description": "x or sample"})
    offline = fields.Boolean()
    latency_ms = fields.Float()
    error = fields.String()
    message = fields.String()
    checked_seconds_ago = fields.Float()


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"description": "ok or degraded"})
    database = fields.Nested(DatabaseHealthSchema, required=True)
    x_api = fields.Nested(XApiHealthSchema, required=True)
    last_populate = fields.Dict(allow_none=True)
    last_compliance = _last_compliance_field(required=False)


class ProbeSchema(Schema):
    status = fields.String(required=True)


class LastPopulateSchema(Schema):
    run_id = fields.Integer(required=True)
    source = fields.String(required=True, metadata={"description": "x or sample"})
    finished_at = fields.String(
        required=True, metadata={"description": "ISO 8601, UTC.", "example": "2026-11-20T12:00:00Z"}
    )


class SummarySchema(Schema):
    tweets = fields.Integer(required=True, metadata={"description": "Stored tweets, each once."})
    authors = fields.Integer(
        required=True, metadata={"description": "Authors of stored tweets that X described."}
    )
    tags = fields.Integer(required=True, metadata={"description": "Tags with stored tweets."})
    first_hour = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "Start of the first UTC hour with tweets; null when none."},
    )
    last_hour = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "Start of the last UTC hour with tweets; null when none."},
    )
    last_populate = fields.Nested(
        LastPopulateSchema,
        required=True,
        allow_none=True,
        metadata={"description": "The last successful populate; null before the first."},
    )
    configured_tags = fields.List(
        fields.String(), required=True, metadata={"description": "TAGS, in order."}
    )
    token_required = fields.Boolean(
        required=True,
        metadata={
            "description": "Whether POST /api/v1/populate and /api/v1/compliance need the "
            "bearer token."
        },
    )
    compliance = fields.Nested(
        ComplianceSummarySchema,
        required=True,
        metadata={"description": "The compliance schedule and the last successful pass."},
    )
