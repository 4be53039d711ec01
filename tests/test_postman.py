"""postman_collection.json mirrors the served OpenAPI document: one request per operation, with
the same method and path, the spec's success status, and the bearer token where the spec asks
for it. (tests/stack/test_stack.py runs the collection with newman through HAProxy.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

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


def test_postman_collection_is_v21_with_base_url_and_token_variables() -> None:
    postman = collection()
    assert postman["info"]["schema"] == SCHEMA_V21
    assert postman["info"]["name"]
    variables = {v["key"]: v["value"] for v in postman["variable"]}
    assert set(variables) == {"baseUrl", "apiToken"}
    assert variables["apiToken"] == "", "the collection must not carry a token"


async def test_postman_collection_mirrors_the_served_spec() -> None:
    # The document as the stack serves it (tests/test_schemathesis.py checks that the server
    # serves exactly this): with an API_TOKEN, so populate asks for the bearer token.
    spec = document(create_app(Settings(api_token=Secret("postman-token-0042"))))
    served = {
        (method.upper(), path): operation
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
        if method in METHODS
    }
    assert {
        ("POST", "/api/v1/populate"),
        ("GET", "/api/v1/users"),
        ("GET", "/api/v1/hour"),
        ("GET", "/api/v1/tags"),
        ("GET", "/api/health"),
    } <= set(served)
    items: dict[tuple[str, str], dict[str, Any]] = {}
    for item in collection()["item"]:
        key = (item["request"]["method"], "/" + "/".join(item["request"]["url"]["path"]))
        assert key not in items, f"{key} appears twice"
        items[key] = item
    assert set(items) == set(served), "every served operation, and nothing else"
    for (method, path), operation in served.items():
        item = items[(method, path)]
        url = item["request"]["url"]
        assert url["host"] == ["{{baseUrl}}"], item["name"]
        query = "&".join(f"{q['key']}={q['value']}" for q in url.get("query", []))
        assert url["raw"] == "{{baseUrl}}" + path + (f"?{query}" if query else ""), item["name"]
        # The tests expect the spec's success status, and test the body.
        scripts = "\n".join(
            line
            for event in item.get("event", [])
            if event["listen"] == "test"
            for line in event["script"]["exec"]
        )
        success = {int(code) for code in operation["responses"] if code.startswith("2")}
        expected = {int(code) for code in re.findall(r"to\.have\.status\((\d+)\)", scripts)}
        assert expected, f"{item['name']}: no status test"
        assert expected <= success, f"{item['name']}: expects {expected}, the spec {success}"
        assert "jsonSchema" in scripts or "pm.response.json()" in scripts, (
            f"{item['name']}: no test on the body"
        )
        # Query parameters are the spec's.
        spec_query = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        assert {q["key"] for q in url.get("query", [])} <= spec_query, item["name"]
        # The bearer token goes exactly where the spec asks for it.
        headers = {h["key"].lower(): h["value"] for h in item["request"].get("header", [])}
        expected_auth = "Bearer {{apiToken}}" if operation.get("security") else None
        assert headers.get("authorization") == expected_auth, item["name"]
