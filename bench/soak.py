"""Load through HAProxy while populates run: the reliability check of a busy moment.

200 connections read the three endpoints in turn through the repository's haproxy.cfg in front
of two replicas, while a full populate is sent to a replica every two seconds (each refreshes
the views and bumps their generation, so both replicas re-render their cached bodies under
load). Reported, not asserted on timing: what must hold is zero non-2xx responses and zero
socket errors.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from bench import procs, wrk
from bench.phases import READ_PATHS
from testing.loopback import request
from testing.processes import Processes


def load_during_populates(
    group: Processes, database_url: str, *, seconds: float, loop: str
) -> dict[str, Any]:
    replicas = [
        procs.service(group, f"soak-api-{i}", database_url=database_url, loop=loop) for i in (1, 2)
    ]
    proxy = procs.haproxy(group, "soak-haproxy", replicas)
    stop = threading.Event()
    statuses: list[int] = []

    def populate_every_two_seconds() -> None:
        while not stop.is_set():
            try:
                url = replicas[0].url("/api/v1/populate?full=true")
                statuses.append(request("POST", url, body=b"", timeout=60).status)
            except OSError:
                statuses.append(0)
            stop.wait(2.0)

    writer = threading.Thread(target=populate_every_two_seconds)
    began = time.monotonic()
    writer.start()
    try:
        run = wrk.run(proxy.url("/"), connections=200, seconds=seconds, paths=READ_PATHS)
    finally:
        stop.set()
        writer.join()
        for server in (proxy, *replicas):
            server.stop()
    return {
        "seconds": round(time.monotonic() - began, 1),
        "connections": 200,
        "requests": run.requests,
        "rps": round(run.rps),
        "p50_ms": run.p50_ms,
        "p99_ms": run.p99_ms,
        "non_2xx": run.non_2xx,
        "socket_errors": run.errors,
        "populates": len(statuses),
        "populate_statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
    }
