"""A threaded HTTP server on loopback standing in for what the processes under test talk to
over real HTTP: Elasticsearch and Kibana for the setup scripts, the X API for the CLI."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclasses.dataclass
class Stub:
    """Records every request as (path, headers, JSON body) and answers each path (without its
    query) with the status set for it in `statuses` (200 by default) and `{}`."""

    url: str = ""
    requests: list[tuple[str, dict[str, str], Any]] = dataclasses.field(default_factory=list)
    statuses: dict[str, int] = dataclasses.field(default_factory=dict)


@contextlib.contextmanager
def stub_server() -> Iterator[Stub]:
    stub = Stub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"null")
            stub.requests.append((self.path, dict(self.headers), body))
            self.send_response(stub.statuses.get(urlsplit(self.path).path, 200))
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        do_GET = do_PUT = do_POST

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
