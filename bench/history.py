"""Populate cost against the stored history: the populate of 1,000 new tweets (bench.phases) on
databases of different sizes, compared within one run.

`make bench` measures it on the large database its ingest filled through the populate path,
against its populate phase on an empty one. `python -m bench history` runs only this: one
database grown from empty to 100k and 1M tweets (10k and 30k with BENCH_QUICK=1) by COPY of the
synthetic rows, with rebuild_stats() computing the aggregates the populates would have kept;
each size gets a warm-up populate that finds nothing, 5 measured ones, then the standalone
refresh of each view. At the end every aggregate and view, as the populates kept them, must
equal what rebuild_stats() and a refresh compute again from the stored rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import psycopg2

from bench import database
from bench.data import Dataset, SyntheticSource, rows_of
from bench.phases import PopulateRun, populates, say
from bench.report import history_table, history_targets, size_label, targets_table
from service.matviews import VIEWS
from testing.processes import Processes

# Tweet numbers of the populate batches: above every synthetic dataset the bench stores (the
# largest ends at 1M), below the 22 bits the synthetic ids keep unique; each run takes the
# next 10,000, so that no two batches share a tweet or an author.
BATCH_BASE: Final = 2_000_000
AGGREGATES: Final = (
    "author_stats",
    "hour_stats",
    "tag_stats",
    "tag_hour_stats",
    "tag_author_stats",
)


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def size_row(label: str, stored: int, runs: Sequence[PopulateRun], **extra: Any) -> dict[str, Any]:
    """One size: medians of the populates that succeeded, `stored` tweets before the first."""
    ok = [r for r in runs if r.status == 201]
    return {
        "label": label,
        "stored_tweets": stored,
        "succeeded": f"{len(ok)}/{len(runs)}",
        "populate_s": round(_median([r.seconds for r in ok]), 4),
        "store_s": round(_median([r.steps.get("store", math.nan) for r in ok]), 4),
        "refresh_s": round(_median([r.steps.get("refresh", math.nan) for r in ok]), 4),
        "every_populate_s": [round(r.seconds, 4) for r in runs],
        **extra,
    }


def grow(url: str, dataset: Dataset) -> None:
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
    database.copy_rows(
        url, dataclasses.replace(rows, places=[p for p in rows.places if p.id not in known])
    )
    database.execute(url, "UPDATE populate_runs SET status = 'succeeded' WHERE source = 'copy'")
    database.execute(url, "SELECT rebuild_stats()")
    for view in VIEWS:
        database.execute(url, f"REFRESH MATERIALIZED VIEW {view}")  # names from VIEWS
    database.settle(url)


def consistent(url: str) -> bool:
    """Every aggregate and view as the populates kept them equals its recompute."""
    names = (*AGGREGATES, *VIEWS)  # fixed names, never input
    # One session: its temporary tables keep what the populates left.
    with contextlib.closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        conn.autocommit = True
        for name in names:
            cur.execute(f"CREATE TEMP TABLE kept_{name} AS TABLE {name}")
        cur.execute("SELECT rebuild_stats()")
        for view in VIEWS:
            cur.execute(f"REFRESH MATERIALIZED VIEW {view}")
        ok = True
        for name in names:
            cur.execute(
                f"SELECT (SELECT count(*) FROM (TABLE {name} EXCEPT ALL TABLE kept_{name}) AS a),"  # noqa: S608 - fixed names
                f" (SELECT count(*) FROM (TABLE kept_{name} EXCEPT ALL TABLE {name}) AS b)"
            )
            lacking, extra = cur.fetchone() or (0, 0)
            if lacking or extra:
                say(f"{name}: {lacking} rows of the recompute missing, {extra} rows besides")
                ok = False
    return ok


async def measure_sizes(
    admin_url: str, sizes: Sequence[int], *, runs: int, loop: str, group: Processes
) -> dict[str, Any]:
    url = database.create(admin_url, "history")
    rows: list[dict[str, Any]] = []
    try:
        stored, batch = 0, 0
        for size in sizes:
            if size > stored:
                say(f"history: adding {size - stored:,} tweets by COPY")
                await asyncio.to_thread(grow, url, Dataset(size - stored, first=stored))
            before = database.counts(url)["tweets"]
            first = BATCH_BASE + batch * 10_000
            measured = await populates(group, url, runs=runs, loop=loop, first=first, warm_up=True)
            batch += runs
            database.settle(url)
            standalone = {k: round(v, 4) for k, v in database.refresh_each(url).items()}
            label = size_label(max(1000, before))
            rows.append(size_row(label, before, measured, refresh_standalone_s=standalone))
            stored = database.counts(url)["tweets"]
        say("history: every aggregate and view against its recompute")
        ok = await asyncio.to_thread(consistent, url)
    finally:
        database.drop(admin_url, url)
    return {"sizes": rows, "consistent": ok}


def main(*, quick: bool, loop: str, group: Processes, results_dir: Path) -> None:
    """`python -m bench history`: writes history.json next to results.json."""
    sizes = (0, 10_000, 30_000) if quick else (0, 100_000, 1_000_000)
    with database.server() as (admin, kind):
        say(f"PostgreSQL {database.version(admin)}, {kind}")
        history = asyncio.run(measure_sizes(admin, sizes, runs=5, loop=loop, group=group))
    history["targets"] = history_targets(history)
    (results_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    print(history_table(history))
    print(f"\nevery aggregate and view equal to its recompute: {history['consistent']}\n")
    print(targets_table(history["targets"]))
