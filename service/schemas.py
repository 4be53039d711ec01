"""Marshmallow schemas: request validation and the OpenAPI description of every body."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate


class UsersQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE  # cache-busting parameters and the like are ignored, not rejected

    limit = fields.Integer(
        load_default=5,
        strict=False,
        validate=validate.Range(min=1, max=100),
        metadata={"description": "How many authors to return (1-100)."},
    )


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


class ProbeSchema(Schema):
    status = fields.String(required=True)
