"""Load through HAProxy while populates run: the reliability check of a busy moment.

200 connections read the three endpoints through the repo's haproxy.cfg in front of two
replicas for SOAK_SECONDS, while a full populate is sent to a replica every two seconds (each
refreshes the views and bumps their generation, so both replicas re-render their cached
bodies under load). Reported, not asserted on timing: the counts that matter are the non-2xx
responses and the socket errors, which must both be zero.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench import procs
from bench.stats import parse_wrk

ROTATE = Path(__file__).with_name("rotate.lua")


def _populate_every(url: str, interval: float, stop: threading.Event) -> list[int]:
    statuses: list[int] = []
    while not stop.is_set():
        request = urllib.request.Request(url, method="POST")  # noqa: S310 - loopback only
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                statuses.append(response.status)
        except urllib.error.HTTPError as error:
            statuses.append(error.code)
        except (urllib.error.URLError, OSError):
            statuses.append(0)
        stop.wait(interval)
    return statuses


def load_during_populates(
    database_url: str, *, seconds: float, loop: str, out_dir: Path
) -> dict[str, Any]:
    started: list[procs.Proc] = []
    try:
        for i in (1, 2):
            started.append(
                procs.service(
                    f"soak-api-{i}",
                    database_url=database_url,
                    loop=loop,
                    log_level="INFO",
                    log_dir=out_dir / "logs",
                )
            )
        replicas = list(started)
        proxy = procs.haproxy("soak-haproxy", replicas, out_dir)
        started.append(proxy)
        stop = threading.Event()
        statuses: list[int] = []
        writer = threading.Thread(
            target=lambda: statuses.extend(
                _populate_every(replicas[0].url("/api/v1/populate?full=true"), 2.0, stop)
            )
        )
        began = time.monotonic()
        writer.start()
        try:
            if shutil.which("wrk"):
                command = ["wrk", "-t2", "-c200", f"-d{round(seconds)}s", "--timeout", "5s"]
                command += ["--latency", "-s", str(ROTATE), proxy.url("/")]
                done = subprocess.run(
                    command, capture_output=True, text=True, check=True, timeout=seconds + 60
                )
                result = parse_wrk(done.stdout)
                generator = "wrk, the three endpoints in turn"
            else:
                from bench.load import LoadGenerator

                result = LoadGenerator("python").run(
                    proxy.url("/api/v1/tags"), connections=200, seconds=seconds, headers={}
                )
                generator = "python, /api/v1/tags"
        finally:
            stop.set()
            writer.join()
        return {
            "seconds": round(time.monotonic() - began, 1),
            "connections": 200,
            "generator": generator,
            "requests": result.requests,
            "rps": round(result.rps),
            "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms,
            "non_2xx": result.bad_status,
            "socket_errors": result.errors,
            "populates": len(statuses),
            "populate_statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        }
    finally:
        for proc in reversed(started):
            proc.stop()


def render(soak: dict[str, Any]) -> str:
    statuses = ", ".join(f"{k}: {v}" for k, v in soak["populate_statuses"].items())
    return (
        "| connections | seconds | requests | rps | p50 ms | p99 ms | non-2xx | socket errors "
        "| populates (status: count) |\n|---|---|---|---|---|---|---|---|---|\n"
        f"| {soak['connections']} | {soak['seconds']} | {soak['requests']:,} | {soak['rps']:,} "
        f"| {soak['p50_ms']:.2f} | {soak['p99_ms']:.2f} | {soak['non_2xx']} "
        f"| {soak['socket_errors']} | {soak['populates']} ({statuses}) |"
    )


def dump(soak: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(soak, indent=2) + "\n")
