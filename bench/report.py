"""The report of a run: the targets checked against what it measured, and results.md, whose every
table comes from the one markdown writer, `table`."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from service.matviews import VIEWS

Row = Mapping[str, Any]


def table(header: str, rows: Iterable[Sequence[object]]) -> str:
    """A markdown table; `header` names the columns, separated by `|`."""
    columns = len(header.split("|"))
    lines = [f"| {header} |", "|" + "---|" * columns]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def size_label(tweets: int) -> str:
    """1000 -> 1k, 100000 -> 100k, 1000000 -> 1M; other numbers as they are."""
    for unit, name in ((1_000_000, "M"), (1_000, "k")):
        if tweets >= unit and tweets % unit == 0:
            return f"{tweets // unit}{name}"
    return str(tweets)


def fmt(value: float | None, unit: str) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if unit == "%":
        return f"{value * 100:.0f} %"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:.3g} {unit}"


def target(
    name: str, measured: float | None, limit: float, unit: str, *, most: bool
) -> dict[str, Any]:
    """`measured` against `limit`: at most (`most`) or at least; a missing figure is not met."""
    value = None if measured is None or math.isnan(measured) else round(measured, 4)
    met = value is not None and (value <= limit if most else value >= limit)
    goal = ("<= " if most else ">= ") + fmt(limit, unit)
    return {"name": name, "goal": goal, "unit": unit, "measured": value, "met": met}


def _median(values: Iterable[float]) -> float:
    found = list(values)
    return statistics.median(found) if found else math.nan


def _read(reads: Sequence[Row], key: str, **match: object) -> float | None:
    found = [r for r in reads if all(r.get(k) == v for k, v in match.items())]
    return float(found[0][key]) if found else None


def targets(results: Row, *, small: str, large: str, quick: bool) -> list[dict[str, Any]]:
    """The performance issue's targets, each a ratio or a bound measured in this run."""
    reads = results["reads"]
    out = []
    for name in ("users", "hour", "tags"):
        c50 = {"via": "direct", "connections": 50, "endpoint": name}
        ok = _read(reads, "ratio", size=small, kind="200", **c50)
        out.append(target(f"{name} 200 rps vs bare ({small}, c50)", ok, 0.70, "%", most=False))
        p99 = _read(reads, "p99_ratio", size=small, kind="200", **c50)
        out.append(target(f"{name} 200 p99 vs bare ({small}, c50)", p99, 2.0, "x", most=True))
        cond = _read(reads, "ratio", size=small, kind="304", **c50)
        out.append(target(f"{name} 304 rps vs bare ({small}, c50)", cond, 0.90, "%", most=False))
        gz = _read(reads, "ratio", size=large, kind="gzip", **c50)
        out.append(target(f"{name} gzip rps vs bare ({large}, c50)", gz, 0.50, "%", most=False))
        c200 = [
            r["p99_ms"]
            for r in reads
            if r["via"] == "direct" and r["connections"] == 200 and r["endpoint"] == name
        ]
        worst = max(c200) if c200 else None
        out.append(target(f"{name} p99 at c200, worst size", worst, 50.0, "ms", most=True))
    ok_runs = [p["seconds"] for p in results["populate"] if p["status"] == 201]
    out.append(target("populate 1,000 tweets end to end", _median(ok_runs), 1.0, "s", most=True))
    big: Row = next((r for r in results["ingest"] if r["label"] == large), {})
    out.append(target(f"ingest rows/s vs COPY ({large})", big.get("vs_copy"), 0.5, "%", most=False))
    refresh = sum(big.get("refresh_s", {}).values()) if big else None
    out.append(target(f"refresh of the three views ({large})", refresh, 2.0, "s", most=True))
    out += history_targets(results["history"])
    if not quick:
        wall = results["meta"]["wall_seconds"]
        out.append(target("make bench wall time", wall, 900.0, "s", most=True))
    return out


def history_targets(history: Row) -> list[dict[str, Any]]:
    """The same populate with the most tweets stored against the fewest, in one run."""
    sizes = sorted(history.get("sizes", []), key=lambda s: s["stored_tweets"])
    if len(sizes) < 2:
        return []
    small, large = sizes[0], sizes[-1]
    name, base = size_label(large["stored_tweets"]), size_label(max(1000, small["stored_tweets"]))
    return [
        target(
            f"populate 1,000 new with {name} stored vs empty",
            large["populate_s"] / small["populate_s"],
            2.0,
            "x",
            most=True,
        ),
        target(
            f"refresh in populate, {name} stored vs {base}",
            large["refresh_s"] / small["refresh_s"],
            1.5,
            "x",
            most=True,
        ),
        target(f"refresh in populate with {name} stored", large["refresh_s"], 0.3, "s", most=True),
    ]


def history_table(history: Row) -> str:
    rows = [
        [
            s["label"],
            f"{s['stored_tweets']:,}",
            s["succeeded"],
            *(f"{s[key] * 1000:.0f}" for key in ("populate_s", "store_s", "refresh_s")),
            " / ".join(f"{v * 1000:.0f}" for v in s.get("refresh_standalone_s", {}).values())
            or "-",
        ]
        for s in sorted(history["sizes"], key=lambda s: s["stored_tweets"])
    ]
    standalone = "standalone refresh ms (" + " / ".join(VIEWS) + ")"
    return table(
        f"size | stored before | 201s | populate ms | store ms | refresh ms | {standalone}", rows
    )


def targets_table(checked: Iterable[Row]) -> str:
    return table(
        "target | goal | measured | met",
        (
            [t["name"], t["goal"], fmt(t["measured"], t["unit"]), "yes" if t["met"] else "**no**"]
            for t in checked
        ),
    )


def _dash(value: object, text: str) -> str:
    return "-" if value is None else text


def render(results: Row) -> str:
    """results.md: every table of a `make bench` run."""
    reads = [
        [
            r["size"],
            r["via"],
            r["connections"],
            r["endpoint"],
            r["kind"],
            r["body_bytes"],
            f"{r['rps']:,.0f}",
            f"{r['spread'] * 100:.0f} %",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            _dash(r["ratio"], f"{(r['ratio'] or 0) * 100:.0f} %"),
            _dash(r["p99_ratio"], f"{r['p99_ratio'] or 0:.2f}"),
            _dash(r["db_tx_per_s"], f"{r['db_tx_per_s']}"),
        ]
        for r in results["reads"]
    ]
    populates = [
        [i, p["status"], p["tweets_new"], f"{p['seconds'] * 1000:.0f}"]
        + [f"{p['steps_s'].get(step, 0) * 1000:.0f}" for step in ("fetch", "store", "refresh")]
        for i, p in enumerate(results["populate"], start=1)
    ]
    ingests = [
        [
            r["label"],
            f"{r['tweets']:,}",
            f"{r['rows']:,}",
            f"{r['store_s']:.2f}",
            f"{r['rows_per_s']:,}",
            _dash(r.get("copy_s"), f"{r.get('copy_s', 0):.2f}"),
            _dash(r.get("vs_copy"), f"{r.get('vs_copy', 0) * 100:.0f} %"),
            f"{r['fetch_s']:.1f}",
        ]
        for r in results["ingest"]
    ]
    refreshes = [
        [
            r["label"],
            view,
            f"{r['view_rows'][view]:,}",
            f"{r['refresh_s'].get(view, 0) * 1000:.1f}",
            f"{r['refresh_standalone_s'][view] * 1000:.1f}",
        ]
        for r in results["ingest"]
        for view in VIEWS
    ]
    meta = results["meta"]
    parts = [
        "Reads: requests/s (median of the rounds; spread = (max - min) / median) and latency "
        "(medians of wrk's percentiles), against the bare handler of the same group",
        table(
            "size | via | conns | endpoint | kind | body B | rps | spread | p50 ms | p99 ms"
            " | rps/bare | p99/bare | db tx/s",
            reads,
        ),
        "Populate of 1,000 new tweets (10 tags x 100) from the zero-latency fake X API",
        table(
            "run | status | new | end to end ms | fetch ms | store ms | refresh ms",
            populates,
        ),
        "Ingest (the store step of one populate) against COPY of the same rows",
        table(
            "size | tweets | rows | store s | rows/s | COPY s | vs COPY | fetch+parse s", ingests
        ),
        "Refresh CONCURRENTLY of each view: inside the populate, and on its own afterwards",
        table("size | view | view rows | in populate ms | standalone ms", refreshes),
        "Populate of 1,000 new tweets against stored tweets (medians)",
        history_table(results["history"]),
    ]
    if results.get("soak"):
        parts += [
            "Load through HAProxy (two replicas) while a full populate runs every 2 s",
            soak_table(results["soak"]),
        ]
    parts += ["Targets", targets_table(results["targets"])]
    parts.append(
        f"{meta['finished_at']}: {meta['wall_seconds']:.0f} s; wrk -t2, {meta['seconds']:g} s "
        f"runs; PostgreSQL {meta['postgresql']}, {meta['database']}; Python {meta['python']}, "
        f"aiohttp {meta['aiohttp']}, loop {meta['loop']}; {meta['cpus']} CPUs; load average "
        f"{meta['loadavg_start']} at the start, {meta['loadavg_end']} at the end"
    )
    return "\n\n".join(parts) + "\n"


def soak_table(soak: Row) -> str:
    statuses = ", ".join(f"{k}: {v}" for k, v in soak["populate_statuses"].items())
    return table(
        "connections | seconds | requests | rps | p50 ms | p99 ms | non-2xx | socket errors"
        " | populates (status: count)",
        [
            [
                soak["connections"],
                soak["seconds"],
                f"{soak['requests']:,}",
                f"{soak['rps']:,}",
                f"{soak['p50_ms']:.2f}",
                f"{soak['p99_ms']:.2f}",
                soak["non_2xx"],
                soak["socket_errors"],
                f"{soak['populates']} ({statuses})",
            ]
        ],
    )
