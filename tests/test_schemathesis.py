"""Schemathesis against the served OpenAPI document (/api/openapi.json), every operation.

It generates valid and invalid requests from the document and checks each answer: no 5xx, a
documented status code, the documented content type and body schema, 4xx for invalid input,
401 when the token is left out. Populate runs for real, through tweepy against the fake X API.
Deterministic: see SETTINGS.

The documents are taken from the apps at import, as Schemathesis needs them to generate the
tests (its lazy pytest loader does not work with pytest 9.2); a test checks that the live
servers serve exactly these documents.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from aiohttp import web
from marshmallow import ValidationError

from service.app import create_app
from service.config import Secret, Settings
from service.openapi import OPENAPI_PATH, document
from service.schemas import Instant
from testing.fake_x import FakeX
from tests import dataset
from tests.database import TABLES, Database
from tests.service_process import API_TOKEN
from tests.settings import make_settings

SETTINGS = hypothesis.settings(
    max_examples=50,
    derandomize=True,  # the seed comes from the test's name: the same cases on every run
    database=None,  # no .hypothesis directory: nothing carries over between runs
    deadline=None,  # populate is a real round trip through the fake X API and PostgreSQL
    suppress_health_check=list(hypothesis.HealthCheck),
)


class LiveServers:
    """The fake X API and two services, one without and one with API_TOKEN, on 127.0.0.1.

    They run on an event loop in a thread of their own: Schemathesis calls them synchronously.
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runners: list[web.AppRunner] = []
        self.open_url = ""
        self.token_url = ""
        # (server, method, route, status) of every answer: what the generated cases reached.
        self.answers: Counter[tuple[str, str, str, int]] = Counter()

    def __enter__(self) -> LiveServers:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(60)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self, app: web.Application, name: str) -> str:
        async def record(request: web.Request, response: web.StreamResponse) -> None:
            route = request.match_info.route.resource
            path = route.canonical if route is not None else "unmatched"
            self.answers[(name, request.method, path, response.status)] += 1

        app.on_response_prepare.append(record)
        runner = web.AppRunner(app)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def _start(self) -> None:
        fake = FakeX()
        dataset.load(fake)
        fake.base_url = await self._serve(fake.app(), "x")
        fake.compliance.storage_url = await self._serve(fake.compliance.storage_app(), "storage")
        settings = make_settings(self._database, fake)
        self.open_url = await self._serve(create_app(settings), "open")
        with_token = dataclasses.replace(settings, api_token=Secret(API_TOKEN))
        self.token_url = await self._serve(create_app(with_token), "token")

    async def _stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()


@pytest.fixture(scope="module")
def live(database: Database) -> Iterator[LiveServers]:
    database.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    with LiveServers(database) as servers:
        yield servers


OPEN_DOC = document(create_app(Settings()))
TOKEN_DOC = document(create_app(Settings(api_token=Secret(API_TOKEN))))


def _config(**extra: Any) -> Any:
    return schemathesis.Config.from_dict(
        {
            "generation": {
                # The query schemas ignore parameters they do not know (cache busters and the
                # like), as documented: an extra parameter is not invalid input here.
                "allow-extra-parameters": False,
            },
            **extra,
        }
    )


open_schema = schemathesis.openapi.from_dict(OPEN_DOC, config=_config())
# The token as Schemathesis knows it, for the `bearer` scheme the document declares: it still
# sends requests without it (and with a wrong one) to check that they are refused.
token_schema = schemathesis.openapi.from_dict(
    TOKEN_DOC, config=_config(auth={"openapi": {"bearer": {"bearer": API_TOKEN}}})
)
tokenless_schema = schemathesis.openapi.from_dict(TOKEN_DOC, config=_config())


def _ordered_range(ctx: Any, query: Any) -> Any:
    """The one rule the document cannot state, between two parameters: since before until.
    A generated pair is put in order (an equal one loses until), so a case stays valid or
    invalid for the reasons the document gives; a value that does not parse is left alone."""
    del ctx
    if not isinstance(query, dict) or not {"since", "until"} <= set(query):
        return query
    try:
        since, until = (Instant().deserialize(query[name]) for name in ("since", "until"))
    except ValidationError:  # not a timestamp: the case tests something else
        return query
    if since > until:
        query = {**query, "since": query["until"], "until": query["since"]}
    elif since == until:
        query = {k: v for k, v in query.items() if k != "until"}
    return query


for _schema in (open_schema, token_schema, tokenless_schema):
    _schema.hook("map_query")(_ordered_range)


def test_the_live_servers_serve_the_documents_under_test(live: LiveServers) -> None:
    assert requests.get(live.open_url + OPENAPI_PATH, timeout=10).json() == OPEN_DOC
    assert requests.get(live.token_url + OPENAPI_PATH, timeout=10).json() == TOKEN_DOC


@open_schema.parametrize()
@SETTINGS
def test_api_without_api_token_conforms(case: Any, live: LiveServers) -> None:
    case.call_and_validate(base_url=live.open_url)


@token_schema.parametrize()
@SETTINGS
def test_api_with_api_token_conforms_when_the_token_is_sent(case: Any, live: LiveServers) -> None:
    case.call_and_validate(base_url=live.token_url)


@tokenless_schema.parametrize()
@SETTINGS
def test_api_with_api_token_conforms_when_the_token_is_missing(
    case: Any, live: LiveServers
) -> None:
    case.call_and_validate(base_url=live.token_url)


def test_populate_ran_with_and_without_the_token(
    live: LiveServers, request: pytest.FixtureRequest
) -> None:
    """The cases above, all three with their populate case selected, reached the populate and
    compliance handlers, for real, in every configuration."""
    cases = [item for item in request.session.items if "[POST /api/v1/populate]" in item.name]
    if len(cases) < 3:
        pytest.skip("the populate cases were not selected")
    # (server, operation, status); compliance passes go through the fake's jobs and storage host.
    posts: Counter[tuple[str, str, int]] = Counter()
    for (server, method, path, status), n in live.answers.items():
        if method == "POST":
            posts[(server, path.removeprefix("/api/v1/"), status)] += n
    assert posts[("open", "populate", 201)] >= 5
    assert posts[("token", "populate", 201)] >= 5
    assert posts[("token", "populate", 401)] >= 5
    assert posts[("open", "populate", 401)] == 0
    assert posts[("open", "compliance", 201)] >= 1
    assert posts[("token", "compliance", 201)] >= 1
    assert posts[("token", "compliance", 401)] >= 1
    assert not [k for k in live.answers if k[3] >= 500]
