"""Accept-Encoding as RFC 9110 §12.5.3 reads it: case-insensitive codings and q, q=0 refuses,
`*` covers codings not listed, an explicit entry wins over `*`; anything malformed is no 500."""

from __future__ import annotations

import gzip

import pytest

from service.reads import accepts_gzip
from testing.fake_x import FakeX
from tests import dataset
from tests.calls import Client

ACCEPTED = [
    *("gzip", "GZIP", "x-gzip", "*", "gzip;q=0.001", "gzip; q=1", "gzip ; Q=0.5"),
    *("br;q=1, gzip;q=0.8", "gzip, *;q=0", "identity;q=0, *", "deflate, *;q=0.1", "gzip;q=1.000"),
    "*;q=0, gzip",  # the explicit gzip overrides the wildcard's refusal
    "gzip;level=9;q=0.5",  # an extension parameter is ignored, the weight still read
    ",,gzip,,",  # empty list members are allowed (RFC 9110 §5.6.1)
    "gzip;q=oops, *",  # a malformed member is skipped, the rest read
]
REFUSED = [
    *(None, "", "br, deflate", "GZIP; Q=0", "gzip;q=0", "gzip;q=0.000", "*;q=0"),
    "identity",  # only identity listed: gzip is not acceptable
    *("gzip;q=0, *", "*, gzip;q=0"),  # an explicit refusal overrides the wildcard
    "gzip;q=0, *;q=1, x-gzip;q=1",  # the first explicit gzip entry decides
    "gzip;q=oops, *;q=0",
    # Malformed: identity is always a safe answer, an unreadable weight never selects gzip.
    *("gzip;q=abc", "gzip;q=", "gzip;q", "gzip;q=1.5", "gzip;q=2", "gzip;q=-1", "gzip;q=nan"),
    *("gzip;q=inf", "gzip;q=1e0", "*;q=x", ";;;", "gzip;q=0.5;q=oops", "\x00gzip"),
    "gzip;q=0.0001",  # at most three decimals
]


@pytest.mark.parametrize(
    ("header", "accepted"), [*((h, True) for h in ACCEPTED), *((h, False) for h in REFUSED)]
)
def test_accepts_gzip(header: str | None, accepted: bool) -> None:
    assert accepts_gzip(header) is accepted


async def test_reads_answer_every_accept_encoding_without_error(
    client: Client, fake_x: FakeX
) -> None:
    dataset.load(fake_x)
    assert (await client.post("/api/v1/populate")).status == 201
    plain = await client.get("/api/v1/tags", headers={"Accept-Encoding": "identity"})
    body = await plain.read()

    cases = {
        "*;q=0, gzip": True,
        "GZIP; Q=0": False,
        "identity": False,
        "*": True,
        "gzip;q=abc": False,
        "gzip;q=9, *;q=0": False,
        ";;;,,,": False,
        "x" * 4000: False,
    }
    for header, gzipped in cases.items():
        response = await client.get(
            "/api/v1/tags", headers={"Accept-Encoding": header}, auto_decompress=False
        )
        assert response.status == 200, header
        assert response.headers["Vary"] == "Accept, Accept-Encoding"  # Accept: JSON or CSV
        raw = await response.read()
        if gzipped:
            assert response.headers["Content-Encoding"] == "gzip", header
            assert gzip.decompress(raw) == body
        else:
            assert "Content-Encoding" not in response.headers, header
            assert raw == body
