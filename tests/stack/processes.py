"""Child processes for the native stack test: start, wait for readiness, tear down.

Every process runs in its own session (process group), so stopping it also stops whatever it
spawned; its stdout and stderr go to a file under the stack's directory, whose tail is shown
when something fails. Waiting is bounded polling, never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from service.testing.loopback import LOOPBACK
from tests.waiting import WaitTimeout, wait_until

POLL_INTERVAL: Final = 0.1


class StackError(AssertionError):
    """The stack could not be started, or a wait ran out; the message carries diagnostics."""


def require_tool(*names: str, hint: str, extra_dirs: Sequence[Path] = ()) -> str:
    """The first of `names` found on PATH (or in `extra_dirs`); StackError naming it otherwise."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
        for directory in extra_dirs:
            candidate = directory / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    raise StackError(f"{names[0]} is not installed; {hint}")


@dataclass
class Process:
    name: str
    args: list[str]
    popen: subprocess.Popen[bytes]
    output: Path
    errors: Path | None = None  # stderr, when not merged into `output`

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown handlers run."""
        self.signal_group(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the whole group, SIGKILL after `timeout` seconds."""
        if self.alive():
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.popen.wait(timeout=10)
        # Children that outlived their leader (there should be none) go too.
        self.signal_group(signal.SIGKILL)

    def tail(self, lines: int = 30) -> str:
        return _tail(self.output, lines)


@dataclass
class Processes:
    """The stack's processes, stopped in reverse start order by `close`."""

    directory: Path
    started: list[Process] = field(default_factory=list)

    def start(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        separate_stderr: bool = False,
    ) -> Process:
        """Start `args`; stdout goes to <name>.out, stderr too unless `separate_stderr`
        (then to <name>.err)."""
        output = self.directory / f"{name}.out"
        errors = self.directory / f"{name}.err" if separate_stderr else None
        with contextlib.ExitStack() as files:
            stdout = files.enter_context(output.open("ab"))
            stderr = files.enter_context(errors.open("ab")) if errors else subprocess.STDOUT
            popen = subprocess.Popen(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,  # its own process group, for killpg
            )
        process = Process(name=name, args=list(args), popen=popen, output=output, errors=errors)
        self.started.append(process)
        return process

    def close(self) -> None:
        for process in reversed(self.started):
            process.stop()

    def poll(
        self,
        what: str,
        check: Callable[[], object],
        *,
        timeout: float,
        watch: Sequence[Process] | None = None,
    ) -> Any:
        """Call `check` until it returns something truthy (returned) or `timeout` passes
        (None returned). Exceptions from `check` count as "not yet". A watched process (default:
        all) that exits ends the wait with StackError: no point waiting for a dead server."""
        try:
            return self._wait(what, check, timeout=timeout, watch=watch)
        except WaitTimeout as exc:
            if self._dead(watch):
                raise StackError(f"{exc}\n{self.diagnostics()}") from None
            return None

    def wait_for(
        self,
        what: str,
        check: Callable[[], object],
        *,
        timeout: float,
        watch: Sequence[Process] | None = None,
    ) -> Any:
        """`poll`, raising StackError (with the processes' output) when time runs out."""
        try:
            return self._wait(what, check, timeout=timeout, watch=watch)
        except WaitTimeout as exc:
            raise StackError(f"{exc}\n{self.diagnostics()}") from None

    def _wait(
        self,
        what: str,
        check: Callable[[], object],
        *,
        timeout: float,
        watch: Sequence[Process] | None,
    ) -> Any:
        return wait_until(
            check,
            within=timeout,
            what=what,
            interval=POLL_INTERVAL,
            ignore=(Exception,),  # any failure means "not ready yet"
            give_up=lambda: self._dead(watch),
        )

    def _dead(self, watch: Sequence[Process] | None) -> str | None:
        watched = self.started if watch is None else watch
        dead = [p for p in watched if not p.alive()]
        if not dead:
            return None
        return ", ".join(f"{p.name} (exit {p.popen.returncode})" for p in dead) + " exited"

    def diagnostics(self, lines: int = 20) -> str:
        parts = []
        for process in self.started:
            state = "running" if process.alive() else f"exited {process.popen.returncode}"
            parts.append(f"--- {process.name} ({state}): last lines of {process.output}")
            parts.append(process.tail(lines))
            if process.errors is not None:
                parts.append(f"--- {process.name}: last lines of {process.errors}")
                parts.append(_tail(process.errors, lines))
        return "\n".join(parts)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(missing)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


# --- HTTP ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """The first header called `name`, case-insensitively."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
    source: str | None = None,
) -> Response:
    """One HTTP request to 127.0.0.1; any status is an answer. `source` sends it from another
    loopback address (all of 127.0.0.0/8 is local on Linux), so a proxy sees another client."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname != LOOPBACK or parts.port is None:
        raise ValueError(f"the stack test talks to http://{LOOPBACK}:<port> only, not {url}")
    connection = http.client.HTTPConnection(
        LOOPBACK,
        parts.port,
        timeout=timeout,
        source_address=(source, 0) if source is not None else None,
    )
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request(method, target, body=body, headers=dict(headers or {}))
        answer = connection.getresponse()
        return Response(answer.status, tuple(answer.getheaders()), answer.read())
    finally:
        connection.close()
