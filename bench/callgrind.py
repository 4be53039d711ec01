"""Instructions per request under valgrind --tool=callgrind, bare handler and service (on a
migrated, populated database): after a warm-up, exactly N GETs over 50 keep-alive connections,
a Host header only, as wrk sends them. Dumps stay in bench/out/callgrind/ for callgrind_annotate."""

import asyncio
import os
import re
import subprocess
import sys
from typing import Final

from testing.loopback import free_port
from testing.processes import ROOT, Processes

OUT: Final = ROOT / "bench" / "out" / "callgrind"
# `python -m service serve` without its two clocks, whose cost follows the time a run takes
# (valgrind stretches it some fifty times): the cache watcher polls once and its confirmation
# never expires; request lines go out in batches of FLUSH_LINES (512), as near wrk's rates.
SERVE: Final = (
    "import sys; from service import cache, log; cache.POLL = cache.CONFIRM_WINDOW = 1e9; "
    "log.RequestLog.FLUSH_INTERVAL = 1e9; from service.__main__ import main; sys.exit(main())"
)


async def _load(port: int, path: str, count: int) -> None:
    request, left = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode(), count

    async def client() -> None:
        nonlocal left
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while left > 0:
            left -= 1
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            await reader.readexactly(int(re.findall(rb"(?i)content-length: *(\d+)", head)[0]))
        writer.close()

    await asyncio.gather(*(client() for _ in range(50)))


def measure(name: str, command: list[str], env: dict[str, str], paths: list[str], n: int) -> None:
    port, group, out = free_port(), Processes(OUT), f"--callgrind-out-file={OUT}/{name}.cg"
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", out]
    process = group.start(name, [*valgrind, *command, "--port", str(port)], env=env)
    control = ["callgrind_control", str(process.pid)]
    try:
        process.wait_http(f"http://127.0.0.1:{port}/ready", within=600)
        for path in paths:
            asyncio.run(_load(port, path, 500))  # warm-up: cache filled, code specialized
            subprocess.run([*control, "--instr=on"], check=True, capture_output=True)
            asyncio.run(_load(port, path, n))
            subprocess.run([*control, "--instr=off"], check=True, capture_output=True)
            subprocess.run([*control, "--dump"], check=True, capture_output=True)
            dump = max(OUT.glob(f"{name}.cg.*"), key=lambda p: p.stat().st_mtime)
            total = int(re.findall(r"^totals: (\d+)", dump.read_text(), re.MULTILINE)[0])
            dump.rename(OUT / f"{name}{path.replace('/', '_')}.cg")
            print(f"{name:8} {path:16} {total / n:>10,.0f} instructions/request")
    finally:
        group.close()


def main() -> None:
    """python -m bench.callgrind DATABASE_URL [PATH ...]; env REQUESTS (2000), NO_BARE, LOG_LEVEL"""
    url, paths = sys.argv[1], sys.argv[2:] or ["/api/v1/users"]
    n = int(os.getenv("REQUESTS", "2000"))
    OUT.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if not os.environ.get("NO_BARE"):
        measure("bare", [sys.executable, "-m", "bench.bare"], env, ["/"], n)
    env |= {"DATABASE_URL": url, "LOG_FORMAT": "json", "TWEET_SOURCE": "sample"}
    env |= {"LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"), "TWITTER_KEYS_FILE": os.devnull}
    serve = [sys.executable, "-c", SERVE, "serve", "--no-migrate", "--host", "127.0.0.1"]
    measure("service", serve, env, paths, n)


if __name__ == "__main__":
    main()
