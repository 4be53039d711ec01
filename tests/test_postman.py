"""postman_collection.json mirrors the served OpenAPI document: one request per operation, with
the same method and path, the spec's success status, and the bearer token where the spec asks
for it. (tests/stack/test_stack.py runs the collection with newman through HAProxy.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from service.app import create_app
from service.config import Secret, Settings
from service.openapi import document

ROOT = Path(__file__).resolve().parent.parent
COLLECTION = ROOT / "postman_collection.json"
SCHEMA_V21 = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})


def collection() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(COLLECTION.read_text(encoding="utf-8"))
    return result


def requests_by_operation() -> dict[tuple[str, str], dict[str, Any]]:
    """(METHOD, /path) -> the collection item."""
    items: dict[tuple[str, str], dict[str, Any]] = {}
    for item in collection()["item"]:
        url = item["request"]["url"]
        key = (item["request"]["method"], "/" + "/".join(url["path"]))
        assert key not in items, f"{key} appears twice"
        items[key] = item
    return items


def scripts_of(item: dict[str, Any]) -> str:
    return "\n".join(
        line
        for event in item.get("event", [])
        if event["listen"] == "test"
        for line in event["script"]["exec"]
    )


def headers(item: dict[str, Any]) -> dict[str, str]:
    return {h["key"].lower(): h["value"] for h in item["request"].get("header", [])}


@pytest.fixture
def spec() -> dict[str, Any]:
    """The document as the stack serves it (tests/test_schemathesis.py checks that the server
    serves exactly this): with an API_TOKEN, so populate asks for the bearer token."""
    return document(create_app(Settings(api_token=Secret("postman-token-0042"))))


def operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def test_postman_collection_is_v21_with_base_url_and_token_variables() -> None:
    document = collection()
    assert document["info"]["schema"] == SCHEMA_V21
    assert document["info"]["name"]
    variables = {v["key"]: v["value"] for v in document["variable"]}
    assert set(variables) == {"baseUrl", "apiToken"}
    assert variables["apiToken"] == "", "the collection must not carry a token"


def test_postman_urls_are_base_url_plus_path() -> None:
    for (_, path), item in requests_by_operation().items():
        url = item["request"]["url"]
        assert url["host"] == ["{{baseUrl}}"], item["name"]
        query = "&".join(f"{q['key']}={q['value']}" for q in url.get("query", []))
        assert url["raw"] == "{{baseUrl}}" + path + (f"?{query}" if query else ""), item["name"]


async def test_postman_collection_mirrors_the_served_spec(spec: dict[str, Any]) -> None:
    served = operations(spec)
    assert {
        ("POST", "/api/v1/populate"),
        ("GET", "/api/v1/users"),
        ("GET", "/api/v1/hour"),
        ("GET", "/api/v1/tags"),
        ("GET", "/api/health"),
    } <= set(served)
    items = requests_by_operation()
    assert set(items) == set(served), "every served operation, and nothing else"
    for key, operation in served.items():
        item = items[key]
        # The tests expect the spec's success status.
        success = {int(code) for code in operation["responses"] if code.startswith("2")}
        expected = {
            int(code) for code in re.findall(r"to\.have\.status\((\d+)\)", scripts_of(item))
        }
        assert expected, f"{item['name']}: no status test"
        assert expected <= success, f"{item['name']}: expects {expected}, the spec {success}"
        assert "jsonSchema" in scripts_of(item) or "pm.response.json()" in scripts_of(item), (
            f"{item['name']}: no test on the body"
        )
        # Query parameters are the spec's.
        spec_query = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        sent = {q["key"] for q in item["request"]["url"].get("query", [])}
        assert sent <= spec_query, item["name"]
        # The bearer token goes exactly where the spec asks for it.
        authorization = headers(item).get("authorization")
        if operation.get("security"):
            assert authorization == "Bearer {{apiToken}}", item["name"]
        else:
            assert authorization is None, item["name"]
