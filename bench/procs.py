"""The servers a run starts, through testing/processes.py: service replicas, the bare handler
(bench/bare.py) and HAProxy with the repository's haproxy.cfg. Each process writes to
<name>.out in the run's log directory and is stopped by the run that started it."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from testing.loopback import LoopbackPorts, free_port, free_ports, render_haproxy, request
from testing.processes import ROOT, Process, Processes, serve_command

HAPROXY_CFG: Final = ROOT / "observability" / "haproxy" / "haproxy.cfg"


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    port: int
    process: Process

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.process.stop()


def require(tool: str) -> str:
    """The path of `tool`; the bench does not run without it."""
    found = shutil.which(tool)
    if found is None:
        raise SystemExit(
            f"bench: {tool} is not installed. As root, bench/setup.sh installs it from Debian; "
            f"otherwise install {tool} from your distribution."
        )
    return found


def service(
    group: Processes,
    name: str,
    *,
    database_url: str,
    loop: str,
    env: Mapping[str, str] | None = None,
) -> Server:
    """`python -m service serve` with production defaults, INFO JSON logs, the bundled sample."""
    port = free_port()
    environ = {
        **os.environ,
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "TWEET_SOURCE": "sample",
        "TWITTER_KEYS_FILE": os.devnull,
        **(env or {}),
    }
    command = serve_command(port, "--no-migrate", "--loop", loop)
    server = Server(name, port, group.start(name, command, env=environ, cwd=ROOT))
    server.process.wait_http(server.url("/ready"))
    return server


def bare(group: Processes, name: str, *, loop: str) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "bench.bare", "--port", str(port), "--loop", loop]
    server = Server(name, port, group.start(name, command, cwd=ROOT))
    server.process.wait_http(server.url("/ready"))
    return server


def haproxy(group: Processes, name: str, backends: Sequence[Server]) -> Server:
    """The repository's haproxy.cfg, rendered for loopback with `backends` as the API replicas."""
    port, stats, prometheus, blackbox = free_ports(4)  # the last two: LoopbackPorts wants them
    ports = LoopbackPorts(tuple(b.port for b in backends), port, stats, prometheus, blackbox)
    cfg = group.directory / f"{name}.cfg"
    cfg.write_text(render_haproxy(HAPROXY_CFG.read_text(encoding="utf-8"), ports))
    server = Server(name, port, group.start(name, [require("haproxy"), "-db", "-f", str(cfg)]))
    # Every backend answers through the proxy: a few round-robin turns in a row return 200.
    server.process.wait(
        lambda: all(
            request("GET", server.url("/ready")).status == 200 for _ in range(4 * len(backends))
        ),
        what=f"{name} passes requests to its {len(backends)} backends",
        within=60,
    )
    return server
