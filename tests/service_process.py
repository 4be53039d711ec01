"""The real server process, `python -m service serve`, as tests start, signal and read it.

Started by testing/processes.py. Everything it writes (JSON log lines, tracebacks) goes to one
file per process, so a test can assert on what an operator would see.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from testing import processes
from testing.fake_x import BEARER, FakeX
from testing.loopback import free_port
from testing.processes import ROOT, serve_command
from testing.waiting import WaitTimeout, eventually

# Distinctive values, so a leak is unmistakable; only URL-safe characters, so a leak in any
# encoding (raw, JSON, percent-encoded) shows the value as is.
API_TOKEN = "apitoken-7Hq2VxW9pL4m"
DB_PASSWORD = "dbpass-Zr8KcN3tY6bQ"
SECRETS = (BEARER, API_TOKEN, DB_PASSWORD)


def with_password(url: str, password: str) -> str:
    """The URL with a password in it; trust authentication (tests) accepts any."""
    scheme, _, rest = url.partition("://")
    userinfo, at, location = rest.partition("@")
    if not at:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user}:{password}@{location}"


def service_env(database_url: str, fake: FakeX, **overrides: str) -> dict[str, str]:
    """The environment of a server process: the X API is the fake, every secret is set."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(ROOT)),
        "LANG": "C.UTF-8",
        "DATABASE_URL": with_password(database_url, DB_PASSWORD),
        "TWEET_SOURCE": "x",
        "TWITTER_BEARER_TOKEN": BEARER,
        "TWITTER_KEYS_FILE": os.devnull,  # never a developer's twitter_keys file
        "X_API_BASE_URL": fake.base_url,
        "X_RETRY_BACKOFF": "0.01",
        "COMPLIANCE_POLL": "0.1",
        "TAGS": "#devops,#sre",
        "API_TOKEN": API_TOKEN,
        "HEALTH_CACHE_TTL": "0",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
    }
    env.update(overrides)
    return env


class ServiceProcess:
    def __init__(self, env: Mapping[str, str], log_path: Path, *, migrate: bool = False) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.migrate = migrate
        self.port = free_port()
        self.process: processes.Process | None = None

    def start(self) -> ServiceProcess:
        args = serve_command(self.port, *([] if self.migrate else ["--no-migrate"]))
        self.process = processes.start(
            "service", args, output=self.log_path, env=self.env, cwd=ROOT
        )
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    async def wait_live(self, within: float = 60.0) -> None:
        """Until /live answers: the app has started (migrations, pool, stale runs)."""

        async def live() -> bool:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(self.url("/live")) as response:
                    return response.status == 200
            return False

        async with aiohttp.ClientSession() as session:
            try:
                await eventually(
                    live,
                    within=within,
                    what="the service answers /live",
                    give_up=lambda: None if self.alive() else "it exited at startup",
                )
            except WaitTimeout as exc:
                raise WaitTimeout(f"{exc}; its log:\n{self.logs()}") from None

    def send(self, sig: signal.Signals) -> None:
        assert self.process is not None, "not started"
        self.process.signal(sig)

    async def wait_exit(self, within: float) -> int:
        process = self.process
        assert process is not None, "not started"
        await eventually(
            lambda: not process.alive(), within=within, what="the service exits", interval=0.02
        )
        return process.popen.returncode

    def stop(self) -> None:
        """Teardown: whatever state the test left it in, the process is gone afterwards."""
        if self.process is not None:
            self.process.kill()

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


Spawn = Callable[..., ServiceProcess]


def leaks(text: str) -> list[str]:
    """Which of the test secrets appear in `text`."""
    return [secret for secret in SECRETS if secret in text]


async def fetch(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any, str, float]:
    """(status, JSON body or None, raw text, seconds)."""
    started = time.monotonic()
    async with session.request(method, url, **kwargs) as response:
        text = await response.text()
        body = None
        if response.content_type == "application/json":
            body = await response.json()
        return response.status, body, text, time.monotonic() - started


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m service ARGS` in a clean environment: no credentials, DATABASE_URL or TEST_*
    leak in from the caller, and the working directory holds no twitter_keys file."""
    base = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
