"""The dashboard at /, driven in Debian's chromium through Playwright.

Playwright never downloads a browser here (`playwright install` is not run anywhere): it drives
the system's chromium by path. Without it the tests skip on a developer machine and fail in CI
(CI=true), where .ci/run installs it.

Every page runs with its requests routed through the test: a request to another host is
recorded and aborted, so the page provably works offline; console errors fail the test.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Frame,
    Page,
    Request,
    Response,
    Route,
    async_playwright,
)
from playwright.async_api import Error as PlaywrightError
from pytest_aiohttp import AiohttpClient, AiohttpServer

from service.app import create_app
from service.config import DEFAULT_TAGS, Secret, Settings
from tests.calls import Client, get, populated
from tests.config_files import ROOT, tool
from tests.database import Database

# Flags for a root user in a container, and no traffic of the browser's own (updates, sync...).
CHROMIUM_ARGS: Final = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Generous: these bound waits on conditions the test causes, not the machine's speed.
WAIT_MS: Final = 30_000
TOKEN: Final = "dashboard-token-0042"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    path = tool("chromium")  # Debian's: apt-get install chromium
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@dataclasses.dataclass
class Watched:
    page: Page
    origin: str
    requests: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    navigations: int = 0
    authorizations: list[str | None] = dataclasses.field(default_factory=list)
    not_modified: set[Request] = dataclasses.field(default_factory=set)

    def failed(self, request: Request) -> None:
        # Chromium ends a request answered 304 Not Modified (the summary poll's answer while
        # nothing changed) in net::ERR_ABORTED after its response, though the page's fetch
        # resolves with the 304 normally: an answer, no failure of the page's.
        if request not in self.not_modified:
            self.errors.append(f"request failed: {request.url} {request.failure}")

    async def assert_clean(self) -> None:
        """No console error, no request elsewhere; then the page closes, before the server
        (requests a closing page cuts off are no error of the page's)."""
        errors, requests = list(self.errors), list(self.requests)
        await self.page.context.close()
        assert errors == [], errors
        elsewhere = [url for url in requests if not url.startswith(self.origin + "/")]
        assert elsewhere == [], f"requests left the origin: {elsewhere}"
        assert requests, "nothing was recorded"


@dataclasses.dataclass
class Site:
    """The app on the sample source, an API client to it, and the browser that opens its page."""

    server: TestServer
    api: Client
    browser: Browser

    @property
    def origin(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def watch(self, *, width: int = 1280, query: str = "") -> Watched:
        context = await self.browser.new_context(viewport={"width": width, "height": 900})
        page = await context.new_page()
        watched = Watched(page=page, origin=self.origin)

        async def route(route: Route, request: Request) -> None:
            watched.requests.append(request.url)
            if request.url.startswith(watched.origin + "/"):
                if request.method == "POST":
                    watched.authorizations.append(await request.header_value("authorization"))
                await route.continue_()
            else:
                await route.abort()

        def console(message: ConsoleMessage) -> None:
            if message.type in ("error", "warning"):
                watched.errors.append(f"console {message.type}: {message.text}")

        def navigated(frame: Frame) -> None:
            if frame == page.main_frame:
                watched.navigations += 1

        def answered(response: Response) -> None:
            if response.status == 304:
                watched.not_modified.add(response.request)

        await context.route("**/*", route)
        page.on("console", console)
        page.on("pageerror", lambda error: watched.errors.append(f"page error: {error}"))
        # Playwright emits a request's response before its requestfailed.
        page.on("response", answered)
        page.on("requestfailed", watched.failed)
        page.on("framenavigated", navigated)
        await page.goto(f"{self.origin}/{query}")
        await loaded(page)
        return watched


Serve = Callable[..., Awaitable[Site]]


@pytest.fixture
def serve(
    browser: Browser,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    settings: Settings,
) -> Serve:
    """Start a site on the sample source; keyword arguments change more settings."""

    async def start(**changes: Any) -> Site:
        sample = dataclasses.replace(settings, tweet_source="sample", tags=DEFAULT_TAGS, **changes)
        server = await aiohttp_server(create_app(sample))
        return Site(server=server, api=await aiohttp_client(server), browser=browser)

    return start


@pytest.fixture
async def site(serve: Serve) -> Site:
    return await serve()


async def loaded(page: Page, previous: int = 0) -> str:
    """Wait until the page has rendered the views more than `previous` times; the hour query
    it rendered last."""
    await page.wait_for_function(
        "previous => Number(document.body.dataset.renders || 0) > previous",
        arg=previous,
        timeout=WAIT_MS,
    )
    value: str = await page.evaluate("document.body.dataset.loaded")
    return value


async def rerendered(page: Page, action: Awaitable[Any]) -> str:
    """Await `action`, then `loaded` past the renders before it."""
    before = int(await page.evaluate("document.body.dataset.renders || '0'"))
    await action
    return await loaded(page, before)


async def text(page: Page, selector: str) -> str:
    found = await page.text_content(selector)
    assert found is not None, selector
    return found.strip()


async def table(page: Page, selector: str) -> list[list[str]]:
    rows: list[list[str]] = await page.eval_on_selector_all(
        f"{selector} tbody tr", "rows => rows.map(r => Array.from(r.cells, c => c.textContent))"
    )
    return rows


def number(value: int) -> str:
    return f"{value:,}"


async def assert_views_match_api(page: Page, site: Site, hour_path: str) -> dict[str, str]:
    """The page's hour total, author table and tag table equal the API's answers to the very
    queries the page made; returns the hour query's parameters."""
    query = dict(parse_qsl(urlsplit(hour_path).query))
    hours = await get(site.api, hour_path)
    assert await text(page, "#hour-total") == number(sum(row["count"] for row in hours))
    assert await text(page, "#hour-count") == number(len(hours))

    tag = {"tag": query["tag"]} if "tag" in query else {}
    users = await get(site.api, "/api/v1/users?" + urlencode({"limit": 10, **tag}))
    assert await table(page, "#users-table") == (
        [[str(i + 1), f"@{u['username']}", number(u["followers"])] for i, u in enumerate(users)]
        or [["No data."]]
    )
    tags = await get(site.api, "/api/v1/tags?" + urlencode(query))
    assert await table(page, "#tags-table") == (
        [[r["tag"], r["language"], r["country"] or "—", number(r["count"])] for r in tags]
        or [["No data."]]
    )
    # Each view's CSV link asks for the same rows as CSV.
    for view, rows in (("hour", hours), ("users", users), ("tags", tags)):
        href = await page.get_attribute(f"#{view}-csv", "href")
        assert href is not None
        csv_answer = await site.api.get(href)
        assert csv_answer.headers["Content-Type"] == "text/csv; charset=utf-8"
        parsed = list(csv.reader(io.StringIO(await csv_answer.text(), newline="")))
        assert parsed[1:] == [["" if v is None else str(v) for v in r.values()] for r in rows]
    return query


async def test_dashboard_shows_the_apis_numbers(site: Site, clean_db: Database) -> None:
    await populated(site.api)
    watched = await site.watch()
    page = watched.page

    summary = await get(site.api, "/api/v1/summary")
    assert await text(page, "#total-tweets") == number(summary["tweets"])
    assert await text(page, "#total-authors") == number(summary["authors"])
    assert await text(page, "#total-tags") == number(summary["tags"])
    assert await text(page, "#last-source") == "sample"
    # ... and what psql says.
    assert summary["tweets"] == clean_db.scalar("SELECT count(*) FROM tweets")
    assert summary["tags"] == clean_db.scalar("SELECT count(DISTINCT tag) FROM tweet_tags")
    assert summary["authors"] == clean_db.scalar(
        "SELECT count(*) FROM users u WHERE EXISTS (SELECT FROM tweets t WHERE t.author_id = u.id)"
    )
    assert await assert_views_match_api(page, site, await loaded(page)) == {}
    assert await text(page, "#hour-total") == number(summary["tweets"])
    # The chart was drawn, and the page is built for people: one h1, labelled controls.
    assert await page.locator("#hour-chart canvas").count() == 1
    label = await page.get_attribute("#hour-chart", "aria-label")  # the chart, in words
    assert label is not None
    assert f"{number(summary['tweets'])} tweets over" in label
    assert await page.locator("h1").count() == 1
    assert await page.locator("h2").count() == 5
    unlabelled = await page.evaluate(
        "Array.from(document.querySelectorAll('select, input')).filter(e => !e.labels.length)"
        ".map(e => e.id)"
    )
    assert unlabelled == []
    assert await page.is_hidden("#token-row")  # no API_TOKEN, no token field
    tags = await page.eval_on_selector_all("#tag option", "options => options.map(o => o.value)")
    assert tags == ["", *DEFAULT_TAGS]

    if os.environ.get("DASHBOARD_SCREENSHOT"):  # how docs/dashboard.png is made
        await page.screenshot(path=ROOT / "docs" / "dashboard.png", full_page=True)
    await watched.assert_clean()


async def test_dashboard_selectors_narrow_every_view(site: Site) -> None:
    await populated(site.api)
    watched = await site.watch()
    page = watched.page
    everything = await text(page, "#hour-total")
    summary = await get(site.api, "/api/v1/summary")

    # A tag.
    hour_path = await rerendered(page, page.select_option("#tag", "#sre"))
    query = await assert_views_match_api(page, site, hour_path)
    assert query == {"tag": "#sre"}
    sre_total = await text(page, "#hour-total")
    assert sre_total != everything

    # ... and the last day of data: the 24 hours up to the newest stored hour.
    hour_path = await rerendered(page, page.select_option("#range", "24"))
    query = await assert_views_match_api(page, site, hour_path)
    end = datetime.fromisoformat(summary["last_hour"]) + timedelta(hours=1)
    assert query == {
        "tag": "#sre",
        "since": (end - timedelta(hours=24)).isoformat().replace("+00:00", "Z"),
        "until": end.isoformat().replace("+00:00", "Z"),
    }
    assert int((await text(page, "#hour-total")).replace(",", "")) < int(sre_total.replace(",", ""))

    # A custom range, typed in.
    await rerendered(page, page.select_option("#range", "custom"))
    assert await page.is_visible("#since")
    await page.fill("#since", "2026-11-18T06:00")
    await page.fill("#until", "2026-11-19T18:00")
    await page.dispatch_event("#until", "change")
    # Each field's change reloads (since's when it loses focus): wait for the one with both.
    await page.wait_for_function(
        "() => (document.body.dataset.loaded || '').includes('until=2026-11-19T18')",
        timeout=WAIT_MS,
    )
    query = await assert_views_match_api(page, site, await loaded(page))
    assert query == {
        "tag": "#sre",
        "since": "2026-11-18T06:00:00Z",
        "until": "2026-11-19T18:00:00Z",
    }

    # Back to every tag: the unfiltered users, the range kept.
    hour_path = await rerendered(page, page.select_option("#tag", ""))
    query = await assert_views_match_api(page, site, hour_path)
    assert "tag" not in query
    await watched.assert_clean()


async def test_dashboard_shows_a_populate_without_reloading(site: Site) -> None:
    watched = await site.watch(query="?refresh=1")
    page = watched.page
    assert await text(page, "#total-tweets") == "0"
    assert await text(page, "#last-populate") == "never"
    assert await table(page, "#users-table") == [["No data."]]
    await page.evaluate("window.stillTheSamePage = true")
    before = int(await page.evaluate("document.body.dataset.renders"))
    # The page polls the summary with its ETag; while nothing changed, the answer is 304.
    await page.wait_for_event(
        "response",
        lambda r: r.url == f"{site.origin}/api/v1/summary" and r.status == 304,
        timeout=WAIT_MS,
    )

    # Another client populates; the page's poll sees the summary's ETag change.
    await populated(site.api)
    await loaded(page, before)

    summary = await get(site.api, "/api/v1/summary")
    await page.wait_for_function(
        "n => document.getElementById('total-tweets').textContent === n",
        arg=number(summary["tweets"]),
        timeout=WAIT_MS,
    )
    assert summary["tweets"] > 0
    assert await text(page, "#last-source") == "sample"
    await assert_views_match_api(page, site, await loaded(page))
    assert await page.evaluate("window.stillTheSamePage") is True
    assert watched.navigations == 1
    await watched.assert_clean()


async def test_dashboard_populate_button_sends_the_token(serve: Serve, clean_db: Database) -> None:
    site = await serve(api_token=Secret(TOKEN))
    watched = await site.watch()
    page = watched.page
    assert await page.is_visible("#token")

    # Without a token the page asks for it and sends nothing.
    await page.click("#populate")
    assert "token" in await text(page, "#populate-result")
    assert watched.authorizations == []

    await page.fill("#token", TOKEN)
    await rerendered(page, page.click("#populate"))
    await page.wait_for_function(
        "() => document.getElementById('populate-result').textContent.startsWith('Stored')",
        timeout=WAIT_MS,
    )
    assert watched.authorizations == [f"Bearer {TOKEN}"]
    summary = await get(site.api, "/api/v1/summary")
    assert summary["token_required"] is True
    assert await text(page, "#total-tweets") == number(summary["tweets"])
    assert summary["tweets"] == clean_db.scalar("SELECT count(*) FROM tweets") > 0
    await watched.assert_clean()


async def test_dashboard_fits_a_phone(site: Site) -> None:
    await populated(site.api)
    watched = await site.watch(width=390)
    page = watched.page
    # Nothing wider than the screen: no sideways scrolling of the page itself.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    for selector in ("#tag", "#range", "#populate", "#hour-csv", "#tags-table"):
        box = await page.locator(selector).bounding_box()
        assert box is not None, selector
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 390, selector
    await watched.assert_clean()


async def test_dashboard_watch_catches_requests_elsewhere_and_errors(site: Site) -> None:
    # The checks above must be able to fail. A script's fetch elsewhere: the page's policy
    # refuses it before it is a request, and says so on the console.
    watched = await site.watch()
    await watched.page.evaluate("fetch('http://elsewhere.invalid/x.js').catch(() => null)")
    await watched.page.wait_for_function("() => true")
    assert any("Content Security Policy" in error for error in watched.errors), watched.errors
    # What the policy does not govern, a navigation elsewhere, is recorded and refused.
    with pytest.raises(PlaywrightError):
        await watched.page.goto("http://elsewhere.invalid/")
    assert "http://elsewhere.invalid/" in watched.requests
    with pytest.raises(AssertionError, match=r"elsewhere\.invalid"):
        await watched.assert_clean()


async def test_page_and_assets_are_served_with_their_policy(client: Client) -> None:
    page = await client.get("/")
    assert page.status == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp
    assert "default-src 'none'" in csp
    html = await page.text()
    assert "<script>" not in html  # no inline script: the policy would refuse it
    for src in ("/static/app.js", "/static/uPlot.iife.min.js"):
        assert f'src="{src}"' in html
        script = await client.get(src)
        assert script.status == 200
        assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
    for href in ("/static/style.css", "/static/uPlot.min.css"):
        assert f'href="{href}"' in html
        assert (await client.get(href)).headers["Content-Type"] == "text/css; charset=utf-8"
    for missing in ("/static/nope.js", "/static/..%2Fdashboard.py", "/static/vendor"):
        answer = await client.get(missing)
        assert answer.status == 404
        assert (await answer.json())["error"]["code"] == "not_found"


def test_vendored_chart_library_carries_its_version_and_licence() -> None:
    vendor = ROOT / "service" / "static" / "vendor" / "uplot"
    notes = (vendor / "README.md").read_text(encoding="utf-8")
    script = (vendor / "uPlot.iife.min.js").read_text(encoding="utf-8")
    version = notes.split()[2]  # "# uPlot 1.6.32 (vendored)"
    assert script.startswith(f"/*! https://github.com/leeoniya/uPlot (v{version}) */")
    assert "MIT License" in (vendor / "LICENSE").read_text(encoding="utf-8")
    assert "npm pack" in notes
