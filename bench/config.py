"""What a bench run measures, from the environment (the table in bench/README.md says the same):

  BENCH_QUICK=1          smoke run: sizes 1k/10k/30k, 1 s runs, one round, results under bench/out/
  BENCH_SECONDS=2        seconds per load-generator run (1 in a quick run)
  BENCH_ROUNDS=6         rounds of the primary comparison (1k, 50 connections; 1 in a quick
                         run); the others use 3 (1 in a quick run),
                         and 2 at 200 connections and through HAProxy
  BENCH_LOOP=asyncio     event loop of the bare handler and the service in the main runs
  BENCH_LOADGEN=python   the Python load generator even when wrk is installed (bench/load.py)
  BENCH_DATABASE_URL     a PostgreSQL server to use instead of an embedded one (bench/database.py)

tests/test_bench_config.py holds this docstring and that table to the defaults below.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class Config:
    quick: bool
    seconds: float  # per run of the primary comparison (1k, 50 connections, direct)
    seconds_other: float  # per run of the other comparisons
    rounds: int  # of the primary comparison
    rounds_other: int
    rounds_c200: int  # at 200 connections and through HAProxy
    warmup: float
    loop: str
    mid: int  # tweets at the middle size (sample + synthetic)
    large: int  # tweets at the large size (synthetic, from empty)
    populates: int
    soak_seconds: float  # the load run through HAProxy while populates run
    out_dir: Path
    results_dir: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Config:
        quick = environ.get("BENCH_QUICK", "").strip() not in ("", "0")
        out = BENCH_DIR / "out"
        return cls(
            quick=quick,
            # Many short interleaved rounds and their median resist the bursts of other work on
            # a shared machine better than a few long runs.
            seconds=float(environ.get("BENCH_SECONDS", "1" if quick else "2")),
            seconds_other=float(environ.get("BENCH_SECONDS", "1" if quick else "2")),
            rounds=int(environ.get("BENCH_ROUNDS", "1" if quick else "6")),
            rounds_other=1 if quick else 3,
            rounds_c200=2,
            warmup=0.5 if quick else 1.0,
            loop=environ.get("BENCH_LOOP", "asyncio"),
            mid=10_000 if quick else 100_000,
            large=30_000 if quick else 1_000_000,
            populates=1 if quick else 3,
            soak_seconds=5 if quick else 30,
            out_dir=out,
            results_dir=out if quick else BENCH_DIR,
        )
