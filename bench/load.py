"""Run the load generator: wrk when installed (unless BENCH_LOADGEN=python), else bench.pyload."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from bench.stats import LoadResult, parse_wrk


@dataclass(frozen=True, slots=True)
class LoadGenerator:
    name: str  # "wrk" or "python"
    threads: int = 2

    @classmethod
    def detect(cls) -> LoadGenerator:
        if os.environ.get("BENCH_LOADGEN", "").strip().lower() != "python" and shutil.which("wrk"):
            return cls("wrk")
        return cls("python")

    def run(
        self, url: str, *, connections: int, seconds: float, headers: Mapping[str, str]
    ) -> LoadResult:
        if self.name == "wrk":
            command = [
                "wrk",
                f"-t{self.threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "5s",
                "--latency",
            ]
            for key, value in headers.items():
                command += ["-H", f"{key}: {value}"]
            done = subprocess.run(
                [*command, url], capture_output=True, text=True, check=True, timeout=seconds + 30
            )
            return parse_wrk(done.stdout)
        command = [
            sys.executable,
            "-m",
            "bench.pyload",
            url,
            "--connections",
            str(connections),
            "--duration",
            str(seconds),
        ]
        for key, value in headers.items():
            command += ["--header", f"{key}: {value}"]
        done = subprocess.run(
            command, capture_output=True, text=True, check=True, timeout=seconds + 60
        )
        data = json.loads(done.stdout)
        return LoadResult(**data)
