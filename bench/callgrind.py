"""Instructions per request (valgrind --tool=callgrind), the bare handler's and the service's.

    python -m bench.callgrind --database-url URL [--requests N] [path ...]

Each server runs under callgrind with instrumentation off; after a warm-up, instrumentation is
turned on (callgrind_control) for exactly N requests over 50 keep-alive connections, and the
dump's instruction count is divided by N. Unlike requests/s, the count does not depend on what
else the machine runs. `URL` is a migrated database holding the data to read (the service reads
it through its cache, so it is read once per path). Dumps stay in bench/out/callgrind/ for
callgrind_annotate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Final

from testing.loopback import free_port
from testing.processes import ROOT, Processes

OUT: Final = ROOT / "bench" / "out" / "callgrind"
VALGRIND: Final = ("valgrind", "--tool=callgrind", "--instr-atstart=no")
# `python -m service serve` without its two clocks: what they cost follows the time a run takes,
# which valgrind stretches some fifty times. The cache watcher polls once, at start, and its
# confirmation never expires; request lines are written in batches of FLUSH_LINES (512), not
# every 0.1 s: at wrk's few thousand requests/s a 0.1 s batch holds hundreds.
SERVE: Final = (
    "import sys; from service import cache, log; cache.POLL = cache.CONFIRM_WINDOW = 1e9; "
    "log.RequestLog.FLUSH_INTERVAL = 1e9; from service.__main__ import main; sys.exit(main())"
)


async def _load(port: int, path: str, count: int, connections: int) -> None:
    """`count` GETs of `path` over `connections` keep-alive connections, as wrk sends them:
    a Host header and nothing else."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    left = count

    async def client() -> None:
        nonlocal left
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while left > 0:
            left -= 1
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"{path}: {head.decode()}")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
        writer.close()

    await asyncio.gather(*(client() for _ in range(connections)))


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def measure(name: str, command: list[str], env: dict[str, str], paths: list[str], n: int) -> None:
    port = free_port()
    out = OUT / f"{name}.cg"
    group = Processes(OUT)
    process = group.start(
        name, [*VALGRIND, f"--callgrind-out-file={out}", *command, "--port", str(port)], env=env
    )
    try:
        process.wait_http(f"http://127.0.0.1:{port}/ready", within=600)
        for path in paths:
            asyncio.run(_load(port, path, 500, 50))  # warm-up: cache filled, code specialized
            _control(process.pid, "--instr=on")
            asyncio.run(_load(port, path, n, 50))
            _control(process.pid, "--instr=off")
            _control(process.pid, "--dump=" + path)
            dumps = sorted(OUT.glob(f"{name}.cg.*"), key=lambda p: p.stat().st_mtime)
            total = _summary(dumps[-1])
            dumps[-1].rename(OUT / f"{name}{path.replace('/', '_')}.cg")
            print(f"{name:8} {path:16} {total / n:>10,.0f} instructions/request")
    finally:
        group.close()


def _summary(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"no summary in {dump}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.callgrind", description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--no-bare", action="store_true", help="measure the service only")
    parser.add_argument("paths", nargs="*", default=["/api/v1/users"])
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.cg*"):
        old.unlink()
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    bare = [sys.executable, "-m", "bench.bare"]
    if not args.no_bare:
        measure("bare", bare, env, ["/"], args.requests)
    service_env = {
        **env,
        "DATABASE_URL": args.database_url,
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),  # WARNING: no request lines
        "LOG_FORMAT": "json",
        "TWEET_SOURCE": "sample",
        "TWITTER_KEYS_FILE": os.devnull,
    }
    serve = [sys.executable, "-c", SERVE, "serve", "--no-migrate", "--host", "127.0.0.1"]
    measure("service", serve, service_env, args.paths, args.requests)


if __name__ == "__main__":
    main()
