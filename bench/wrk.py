"""wrk, the load generator of every figure: one run against one URL, its numbers read from the
JSON line bench/wrk.lua prints when the run is done."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.procs import require

SCRIPT: Final = Path(__file__).with_name("wrk.lua")
THREADS: Final = 2


@dataclass(frozen=True, slots=True)
class Run:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors and timeouts
    non_2xx: int  # wrk counts every status above 399

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run(
    url: str,
    *,
    connections: int,
    seconds: float,
    headers: Mapping[str, str] | None = None,
    paths: Sequence[str] = (),
) -> Run:
    """`paths`: every connection walks them in turn instead of requesting `url`'s path."""
    command = [require("wrk"), f"-t{THREADS}", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
    command += ["--timeout", "5s", "-s", str(SCRIPT)]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command += [url, "--", *paths]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60)
    return Run(**json.loads(done.stdout.strip().splitlines()[-1]))
