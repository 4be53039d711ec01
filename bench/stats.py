"""Pure functions of the benchmark: load-generator output parsing, percentiles, medians,
ratios, target checks and the printed table. No I/O and no timing here, so the default test
suite can check them (tests/test_bench.py)."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

_UNITS: Final = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION_RE: Final = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(us|ms|s|m|h)$")
_PERCENTILE_RE: Final = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)%\s+(\S+)\s*$")
_RPS_RE: Final = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.MULTILINE)
_TOTAL_RE: Final = re.compile(r"^\s*([0-9]+) requests in ([0-9.]+\w+),", re.MULTILINE)
_NON2XX_RE: Final = re.compile(r"^\s*Non-2xx or 3xx responses:\s+([0-9]+)", re.MULTILINE)
_ERRORS_RE: Final = re.compile(
    r"Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)"
)


class ParseError(ValueError):
    """The load generator printed something this module does not understand."""


@dataclass(frozen=True, slots=True)
class LoadResult:
    """One load-generator run against one URL."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors and timeouts
    bad_status: int  # responses other than 2xx/3xx

    @property
    def clean(self) -> bool:
        return self.errors == 0 and self.bad_status == 0


def duration_ms(text: str) -> float:
    """wrk's durations: `812.00us`, `3.21ms`, `1.02s`, `2.00m`."""
    match = _DURATION_RE.match(text.strip())
    if match is None:
        raise ParseError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str) -> LoadResult:
    """Parse `wrk --latency` output (its latency distribution gives p50 and p99)."""
    rps = _RPS_RE.search(output)
    total = _TOTAL_RE.search(output)
    if rps is None or total is None:
        raise ParseError("wrk output has no 'Requests/sec' or request total")
    percentiles: dict[float, float] = {}
    in_distribution = False
    for line in output.splitlines():
        if line.strip().startswith("Latency Distribution"):
            in_distribution = True
            continue
        if in_distribution:
            match = _PERCENTILE_RE.match(line)
            if match is None:
                in_distribution = False
                continue
            percentiles[float(match[1])] = duration_ms(match[2])
    if 50.0 not in percentiles or 99.0 not in percentiles:
        raise ParseError("wrk output has no latency distribution (run it with --latency)")
    errors = _ERRORS_RE.search(output)
    non2xx = _NON2XX_RE.search(output)
    return LoadResult(
        requests=int(total[1]),
        seconds=duration_ms(total[2]) / 1000,
        rps=float(rps[1]),
        p50_ms=percentiles[50.0],
        p99_ms=percentiles[99.0],
        errors=sum(int(n) for n in errors.groups()) if errors else 0,
        bad_status=int(non2xx[1]) if non2xx else 0,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; what wrk reports too."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, not {q}")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def from_latencies(
    latencies_s: Sequence[float], seconds: float, errors: int, bad: int
) -> LoadResult:
    """A LoadResult from the Python load generator's raw per-request latencies."""
    if not latencies_s or seconds <= 0:
        return LoadResult(0, seconds, 0.0, math.nan, math.nan, errors, bad)
    return LoadResult(
        requests=len(latencies_s),
        seconds=seconds,
        rps=len(latencies_s) / seconds,
        p50_ms=percentile(latencies_s, 50) * 1000,
        p99_ms=percentile(latencies_s, 99) * 1000,
        errors=errors,
        bad_status=bad,
    )


@dataclass(frozen=True, slots=True)
class Summary:
    """Several rounds of one scenario: medians and the spread of requests/s."""

    rounds: int
    rps: float  # median
    rps_min: float
    rps_max: float
    p50_ms: float  # median over rounds
    p99_ms: float  # median over rounds
    p99_max_ms: float
    clean: bool

    @property
    def spread(self) -> float:
        """(max - min) / median: how far apart the rounds were."""
        return (self.rps_max - self.rps_min) / self.rps if self.rps else math.nan


def summarize(results: Iterable[LoadResult]) -> Summary:
    runs = list(results)
    if not runs:
        raise ValueError("no runs to summarize")
    rps = [r.rps for r in runs]
    return Summary(
        rounds=len(runs),
        rps=statistics.median(rps),
        rps_min=min(rps),
        rps_max=max(rps),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        p99_max_ms=max(r.p99_ms for r in runs),
        clean=all(r.clean for r in runs),
    )


def ratio(value: float, reference: float) -> float:
    """value / reference, NaN when the reference is missing or zero."""
    if not reference or math.isnan(reference) or math.isnan(value):
        return math.nan
    return value / reference


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    goal: str  # human-readable, e.g. ">= 70 % of bare"
    measured: float
    limit: float
    higher_is_better: bool
    unit: str = ""

    @property
    def met(self) -> bool:
        if math.isnan(self.measured):
            return False
        if self.higher_is_better:
            return self.measured >= self.limit
        return self.measured <= self.limit

    @property
    def margin(self) -> float:
        """How far from the limit, relative to it: positive when met, negative when missed."""
        if math.isnan(self.measured) or not self.limit:
            return math.nan
        delta = self.measured - self.limit if self.higher_is_better else self.limit - self.measured
        return delta / self.limit


def at_least(name: str, measured: float, limit: float, unit: str = "") -> Target:
    return Target(name, f">= {fmt_value(limit, unit)}", measured, limit, True, unit)


def at_most(name: str, measured: float, limit: float, unit: str = "") -> Target:
    return Target(name, f"<= {fmt_value(limit, unit)}", measured, limit, False, unit)


def fmt_value(value: float, unit: str = "") -> str:
    if math.isnan(value):
        return "n/a"
    if unit == "%":
        return f"{value * 100:.0f} %"
    if unit == "x":
        return f"{value:.3f}x"
    if unit in ("ms", "s"):
        return f"{value:.3g} {unit}" if value < 10 else f"{value:.0f} {unit}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [len(h) for h in headers]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, headers {len(headers)}: {row}")
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(out)


def size_label(tweets: int) -> str:
    """1000 -> 1k, 100000 -> 100k, 1000000 -> 1M; other numbers as they are."""
    for unit, name in ((1_000_000, "M"), (1_000, "k")):
        if tweets >= unit and tweets % unit == 0:
            return f"{tweets // unit}{name}"
    return str(tweets)


_SAMPLE_RE: Final = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)\s*$"
)
_LABEL_RE: Final = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def prometheus_samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of one metric in the Prometheus text format: {sorted label pairs: value}."""
    samples: dict[tuple[tuple[str, str], ...], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE_RE.match(line)
        if match is None or match["name"] != name:
            continue
        labels = tuple(sorted(_LABEL_RE.findall(match["labels"] or "")))
        samples[labels] = float(match["value"])
    return samples


def step_seconds(metrics_text: str) -> dict[str, float]:
    """populate_step_duration_seconds_sum by step, from a /metrics page."""
    samples = prometheus_samples(metrics_text, "populate_step_duration_seconds_sum")
    return {dict(labels)["step"]: value for labels, value in samples.items() if labels}


def populate_events(lines: Iterable[str]) -> list[dict[str, object]]:
    """The service's `populate.*` JSON log lines (those with a duration_ms), in order."""
    import json

    events: list[dict[str, object]] = []
    for line in lines:
        if '"populate.' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        # The service writes the Elastic Common Schema name (service/log.py FIELD_NAMES).
        if "event.action" in entry:
            entry["event"] = entry["event.action"]
        if str(entry.get("event", "")).startswith("populate.") and "duration_ms" in entry:
            events.append(entry)
    return events


@dataclass(frozen=True, slots=True)
class Profile:
    samples: int
    self_pct: list[tuple[str, float]]  # frames where the samples were taken, most first
    inclusive_pct: list[tuple[str, float]]  # frames on the stack, most first
    categories_pct: list[tuple[str, float]]  # see CATEGORIES


# Where a request's CPU goes: each sample counts for the innermost frame that matches one of
# these; samples with none of them are the HTTP server itself (what the bare handler also pays).
CATEGORIES: Final = (
    ("access log (service/log.py)", ("service/log.py",)),
    ("metrics (prometheus_client)", ("prometheus_client", "service/metrics.py")),
    ("middleware and validation", ("service/middlewares.py", "service/openapi.py")),
    ("handler and cache lookup", ("service/routes.py", "service/cache.py")),
)
SERVER: Final = "aiohttp, asyncio, socket I/O"


def collapsed_profile(text: str, top: int = 15, keep: Sequence[str] = ()) -> Profile:
    """Summarize py-spy's raw (collapsed) output: `frame;frame;frame count` per line.

    `keep`: substrings of the frames worth listing by inclusive time (e.g. `service/`); the
    event loop's own frames, on every stack, would otherwise fill the list.
    """
    self_count: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    categories: dict[str, int] = {}
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        self_count[frames[-1]] = self_count.get(frames[-1], 0) + n
        category = _category(frames)
        categories[category] = categories.get(category, 0) + n
        for frame in set(frames):
            if "__main__" in frame or "runpy" in frame:
                continue  # the entry point is on every stack
            if not keep or any(k in frame for k in keep):
                inclusive[frame] = inclusive.get(frame, 0) + n
    if not total:
        return Profile(0, [], [], [])

    def ranked(counts: dict[str, int]) -> list[tuple[str, float]]:
        best = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]
        return [(frame, round(100 * n / total, 1)) for frame, n in best]

    return Profile(total, ranked(self_count), ranked(inclusive), ranked(categories))


def _category(frames: Sequence[str]) -> str:
    for frame in reversed(frames):
        for name, markers in CATEGORIES:
            if any(marker in frame for marker in markers):
                return name
    return SERVER
