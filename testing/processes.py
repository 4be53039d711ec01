"""Child processes of the tests and the bench: start, wait until they answer, signal, stop.

Every process runs in its own session (process group), so a signal reaches whatever it spawned
too; its stdout and stderr go to files, whose tail is shown when a wait for it fails. Waiting is
testing.waiting's bounded polling, ended early when a watched process exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

from testing.loopback import LOOPBACK, request
from testing.waiting import WaitTimeout, wait_until

T = TypeVar("T")
ROOT: Final = Path(__file__).resolve().parent.parent
POLL_INTERVAL: Final = 0.1


class ProcessError(AssertionError):
    """A process could not be started, or a wait for it ran out; the message says why."""


def serve_command(port: int, *options: str) -> list[str]:
    """`python -m service serve` on 127.0.0.1:`port`: the production entry point."""
    entry = [sys.executable, "-m", "service", "serve"]
    return [*entry, "--host", LOOPBACK, "--port", str(port), *options]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    output: Path
    errors: Path | None = None  # stderr, when not merged into `output`

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        """`sig` to the whole process group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown handlers run."""
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the whole group, SIGKILL after `timeout` seconds. Idempotent."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        # Children that outlived their leader (there should be none) go too.
        self.signal(signal.SIGKILL)

    def tail(self, lines: int = 30) -> str:
        """The last `lines` of its output (and of its stderr, when apart)."""
        state = "running" if self.alive() else f"exited {self.popen.returncode}"
        return "\n".join(
            f"--- {self.name} ({state}): last lines of {path}\n{_tail(path, lines)}"
            for path in (self.output, self.errors)
            if path is not None
        )

    def wait(self, check: Callable[[], T | None], *, what: str, within: float) -> T:
        """`check`'s first truthy value; ProcessError when this process exits first or
        `within` seconds pass."""
        return wait_for(what, check, within=within, watch=[self])

    def wait_http(self, url: str, *, within: float = 60.0) -> None:
        """Until GET `url` answers 200."""
        self.wait(lambda: request("GET", url).status == 200, what=f"{url} answers", within=within)


def start(
    name: str,
    args: Sequence[str],
    *,
    output: Path,
    errors: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Process:
    """Start `args`; stdout goes to `output`, stderr too unless `errors` is given."""
    with contextlib.ExitStack() as files:
        stdout = files.enter_context(output.open("ab"))
        stderr = files.enter_context(errors.open("ab")) if errors else subprocess.STDOUT
        popen = subprocess.Popen(  # noqa: S603 - our own commands
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,  # its own process group, for killpg
        )
    return Process(name=name, popen=popen, output=output, errors=errors)


def wait_for(
    what: str, check: Callable[[], T | None], *, within: float, watch: Sequence[Process]
) -> T:
    """`check`'s first truthy value (its exceptions count as "not yet"). A watched process that
    exits ends the wait: no point waiting for a dead server. Failures carry the tails."""
    try:
        return wait_until(
            check,
            within=within,
            what=what,
            interval=POLL_INTERVAL,
            ignore=(Exception,),
            give_up=lambda: _dead(watch),
        )
    except WaitTimeout as exc:
        raise ProcessError(f"{exc}\n" + "\n".join(p.tail(20) for p in watch)) from None


def _dead(watch: Sequence[Process]) -> str | None:
    dead = [p for p in watch if not p.alive()]
    if not dead:
        return None
    return ", ".join(f"{p.name} (exit {p.popen.returncode})" for p in dead) + " exited"


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(missing)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


@dataclass
class Processes:
    """Processes whose output lands in `directory`, stopped in reverse start order by `close`."""

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
        """Output to <name>.out; stderr to <name>.err with `separate_stderr`."""
        errors = self.directory / f"{name}.err" if separate_stderr else None
        output = self.directory / f"{name}.out"
        process = start(name, args, output=output, errors=errors, env=env, cwd=cwd)
        self.started.append(process)
        return process

    def close(self) -> None:
        for process in reversed(self.started):
            process.stop()

    def wait_for(
        self,
        what: str,
        check: Callable[[], T | None],
        *,
        timeout: float,
        watch: Sequence[Process] | None = None,
    ) -> T:
        """`check`'s first truthy value; ProcessError when a watched process (default: all)
        exits or `timeout` passes."""
        return wait_for(what, check, within=timeout, watch=self.started if watch is None else watch)

    def poll(
        self,
        what: str,
        check: Callable[[], T | None],
        *,
        timeout: float,
        watch: Sequence[Process] | None = None,
    ) -> T | None:
        """`wait_for`, but None when only the time runs out."""
        watched = self.started if watch is None else watch
        try:
            return wait_for(what, check, within=timeout, watch=watched)
        except ProcessError:
            if _dead(watched):
                raise
            return None

    def diagnostics(self, lines: int = 20) -> str:
        return "\n".join(process.tail(lines) for process in self.started)
