"""The dashboard page at / and its assets: static files shipped inside the package.

The page is plain HTML, CSS and one script that reads the public API from the same origin; the
chart library (uPlot) is vendored under static/vendor/ with its version and licence. Nothing is
loaded from another host, and the Content-Security-Policy below says so to the browser.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Final

from aiohttp import web

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
ASSET_PATH: Final = "/static"
# A fixed list, not the directory: a request can only ever name one of these files.
_ASSETS: Final = {
    "app.js": ("app.js", "text/javascript; charset=utf-8"),
    "style.css": ("style.css", "text/css; charset=utf-8"),
    "uPlot.iife.min.js": ("vendor/uplot/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    "uPlot.min.css": ("vendor/uplot/uPlot.min.css", "text/css; charset=utf-8"),
}
# The page's own policy, for `make run` without the proxy; HAProxy replaces it with the stack's
# (observability/haproxy/haproxy.cfg), which allows the same sources. No inline script or style:
# uPlot styles its elements through the CSSOM, which CSP does not govern.
_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS: Final = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def setup(app: web.Application) -> None:
    app.router.add_get("/", page, name="dashboard", allow_head=False)
    app.router.add_get(ASSET_PATH + "/{name}", asset, name="dashboard_static", allow_head=False)


async def page(request: web.Request) -> web.StreamResponse:
    del request
    headers = {**_HEADERS, "Content-Type": "text/html; charset=utf-8"}
    return web.FileResponse(STATIC_DIR / "index.html", headers=headers)


async def asset(request: web.Request) -> web.StreamResponse:
    found = _ASSETS.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    relative, content_type = found
    path = STATIC_DIR / relative
    if not await asyncio.to_thread(path.is_file):  # a broken install, not a client error
        raise FileNotFoundError(relative)
    return web.FileResponse(path, headers={**_HEADERS, "Content-Type": content_type})
