"""CSV: ?format=csv or Accept: text/csv on the three reads, served like the JSON from the cache."""

from __future__ import annotations

import csv
import gzip
import io
from typing import Any

import pytest

from service import csv_format
from service.config import DEFAULT_TAGS
from tests import dataset
from tests.calls import READS, App, Client, invalid

FILTERED = (
    "/api/v1/users?tag=sre&limit=2",
    "/api/v1/hour?tag=devops&since=2026-11-20T09:00:00Z",
    "/api/v1/tags?until=2026-11-20T10:00:00Z",
)


def parse(body: bytes) -> tuple[list[str], list[list[str]]]:
    text = body.decode("utf-8")
    assert text.endswith("\r\n")
    # Every record ends in CRLF; no bare LF outside quotes (none of these fields is quoted).
    assert text.count("\n") == text.count("\r\n")
    header, *rows = list(csv.reader(io.StringIO(text, newline="")))
    return header, rows


def as_csv_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [["" if v is None else str(v) for v in row.values()] for row in rows]


async def read_csv(client: Client, path: str, **kwargs: Any) -> tuple[Any, bytes]:
    response = await client.get(path, **kwargs)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    return response, await response.read()


@pytest.mark.parametrize("path", READS + FILTERED)
@pytest.mark.parametrize("how", ["format", "accept"])
async def test_csv_has_the_json_rows_in_order(loaded: Client, path: str, how: str) -> None:
    json_rows = await (await loaded.get(path)).json()
    assert json_rows, path
    if how == "format":
        sep = "&" if "?" in path else "?"
        _, body = await read_csv(loaded, f"{path}{sep}format=csv")
    else:
        _, body = await read_csv(loaded, path, headers={"Accept": "text/csv"})

    header, rows = parse(body)

    assert header == list(json_rows[0])
    assert rows == as_csv_rows(json_rows)


@pytest.mark.parametrize(
    ("path", "header"),
    [
        ("/api/v1/users", "username,followers"),
        ("/api/v1/hour", "date,count"),
        ("/api/v1/tags", "tag,language,country,count"),
    ],
)
async def test_csv_of_nothing_is_the_header_row(client: Client, path: str, header: str) -> None:
    _, body = await read_csv(client, path, params={"format": "csv"})
    assert body == f"{header}\r\n".encode()


def test_csv_quotes_what_rfc_4180_requires() -> None:
    rows: list[dict[str, Any]] = [
        {"a": "plain", "b": 1},
        {"a": "comma, inside", "b": None},
        {"a": 'say "hi"', "b": "two\r\nlines"},
        {"a": "lf\nonly", "b": "مرحبا 🚀"},
    ]
    body = csv_format.render(("a", "b"), rows)
    assert (
        body
        == (
            'a,b\r\nplain,1\r\n"comma, inside",\r\n"say ""hi""","two\r\nlines"\r\n'
            '"lf\nonly",مرحبا 🚀\r\n'
        ).encode()
    )
    header, *parsed = list(csv.reader(io.StringIO(body.decode(), newline="")))
    assert (header, parsed) == (["a", "b"], as_csv_rows(rows))


@pytest.mark.parametrize(
    ("accept", "csv_wanted"),
    [
        ("text/csv", True),
        ("text/*", True),
        ("text/csv, application/json", True),
        ("application/json;q=0.9, text/csv", True),
        ("text/csv;q=0.5, application/json", False),
        ("text/csv;q=0", False),
        ("text/csv;q=nan", False),
        ("text/csv;q=2, application/json", False),
        ("*/*", False),
        ("text/html,application/xhtml+xml,*/*;q=0.8", False),
        ("application/json", False),
        ("image/png", False),  # nothing we have: the JSON, as before
        ("", False),
    ],
)
async def test_accept_header_chooses_csv(loaded: Client, accept: str, csv_wanted: bool) -> None:
    response = await loaded.get("/api/v1/users", headers={"Accept": accept})
    assert response.status == 200
    expected = "text/csv; charset=utf-8" if csv_wanted else "application/json"
    assert response.headers["Content-Type"] == expected
    assert "Accept" in response.headers["Vary"].split(", ")


async def test_format_wins_over_accept(loaded: Client) -> None:
    response = await loaded.get("/api/v1/hour?format=json", headers={"Accept": "text/csv"})
    assert response.headers["Content-Type"] == "application/json"
    assert await response.json() == dataset.EXPECTED_HOURS
    _, body = await read_csv(
        loaded, "/api/v1/hour?format=csv", headers={"Accept": "application/json"}
    )
    assert parse(body)[1] == as_csv_rows(dataset.EXPECTED_HOURS)


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize("value", ["xml", "CSV", "", "csv,json"])
async def test_a_bad_format_is_400_json(client: Client, path: str, value: str) -> None:
    assert list(await invalid(client, path, format=value)) == ["format"]


@pytest.mark.parametrize("path", READS + FILTERED)
async def test_csv_has_its_own_etag_and_answers_304(loaded: Client, path: str) -> None:
    as_json = await loaded.get(path)
    response, _ = await read_csv(loaded, path, headers={"Accept": "text/csv"})
    etag = response.headers["ETag"]
    assert etag != as_json.headers["ETag"]
    assert response.headers["Cache-Control"] == "no-cache"

    again = await loaded.get(path, headers={"Accept": "text/csv", "If-None-Match": etag})
    assert again.status == 304
    assert again.headers["ETag"] == etag
    # The JSON's validator does not revalidate the CSV, and the other way round.
    other = await loaded.get(
        path, headers={"Accept": "text/csv", "If-None-Match": as_json.headers["ETag"]}
    )
    assert other.status == 200


async def test_csv_is_gzipped_once_when_accepted(app: App) -> None:
    client = await app(tweet_source="sample", tags=DEFAULT_TAGS)
    assert (await client.post("/api/v1/populate")).status == 201
    plain, body = await read_csv(
        client, "/api/v1/tags?format=csv", headers={"Accept-Encoding": "identity"}
    )
    assert "Content-Encoding" not in plain.headers

    zipped = await client.get(
        "/api/v1/tags?format=csv", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    )

    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert zipped.headers["ETag"] not in (plain.headers["ETag"], "")
    assert gzip.decompress(await zipped.read()) == body
    # The rows are the JSON's (test_csv_has_the_json_rows_in_order): here, enough to gzip.
    assert len(parse(body)[1]) > 100


async def test_openapi_documents_csv_on_the_three_reads(client: Client) -> None:
    spec = await (await client.get("/api/openapi.json")).json()
    for path in READS:
        operation = spec["paths"][path]["get"]
        assert set(operation["responses"]["200"]["content"]) == {"application/json", "text/csv"}
        assert set(operation["responses"]["400"]["content"]) == {"application/json"}
        names = {p["name"] for p in operation["parameters"]}
        assert {"tag", "format"} <= names
        if path != "/api/v1/users":
            assert {"since", "until"} <= names
            since = next(p for p in operation["parameters"] if p["name"] == "since")
            assert "next hour" in since["description"]
    for path in ("/api/health", "/api/v1/summary"):
        assert set(spec["paths"][path]["get"]["responses"]["200"]["content"]) == {
            "application/json"
        }
