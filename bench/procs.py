"""The processes a run starts: service replicas, the bare handler, HAProxy. Each is stopped by
the run that started it (SIGTERM, then SIGKILL), by its own pid."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from service.testing.loopback import LoopbackPorts, render_haproxy

ROOT = Path(__file__).resolve().parent.parent
HAPROXY_CFG = ROOT / "observability" / "haproxy" / "haproxy.cfg"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self._log is not None:
            self._log.close()


def start(
    name: str,
    command: list[str],
    *,
    port: int,
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    ready_path: str = "/ready",
    timeout: float = 60.0,
) -> Proc:
    log_path = log_dir / f"{name}.log" if log_dir is not None else None
    log = log_path.open("ab") if log_path is not None else None
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=log if log is not None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
    )
    proc = Proc(name, process, port, log_path, log)
    try:
        wait_ready(proc, ready_path, timeout)
    except BaseException:
        proc.stop()
        raise
    return proc


def wait_ready(proc: Proc, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(
                f"{proc.name} exited with {proc.process.returncode}; see {proc.log_path}"
            )
        try:
            with urllib.request.urlopen(proc.url(path), timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{proc.name} did not answer {path} within {timeout:.0f} s")


def service(
    name: str,
    *,
    database_url: str,
    loop: str,
    log_level: str,
    log_dir: Path,
    extra_env: Mapping[str, str] | None = None,
) -> Proc:
    """`python -m service serve`: the production entry point, its production defaults."""
    port = free_port()
    env = {
        "DATABASE_URL": database_url,
        "LOG_LEVEL": log_level,
        "LOG_FORMAT": "json",
        "TWEET_SOURCE": "sample",
        "TWITTER_KEYS_FILE": "/nonexistent",
        **(extra_env or {}),
    }
    command = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--no-migrate", "--loop", loop]
    return start(name, command, port=port, env=env, log_dir=log_dir)


def bare(name: str, *, loop: str) -> Proc:
    port = free_port()
    command = [sys.executable, "-m", "bench.bare", "--port", str(port), "--loop", loop]
    return start(name, command, port=port)


def haproxy_available() -> bool:
    return shutil.which("haproxy") is not None


def haproxy(name: str, backends: list[Proc], work_dir: Path) -> Proc:
    """The repo's haproxy.cfg, rendered for loopback with `backends` as the API replicas."""
    ports = LoopbackPorts(
        api=tuple(b.port for b in backends),
        haproxy=free_port(),
        haproxy_stats=free_port(),
        prometheus=free_port(),  # unused here; LoopbackPorts wants every stack port
        blackbox=free_port(),
    )
    cfg = work_dir / f"{name}.cfg"
    cfg.write_text(render_haproxy(HAPROXY_CFG.read_text(encoding="utf-8"), ports))
    haproxy_bin = shutil.which("haproxy") or "haproxy"
    # Its request log goes to stdout (as in Docker); discarded here, the formatting is still paid.
    proc = start(name, [haproxy_bin, "-db", "-f", str(cfg)], port=ports.haproxy)
    wait_backends_up(proc, len(backends))
    return proc


def wait_backends_up(proc: Proc, count: int, timeout: float = 30.0) -> None:
    """Until `count` rounds of round-robin requests through the proxy all answer 200."""
    deadline = time.monotonic() + timeout
    ok = 0
    while time.monotonic() < deadline and ok < 4 * count:
        try:
            with urllib.request.urlopen(proc.url("/ready"), timeout=2) as response:  # noqa: S310
                ok = ok + 1 if response.status == 200 else 0
        except (urllib.error.URLError, OSError):
            ok = 0
            time.sleep(0.2)
    if ok < 4 * count:
        raise TimeoutError(f"{proc.name}: the replicas did not all answer through the proxy")
