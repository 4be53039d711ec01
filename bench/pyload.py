"""The fallback load generator when wrk is not installed: N keep-alive connections on loopback,
each sending one request at a time, for a bounded time and a bounded number of requests.

Run as `python -m bench.pyload URL --connections N --duration S [--header K:V]...`; prints one
JSON object (see bench.load). It is far slower than wrk, so a run with it measures the load
generator as much as the server: bench/README.md says how to read such a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp

from bench.stats import from_latencies

MAX_REQUESTS = 2_000_000  # a bound on top of the duration


async def _run(url: str, connections: int, duration: float, headers: dict[str, str]) -> None:
    latencies: list[float] = []
    errors = 0
    bad = 0
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:
        deadline = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal errors, bad
            while time.perf_counter() < deadline and len(latencies) < MAX_REQUESTS:
                started = time.perf_counter()
                try:
                    async with session.get(url, headers=headers) as response:
                        await response.read()
                        if response.status >= 400:
                            bad += 1
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        seconds = time.perf_counter() - began
    result = from_latencies(latencies, seconds, errors, bad)
    print(
        json.dumps(
            {
                "requests": result.requests,
                "seconds": result.seconds,
                "rps": result.rps,
                "p50_ms": result.p50_ms,
                "p99_ms": result.p99_ms,
                "errors": result.errors,
                "bad_status": result.bad_status,
            }
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pyload", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--header", action="append", default=[], help="Name: value")
    args = parser.parse_args(argv)
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    asyncio.run(_run(args.url, args.connections, args.duration, headers))


if __name__ == "__main__":
    main()
