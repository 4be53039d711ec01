"""bench/history.py's pure functions: the per-size rows, the targets, the table. No timing is
checked here; `python -m bench history` and `make bench` measure (bench/README.md)."""

from __future__ import annotations

from bench.history import BATCH_BASE, BATCH_STEP, render, size_row, target_rows, targets
from bench.phases import PopulateRun
from bench.stats import markdown_table
from service.matviews import VIEWS


def run(seconds: float, refresh: float, status: int = 201) -> PopulateRun:
    return PopulateRun(
        seconds=seconds,
        status=status,
        tweets_new=1000 if status == 201 else 0,
        steps={"fetch": 0.05, "store": seconds / 2, "refresh": refresh},
        parse_seconds=0.0,
        refresh={view: refresh / len(VIEWS) for view in VIEWS},
        logged_ms={},
    )


def test_size_row_takes_medians_of_the_successful_runs() -> None:
    runs = [run(0.3, 0.03), run(0.1, 0.01), run(9.0, 9.0, status=500), run(0.2, 0.02)]

    row = size_row("1M", 1_000_000, runs, {"top_users": 0.01}, {"top_users": 1000})

    assert row["succeeded"] == 3
    assert row["runs"] == 4
    assert row["populate_s"] == 0.2
    assert row["refresh_s"] == 0.02
    assert row["store_s"] == 0.1
    assert row["every_populate_s"] == [0.3, 0.1, 9.0, 0.2]
    assert row["view_rows"] == {"top_users": 1000}


def test_targets_compare_the_largest_size_with_the_smallest() -> None:
    history = {
        "sizes": [
            size_row("1M", 1_000_000, [run(0.5, 0.04)]),
            size_row("empty", 0, [run(0.2, 0.02)]),
        ]
    }

    checks = {t.name: t for t in targets(history)}

    populate = checks["populate 1,000 new with 1M stored vs empty"]
    assert populate.measured == 2.5
    assert not populate.met  # goal: at most 2x
    refresh = checks["refresh in populate, 1M stored vs 1k"]
    assert refresh.measured == 2.0
    assert not refresh.met  # goal: at most 1.5x
    absolute = checks["refresh in populate with 1M stored (s)"]
    assert absolute.measured == 0.04
    assert absolute.met  # goal: under 0.3 s
    rows = target_rows(history)
    assert [r["met"] for r in rows] == [False, False, True]
    assert targets({"sizes": history["sizes"][:1]}) == []


def test_render_lists_every_size_in_order_and_the_check() -> None:
    history = {
        "sizes": [
            size_row("1M", 1_000_000, [run(0.25, 0.03)], dict.fromkeys(VIEWS, 0.01)),
            size_row("empty", 0, [run(0.2, 0.02)]),
        ],
        "consistent": True,
    }

    text = render(history, markdown_table)

    lines = text.splitlines()
    assert "GROUP BY over the stored rows afterwards: yes" in lines[0]
    assert lines[3].startswith("| empty | 0 | 1/1 | 200 | 100 | 20 |")
    assert lines[4].startswith("| 1M | 1,000,000 | 1/1 | 250 | 125 | 30 |")
    assert lines[4].endswith("| 30 |")  # the three standalone refreshes


def test_populate_batches_never_reach_the_synthetic_data_or_each_other() -> None:
    # Tweet numbers of the stored data end at 1M; a batch takes 1,000 numbers and 300 authors.
    assert BATCH_BASE >= 1_000_000
    assert BATCH_STEP >= 1000
    assert BATCH_BASE + 100 * BATCH_STEP < 0x3FFFFF  # ids stay unique in the low 22 bits
