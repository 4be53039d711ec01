"""The HTTP surface: error JSON, the OpenAPI document against real responses, docs, metrics."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import re
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi
from yarl import URL

from service.app import create_app
from service.config import Secret, Settings
from service.db import POPULATE_LOCK
from service.openapi import document
from testing.fake_x import HTML_503, UNAUTHORIZED, USAGE_CAPPED, FakeX
from testing.waiting import eventually
from tests import dataset
from tests.calls import App, Client, assert_error, delta, invalid, scrape
from tests.database import Database
from tests.fake_time import at_real_time

Json = dict[str, Any]


async def json_of(response: Any) -> Any:
    assert response.content_type == "application/json", response.content_type
    return await response.json()


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        *(("GET", "/nope"), ("GET", "/api/v1/user"), ("GET", "/api/v1/users/")),
        *(("POST", "/api/v2/populate"), ("DELETE", "/nothing/here")),
        ("GET", "/api/docs/static/no-such-asset.js"),
        # Docs assets do not escape their directory.
        ("GET", "/api/docs/static/..%2F..%2F..%2Fservice%2Fconfig.py"),
        ("GET", "/api/docs/static/%2E%2E%2Fswagger-ui.css"),
        ("GET", "/api/docs/static/swagger-ui.css%2F..%2F..%2F__init__.py"),
        ("GET", "/api/docs/static/%2Fetc%2Fpasswd"),
        ("GET", "/api/docs/static/%2E%2E"),
    ],
)
async def test_api_unknown_path_is_json_404(client: Client, method: str, path: str) -> None:
    response = await client.request(method, URL(path, encoded=True))

    assert response.status == 404
    body = await json_of(response)
    assert body == {"error": {"code": "not_found", "message": "no such resource"}}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/api/v1/users", "GET"),
        ("DELETE", "/api/v1/hour", "GET"),
        ("PUT", "/api/v1/tags", "GET"),
        ("HEAD", "/api/v1/users", "GET"),
        ("GET", "/api/v1/populate", "POST"),
        ("PATCH", "/api/v1/populate", "POST"),
        ("POST", "/api/health", "GET"),
        *((m, "/api/v1/users", "GET") for m in ("OPTIONS", "TRACE", "PROPFIND", "MKCOL")),
    ],
)
async def test_api_wrong_method_is_json_405_with_allow(
    client: Client, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path)

    assert response.status == 405
    assert response.headers["Allow"] == allow
    if method == "HEAD":
        return  # no body to read
    body = await json_of(response)
    assert body == {
        "error": {"code": "method_not_allowed", "message": f"method {method} is not allowed here"}
    }


@pytest.mark.parametrize(
    "limit", ["0", "101", "abc", "2.5", "-1", "", "1e2", "99999999999999999999"]
)
async def test_api_bad_limit_is_json_400(client: Client, limit: str) -> None:
    assert list(await invalid(client, "/api/v1/users", limit=limit)) == ["limit"]


# --- the OpenAPI document ------------------------------------------------------------------------


async def fetch_spec(client: Client) -> Json:
    response = await client.get("/api/openapi.json")
    assert response.status == 200
    spec: Json = await json_of(response)
    return spec


def content_schema(response: Json) -> Json:
    schema: Json = response["content"]["application/json"]["schema"]
    return schema


async def test_openapi_document_is_valid_and_describes_every_route(client: Client) -> None:
    spec = await fetch_spec(client)
    validate_openapi(spec)
    assert spec["openapi"].startswith("3.0.")
    assert spec["info"]["title"]
    assert spec["info"]["version"]
    paths = spec["paths"]

    reads = ("/api/v1/users", "/api/v1/hour", "/api/v1/tags")
    assert set(paths) >= {"/api/v1/populate", "/api/health", *reads}
    assert set(paths["/api/v1/populate"]) == {"post"}
    populate = paths["/api/v1/populate"]["post"]
    assert set(populate["responses"]) == {"201", "400", "401", "409", "413", "502", "503"}
    # This service has no API_TOKEN: populate takes no token, and the document asks for none.
    assert "security" not in populate
    assert "securitySchemes" not in spec.get("components", {})

    (limit,) = [p for p in paths["/api/v1/users"]["get"]["parameters"] if p["name"] == "limit"]
    assert (limit["in"], limit["required"], limit["schema"]["type"]) == ("query", False, "integer")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 100)
    assert limit["schema"]["default"] == 5

    operations = [populate, *(paths[path]["get"] for path in (*reads, "/api/health"))]
    for operation in operations:
        assert operation["summary"]
        for status, response in operation["responses"].items():
            assert response["description"], status
            assert content_schema(response), status
    for path in reads:
        assert set(paths[path]) == {"get"}, path
        assert {"200", "400"} <= set(paths[path]["get"]["responses"])
        ok = content_schema(paths[path]["get"]["responses"]["200"])
        assert ok["type"] == "array", path
        assert ok["items"]["$ref"].startswith("#/components/schemas/"), path


def test_openapi_document_asks_for_the_bearer_token_when_there_is_an_api_token(
    settings: Settings,
) -> None:
    app = create_app(dataclasses.replace(settings, api_token=Secret("document-token-0042")))
    spec = document(app)

    populate = spec["paths"]["/api/v1/populate"]["post"]
    assert populate["security"] == [{"bearer": []}]
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert "security" not in spec["paths"]["/api/v1/users"]["get"]


def resolve(node: Any, spec: Json) -> Any:
    """Inline every $ref; turn OpenAPI 3.0's `nullable` into JSON Schema; forbid undocumented
    properties on documented objects, so a field the document omits fails validation too."""
    if isinstance(node, list):
        return [resolve(item, spec) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return resolve(copy.deepcopy(target), spec)
    schema = {key: resolve(value, spec) for key, value in node.items()}
    if schema.pop("nullable", False) and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    if "properties" in schema and "additionalProperties" not in schema:
        schema["additionalProperties"] = False
    return schema


@dataclasses.dataclass
class SpecChecker:
    spec: Json
    checked: set[tuple[str, str, str]] = dataclasses.field(default_factory=set)

    def documented(self) -> set[tuple[str, str, str]]:
        return {
            (path, method, status)
            for path, operations in self.spec["paths"].items()
            for method, operation in operations.items()
            for status in operation["responses"]
        }

    async def check(self, response: Any, path: str, method: str = "get") -> Any:
        """Validate a real response against the schema the document declares for it."""
        status = str(response.status)
        declared = self.spec["paths"][path][method]["responses"]
        assert status in declared, f"{method.upper()} {path} answered an undocumented {status}"
        body = await json_of(response)
        schema = resolve(content_schema(declared[status]), self.spec)
        jsonschema.Draft4Validator.check_schema(schema)
        errors = [e.message for e in jsonschema.Draft4Validator(schema).iter_errors(body)]
        assert errors == [], (method, path, status, body)
        self.checked.add((path, method, status))
        return body


async def test_openapi_every_documented_response_matches_real_responses(
    app: App, fake_x: FakeX, clean_db: Database
) -> None:
    client = await app()
    checker = SpecChecker(await fetch_spec(client))
    dataset.load(fake_x)

    # Before any populate: empty lists, and no last run.
    health = await checker.check(await client.get("/api/health"), "/api/health")
    assert health["last_populate"] is None
    assert await checker.check(await client.get("/api/v1/users"), "/api/v1/users") == []

    created = await checker.check(await client.post("/api/v1/populate"), "/api/v1/populate", "post")
    assert created["per_tag"] == {"#devops": 5, "#sre": 3}

    reads = ("/api/v1/users", "/api/v1/hour", "/api/v1/tags", "/api/v1/summary")
    for path in (*reads, "/live", "/ready"):
        body = await checker.check(await client.get(path), path)
        assert body, path
    tags = await checker.check(await client.get("/api/v1/tags"), "/api/v1/tags")
    assert None in {row["country"] for row in tags}  # the nullable field, exercised
    health = await checker.check(await client.get("/api/health"), "/api/health")
    assert health["last_populate"]["status"] == "succeeded"
    for path, query in (
        ("/api/v1/users", "limit=0"),
        ("/api/v1/hour", "since=yesterday"),
        ("/api/v1/tags", "until=2026-11-20T09:00"),
    ):
        bad = await checker.check(await client.get(f"{path}?{query}"), path)
        assert_error(bad, "invalid_parameter")

    # 409: a second replica's populate while the first is still fetching.
    replica = await app()
    fake_x.pause()
    searched = len(fake_x.searches())
    running = asyncio.create_task(client.post("/api/v1/populate"))
    await eventually(
        lambda: len(fake_x.searches()) > searched, within=30, what="the first populate fetches"
    )
    second = await replica.post("/api/v1/populate")
    fake_x.resume()
    first = await running
    assert (first.status, second.status) == (201, 409)
    for response in (first, second):
        await checker.check(response, "/api/v1/populate", "post")

    # 502: X rejects the credentials. 503: the monthly usage cap.
    fake_x.fail(401, UNAUTHORIZED)
    upstream = await checker.check(
        await client.post("/api/v1/populate"), "/api/v1/populate", "post"
    )
    assert_error(upstream, "x_api_credentials_rejected")
    fake_x.fail(429, USAGE_CAPPED)
    capped = await checker.check(await client.post("/api/v1/populate"), "/api/v1/populate", "post")
    assert_error(capped, "x_api_usage_capped")

    # Health 500: the X API answers an HTML 503 (no retries for a health check).
    fake_x.fail(503, HTML_503, content_type="text/html")
    degraded = await checker.check(await client.get("/api/health"), "/api/health")
    assert degraded["status"] == "degraded"
    assert degraded["x_api"]["ok"] is False
    assert degraded["database"]["ok"] is True

    # 401: a populate without the configured API token.
    guarded = await app(api_token=Secret("populate-token-value"))
    unauthorized = await checker.check(
        await guarded.post("/api/v1/populate"), "/api/v1/populate", "post"
    )
    assert_error(unauthorized, "unauthorized")

    # 503 on reads: a view locked past the database timeout (held until each read answers).
    slow = await app(db_timeout=2.0)
    for path, view in (
        ("/api/v1/users", "top_users"),
        ("/api/v1/hour", "tweets_per_hour"),
        ("/api/v1/tags", "tweets_per_tag"),
        ("/api/v1/summary", "tweets_per_hour"),
    ):
        # A plain REFRESH holds an ACCESS EXCLUSIVE lock until its transaction ends (LOCK TABLE
        # does not take materialized views).
        with clean_db.holding(f"REFRESH MATERIALIZED VIEW {view}"):
            unavailable = await checker.check(await slow.get(path), path)
        assert_error(unavailable, "database_unavailable")

    # 400: an invalid `full`. 413: a body over the 64 KiB limit.
    invalid = await checker.check(
        await client.post("/api/v1/populate?full=maybe"), "/api/v1/populate", "post"
    )
    assert_error(invalid, "invalid_parameter")
    too_large = await checker.check(
        await client.post("/api/v1/populate", data=b"x" * (65 * 1024)), "/api/v1/populate", "post"
    )
    assert_error(too_large, "payload_too_large")

    # Compliance: 201, 401, 409 (the write lock held), 413, 501 (the sample), 502, 503.
    async def comply(app: Client, **kwargs: Any) -> Any:
        return await checker.check(
            await app.post("/api/v1/compliance", **kwargs), "/api/v1/compliance", "post"
        )

    assert (await comply(client))["checked"] == {"tweets": 7, "users": 5}
    assert_error(await comply(guarded), "unauthorized")
    with clean_db.holding(f"SELECT pg_advisory_lock({POPULATE_LOCK})"):
        assert_error(await comply(replica), "write_in_progress")
    assert_error(await comply(client, data=b"x" * (65 * 1024)), "payload_too_large")
    offline = await app(tweet_source="sample", compliance_interval=0.0)
    assert_error(await comply(offline), "compliance_unavailable")
    fake_x.compliance.fault = "failed"
    assert_error(await comply(client), "x_compliance_job_failed")
    fake_x.compliance.fault = "never"
    waiting = await app(compliance_timeout=60, clock=at_real_time().as_clock())
    assert_error(await comply(waiting), "x_compliance_timeout")

    # Everything documented was seen, except a /ready 503, which needs the database down.
    assert checker.documented() - checker.checked == {("/ready", "get", "503")}


# --- Swagger UI ----------------------------------------------------------------------------------


async def test_docs_page_serves_swagger_ui_and_its_assets(client: Client) -> None:
    response = await client.get("/api/docs")

    assert response.status == 200
    assert response.content_type == "text/html"
    html = await response.text()
    assert "<title>Swagger UI</title>" in html
    assert 'url: "/api/openapi.json"' in html
    assert "{{" not in html  # every template placeholder was filled
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(assets) >= 4
    kinds = set()
    for asset in assets:
        assert asset.startswith("/api/docs/static/"), asset
        loaded = await client.get(asset)
        assert loaded.status == 200, asset
        assert len(await loaded.read()) > 100, asset
        kinds.add(loaded.content_type)
    assert "text/css" in kinds
    assert "image/png" in kinds
    assert kinds & {"application/javascript", "text/javascript"}


# --- metrics -------------------------------------------------------------------------------------


async def test_metrics_count_requests_by_route_template(client: Client) -> None:
    before = await scrape(client)

    for limit in ("1", "2", "3"):
        assert (await client.get(f"/api/v1/users?limit={limit}")).status == 200
    assert (await client.get("/no/such/page-8c1f")).status == 404
    assert (await client.get("/api/docs/static/swagger-ui.css")).status == 200
    assert (await client.get("/api/docs/static/missing.js")).status == 404
    assert (await client.get("/api/v1/users?limit=0")).status == 400
    after = await scrape(client)

    def counted(status: str, route: str = "/api/v1/users") -> float:
        return delta(before, after, "http_requests_total", method="GET", route=route, status=status)

    assert (counted("200"), counted("400")) == (3, 1)
    assert counted("404", route="unmatched") == 1
    assert counted("200", route="/api/docs/static/{name}") == 1
    assert counted("404", route="/api/docs/static/{name}") == 1
    assert counted("200", route="/metrics") == 1  # the first scrape
    text = await (await client.get("/metrics")).text()
    for kind in (
        *("http_requests_total counter", "http_request_duration_seconds histogram"),
        *("populate_runs_total counter", "db_pool_connections gauge"),
    ):
        assert f"# TYPE {kind}" in text, kind
    for name, labels in after:
        if name == "http_requests_total":
            route = dict(labels)["route"]
            assert not any(s in route for s in ("?", "page-8c1f", "swagger-ui", "missing")), route

    buckets = {
        float(dict(labels)["le"]): count
        for (name, labels), count in after.items()
        if name == "http_request_duration_seconds_bucket"
        and dict(labels).get("route") == "/api/v1/users"
        and dict(labels).get("method") == "GET"
    }
    assert len(buckets) > 5
    counts = [buckets[le] for le in sorted(buckets)]
    assert counts == sorted(counts)  # cumulative
    users = {"method": "GET", "route": "/api/v1/users"}
    assert delta(before, after, "http_request_duration_seconds_bucket", **users, le="+Inf") == 4
    assert delta(before, after, "http_request_duration_seconds_count", **users) == 4
