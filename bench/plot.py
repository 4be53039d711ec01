"""The committed picture: read requests/s and view refresh time against stored tweets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: write the file only
import matplotlib.pyplot as plt

from service.matviews import VIEWS


def plot(results: dict[str, Any], path: Path) -> None:
    reads = [
        r
        for r in results["reads"]
        if r["via"] == "direct"
        and r["connections"] == 50
        and r["log_level"] == "INFO"
        and r["loop"] == results["meta"]["loop"]
    ]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    series: dict[tuple[str, str], dict[int, list[float]]] = {}
    for r in reads:
        key = ("bare handler", "200") if r["endpoint"] == "bare" else (r["path"], r["kind"])
        series.setdefault(key, {}).setdefault(r["stored_tweets"], []).append(r["rps"])
    colors = {
        "/api/v1/users": "tab:blue",
        "/api/v1/hour": "tab:orange",
        "/api/v1/tags": "tab:green",
    }
    lines = {"200": "o-", "304": "s:", "gzip": "x--"}
    for (route, kind), by_size in sorted(series.items()):
        sizes = sorted(by_size)
        rps = [sorted(by_size[n])[len(by_size[n]) // 2] for n in sizes]
        if route == "bare handler":
            left.plot(sizes, rps, "k-", linewidth=2, label="bare handler (1.2 KB)")
        else:
            left.plot(sizes, rps, lines[kind], color=colors.get(route), label=f"{route} {kind}")
    left.set_xscale("log")
    left.set_xlabel("stored tweets")
    left.set_ylabel("requests/s (median, 50 connections)")
    left.set_title("Reads")
    left.set_ylim(bottom=0)
    left.grid(True, alpha=0.3)
    left.legend(fontsize=7)

    ingests = sorted(results["ingest"], key=lambda r: r["stored_tweets_after"])
    x = [r["stored_tweets_after"] for r in ingests]
    for view in VIEWS:
        right.plot(x, [r["refresh_s"].get(view, 0) for r in ingests], "o-", label=view)
    right.plot(x, [r["refresh_total_s"] for r in ingests], "k--", label="all three")
    # The populate of 1,000 new tweets at each size (bench/history.py); an empty database is
    # drawn at 1k, where its first run leaves it.
    runs = sorted(results.get("history", {}).get("sizes", []), key=lambda s: s["stored_tweets"])
    if runs:
        hx = [max(1000, s["stored_tweets"]) for s in runs]
        right.plot(
            hx,
            [s["populate_s"] for s in runs],
            "D-",
            color="tab:red",
            label="populate of 1,000 new: end to end",
        )
        right.plot(
            hx,
            [s["refresh_s"] for s in runs],
            "D:",
            color="tab:purple",
            label="populate of 1,000 new: its refresh",
        )
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("stored tweets")
    right.set_ylabel("seconds")
    right.set_title("Inside a populate, against stored tweets")
    right.grid(True, alpha=0.3)
    right.legend(fontsize=8)
    meta = results["meta"]
    fig.suptitle(
        f"hashtag analytics bench: {meta['cpus']} CPUs, {meta['load_generator']}, "
        f"PostgreSQL {meta['postgresql']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
