"""The reference: a bare aiohttp handler returning a constant 1.2 KB JSON body.

Started by the benchmark as `python -m bench.bare --port N --loop L`, the same process model and
event loop as `python -m service serve --loop L`, so the ratio isolates what the service adds.
"""

from __future__ import annotations

import argparse
import json
from typing import Final

from aiohttp import web

from service.__main__ import LOOPS, new_event_loop


def _body(size: int = 1200) -> bytes:
    """A valid JSON list of user-like objects, padded to exactly `size` bytes."""
    items = [{"username": f"user_{i:04d}", "followers": 100_000 - i * 37} for i in range(24)]
    body = json.dumps(items, separators=(",", ":"))
    while len(body) > size - 20:
        items.pop()
        body = json.dumps(items, separators=(",", ":"))
    pad = size - len(body) - len(',{"p":""}')
    items.append({"p": "x" * pad})
    encoded = json.dumps(items, separators=(",", ":")).encode()
    assert len(encoded) == size, len(encoded)
    return encoded


BODY: Final = _body()


async def constant(request: web.Request) -> web.Response:
    del request
    return web.Response(body=BODY, content_type="application/json")


async def ready(request: web.Request) -> web.Response:
    del request
    return web.json_response({"status": "ok"})


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", constant)
    app.router.add_get("/ready", ready)  # HAProxy's health check, as on the service
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=LOOPS, default="asyncio")
    args = parser.parse_args(argv)
    web.run_app(
        create_app(),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        loop=new_event_loop(args.loop),
    )


if __name__ == "__main__":
    main()
