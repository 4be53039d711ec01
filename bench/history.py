"""Populate cost against the stored history: the same populate on databases of different sizes.

Each size gets the populate of `make bench`'s first phase: 1,000 new tweets (10 tags x 100) from
the zero-latency fake X API through POST /api/v1/populate of a service process, a few times; the
views are then refreshed on their own as well. The targets compare sizes within one run: the
populate with 1M tweets stored against the same populate on an empty database, and the refresh
of the views at 1M against 1k.

`make bench` measures the 1M database its ingest phase filled through the populate path (the
empty size is its first phase). `python -m bench history` runs only this: one database grown
from empty to 100k and 1M by COPY of the synthetic rows, after which rebuild_stats() computes the
aggregates (alembic 0003) the populates would have kept, and checks every aggregate and view
against a GROUP BY over the stored rows at the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import database
from bench.data import Dataset, SyntheticSource, rows_of
from bench.phases import (
    PopulateRun,
    _fake_batch,
    _post,
    _serve_fake,
    fetching_service,
    say,
    timed_populate,
)
from bench.stats import Target, at_most, fmt_value, size_label
from service.matviews import VIEWS
from service.testing.fake_x import FakeX

# Tweet numbers of the populate batches: above every synthetic dataset the bench stores (the
# largest ends at 1M), below the 22 bits the synthetic ids keep unique; 10,000 apart, so that
# no two batches share a tweet or an author.
BATCH_BASE = 2_000_000
BATCH_STEP = 10_000


async def populates_at(
    url: str, log_dir: Path, *, runs: int, loop: str, batch: int = 0, warm_up: bool = False
) -> list[PopulateRun]:
    """`runs` populates of 1,000 new tweets into the database at `url`, as populate_phase does
    on an empty one; `batch` numbers the first batch (each run takes the next). `warm_up`: a
    populate that finds no tweets goes first (connections, caches), not measured."""
    fake = FakeX()
    runner, port = await _serve_fake(fake)
    results: list[PopulateRun] = []
    try:
        proc = await fetching_service("history-api", url, port, loop=loop, log_dir=log_dir)
        try:
            if warm_up:
                fake.tweets.clear()
                status, _ = await asyncio.to_thread(_post, proc.url("/api/v1/populate"))
                if status != 201:
                    raise RuntimeError(f"the warm-up populate answered {status}")
            for run in range(runs):
                _fake_batch(fake, first=BATCH_BASE + (batch + run) * BATCH_STEP, per_tag=100)
                results.append(await timed_populate(proc))
                status, seconds = results[-1].status, results[-1].seconds
                say(f"history: populate {run + 1}/{runs}: {status} in {seconds * 1000:.0f} ms")
        finally:
            proc.stop()
    finally:
        await runner.cleanup()
    return results


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else math.nan


def size_row(
    label: str,
    stored: int,
    runs: Sequence[PopulateRun],
    standalone: dict[str, float] | None = None,
    view_rows: dict[str, int] | None = None,
) -> dict[str, Any]:
    """One size for results.json: `stored` tweets before the first of `runs`."""
    ok = [r for r in runs if r.status == 201]
    return {
        "label": label,
        "stored_tweets": stored,
        "runs": len(runs),
        "succeeded": len(ok),
        "populate_s": round(_median([r.seconds for r in ok]), 4),
        "store_s": round(_median([r.steps.get("store", math.nan) for r in ok]), 4),
        "refresh_s": round(_median([r.steps.get("refresh", math.nan) for r in ok]), 4),
        "refresh_per_view_s": {
            view: round(_median([r.refresh.get(view, math.nan) for r in ok]), 4) for view in VIEWS
        },
        "every_populate_s": [round(r.seconds, 4) for r in runs],
        "refresh_standalone_s": {k: round(v, 4) for k, v in (standalone or {}).items()},
        "view_rows": dict(view_rows or {}),
    }


def targets(history: dict[str, Any]) -> list[Target]:
    """Largest size against the smallest, within this run."""
    sizes = sorted(history.get("sizes", []), key=lambda s: s["stored_tweets"])
    if len(sizes) < 2:
        return []
    small, large = sizes[0], sizes[-1]
    name = size_label(large["stored_tweets"])
    base = size_label(max(1000, small["stored_tweets"]))
    return [
        at_most(
            f"populate 1,000 new with {name} stored vs empty",
            large["populate_s"] / small["populate_s"],
            2.0,
            "x",
        ),
        at_most(
            f"refresh in populate, {name} stored vs {base}",
            large["refresh_s"] / small["refresh_s"],
            1.5,
            "x",
        ),
        at_most(f"refresh in populate with {name} stored (s)", large["refresh_s"], 0.3, "s"),
    ]


def target_rows(history: dict[str, Any]) -> list[dict[str, Any]]:
    """targets() in the shape of results.json's "targets"."""
    return [
        {
            "name": t.name,
            "goal": t.goal,
            "measured": None if math.isnan(t.measured) else round(t.measured, 4),
            "met": t.met,
            "margin": None if math.isnan(t.margin) else round(t.margin, 3),
        }
        for t in targets(history)
    ]


def render(
    history: dict[str, Any], fmt: Callable[[Sequence[str], Sequence[Sequence[str]]], str]
) -> str:
    rows = []
    for s in sorted(history.get("sizes", []), key=lambda s: s["stored_tweets"]):
        standalone = s["refresh_standalone_s"]
        rows.append(
            [
                s["label"],
                f"{s['stored_tweets']:,}",
                f"{s['succeeded']}/{s['runs']}",
                f"{s['populate_s'] * 1000:.0f}",
                f"{s['store_s'] * 1000:.0f}",
                f"{s['refresh_s'] * 1000:.0f}",
                " / ".join(f"{s['refresh_per_view_s'][v] * 1000:.1f}" for v in VIEWS),
                f"{sum(standalone.values()) * 1000:.0f}" if standalone else "-",
            ]
        )
    checked = history.get("consistent")
    note = (
        ""
        if checked is None
        else (
            "; every aggregate and view equal to a GROUP BY over the stored rows afterwards: "
            + ("yes" if checked else "NO")
        )
    )
    return "\n".join(
        [
            "Populate of 1,000 new tweets against stored tweets (medians of the runs, ms)" + note,
            fmt(
                [
                    "size",
                    "stored before",
                    "201s",
                    "populate",
                    "store",
                    "refresh",
                    "refresh " + " / ".join(VIEWS),
                    "refresh standalone",
                ],
                rows,
            ),
        ]
    )


# --- python -m bench history ---------------------------------------------------------------------


def _grow(url: str, dataset: Dataset) -> None:
    """Add `dataset`'s rows by COPY, then recompute the aggregates and refresh the views."""
    source = SyntheticSource(dataset)
    per_tag = source.per_tag()

    async def serve_all() -> None:
        for tag in dataset.tags:
            token: str | None = None
            while True:
                page = await source.search(tag, max_results=per_tag, next_token=token)
                token = page.next_token
                if token is None:
                    break

    asyncio.run(serve_all())
    rows = rows_of(source.served)
    known = {row[0] for row in database.execute(url, "SELECT id FROM places")}
    rows = dataclasses.replace(rows, places=[p for p in rows.places if p.id not in known])
    database.copy_rows(url, rows)
    database.execute(url, "UPDATE populate_runs SET status = 'succeeded' WHERE source = 'copy'")
    database.execute(url, "SELECT rebuild_stats()")
    for view in VIEWS:
        database.execute(url, f"REFRESH MATERIALIZED VIEW {view}")  # names from VIEWS
    database.settle(url)


def consistent(url: str) -> bool:
    """Every aggregate and view against a GROUP BY over the stored rows (the test suite's
    checks, tests/test_aggregates.py)."""
    from tests.test_aggregates import CHECKS

    for name, (actual, expected) in CHECKS.items():
        sql = f"SELECT count(*) FROM (({actual}) EXCEPT ALL ({expected})) AS a"
        extra = database.execute(url, sql)[0][0]
        missing = database.execute(
            url, f"SELECT count(*) FROM (({expected}) EXCEPT ALL ({actual})) AS m"
        )[0][0]
        if extra or missing:
            say(f"{name}: {extra} rows not in a recompute, {missing} missing")
            return False
    return True


async def measure_sizes(
    admin_url: str, sizes: Sequence[int], *, runs: int, loop: str, log_dir: Path
) -> dict[str, Any]:
    url = database.create(admin_url, "history")
    rows: list[dict[str, Any]] = []
    try:
        stored = 0
        batch = 0
        for size in sizes:
            if size > stored:
                say(f"history: adding {size - stored:,} tweets by COPY")
                await asyncio.to_thread(_grow, url, Dataset(size - stored, first=stored))
            before = database.counts(url)["tweets"]
            measured = await populates_at(
                url, log_dir, runs=runs, loop=loop, batch=batch, warm_up=True
            )
            batch += runs
            database.settle(url)
            standalone = database.refresh_each(url)
            counts = database.counts(url)
            rows.append(
                size_row(
                    size_label(max(1000, before)),
                    before,
                    measured,
                    standalone,
                    {view: counts[view] for view in VIEWS},
                )
            )
            stored = counts["tweets"]
        say("history: checking every aggregate and view against a recompute")
        ok = await asyncio.to_thread(consistent, url)
    finally:
        database.drop(admin_url, url)
    return {"method": "copy", "sizes": rows, "consistent": ok}


def main(quick: bool, runs: int, loop: str, out_dir: Path, results_dir: Path) -> None:
    """`python -m bench history`: writes history.json next to results.json."""
    from bench.stats import table

    sizes = (0, 10_000, 30_000) if quick else (0, 100_000, 1_000_000)
    log_dir = out_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with database.server() as (admin, kind):
        say(f"PostgreSQL {database.version(admin)}, {kind}")
        history = asyncio.run(
            measure_sizes(admin, sizes, runs=max(runs, 5), loop=loop, log_dir=log_dir)
        )
    history["targets"] = target_rows(history)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    print(render(history, table))
    for t in history["targets"]:
        measured = math.nan if t["measured"] is None else t["measured"]
        unit = "x" if t["goal"].endswith("x") else "s"
        print(
            f"{t['name']}: {fmt_value(measured, unit)} (goal {t['goal']}): "
            + ("met" if t["met"] else "NOT MET")
        )
