"""Prometheus metrics. Module-level objects: the one kind of global state we allow.

Names are a contract with observability/prometheus (alert rules) and the Grafana dashboards;
tests/test_observability_static.py checks that every metric those files use is defined here.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from service.matviews import VIEWS

# Latency buckets sized for a service whose reads are served in about a millisecond
# and whose populate takes seconds.
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class RequestStats:
    """http_requests_total, http_request_duration_seconds and http_requests_in_progress, kept as
    plain numbers: updated from the event loop and read at scrape time, also from the loop, so
    they need no lock.

    Measured (valgrind --tool=callgrind, 1,000 cached reads of /api/v1/users in one process):
    prometheus_client's Counter, Histogram and Gauge.track_inprogress() cost 43,000 instructions
    a request (labels() on every call, a lock per update), 23,000 with the labelled children
    kept, against 2,200 here; a whole request to a bare aiohttp handler costs about 210,000.
    """

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.in_progress = 0
        self._bounds = buckets
        self._counts: dict[tuple[str, str, int], int] = {}
        # Per (method, route): a count per bucket (the last one is +Inf), then the sum.
        self._latency: dict[tuple[str, str], list[float]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        cells = self._latency.get((method, route))
        if cells is None:
            cells = self._latency[(method, route)] = [0.0] * (len(self._bounds) + 2)
        cells[bisect.bisect_left(self._bounds, seconds)] += 1
        cells[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "http_requests",
            "HTTP requests answered, by method, route template and status code.",
            labels=["method", "route", "status"],
        )
        for (method, route, status), count in sorted(self._counts.items()):
            requests.add_metric([method, route, str(status)], count)
        latency = HistogramMetricFamily(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            labels=["method", "route"],
        )
        for (method, route), cells in sorted(self._latency.items()):
            cumulative = list(itertools.accumulate(cells[:-1]))
            bounds = [repr(float(b)) for b in self._bounds] + ["+Inf"]  # as prometheus_client
            latency.add_metric(
                [method, route], list(zip(bounds, cumulative, strict=True)), cells[-1]
            )
        yield requests
        yield latency
        yield GaugeMetricFamily(
            "http_requests_in_progress", "HTTP requests being answered now.", self.in_progress
        )


REQUESTS = RequestStats(_HTTP_BUCKETS)
REGISTRY.register(REQUESTS)

POPULATE_RUNS = Counter(
    "populate_runs_total",
    "Populate runs by outcome: succeeded, failed, conflict (another run held the lock).",
    ["outcome"],
)
POPULATE_DURATION = Histogram(
    "populate_duration_seconds",
    "Duration of a populate run, fetch to commit, by outcome.",
    ["outcome"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
POPULATE_STEP_DURATION = Histogram(
    "populate_step_duration_seconds",
    "Duration of each populate step: fetch, store, refresh.",
    ["step"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
POPULATE_LAST_SUCCESS = Gauge(
    "populate_last_success_timestamp_seconds",
    "Unix time of the last successful populate run seen by this process (0: none yet).",
)
TWEETS_FETCHED = Counter(
    "tweets_fetched_total",
    "Tweets received from the source, by tag.",
    ["tag"],
)
TWEETS_STORED = Counter(
    "tweets_stored_total",
    "Tweets stored for the first time.",
)

COMPLIANCE_PASSES = Counter(
    "compliance_passes_total",
    "Compliance passes by outcome: succeeded, failed, conflict (another writer held the lock).",
    ["outcome"],
)
COMPLIANCE_ITEMS = Counter(
    "compliance_items_total",
    "Lines of X's compliance results (ids that need an action), by kind, action and reason.",
    ["kind", "action", "reason"],
)
COMPLIANCE_LAST_SUCCESS = Gauge(
    "compliance_last_success_timestamp_seconds",
    "Unix time of the last successful compliance pass on record (0: none yet).",
)
COMPLIANCE_INTERVAL = Gauge(
    "compliance_interval_seconds",
    "COMPLIANCE_INTERVAL: seconds between scheduled compliance passes (0: none scheduled).",
)

X_API_REQUESTS = Counter(
    "x_api_requests_total",
    "Requests to the X API by HTTP status ('error' for network failures and timeouts).",
    ["status"],
)
X_API_RETRIES = Counter(
    "x_api_retries_total",
    "Retried X API requests by reason: rate_limit, server_error, network.",
    ["reason"],
)
X_API_RATE_LIMIT_REMAINING = Gauge(
    "x_api_rate_limit_remaining",
    "Requests left in the current X API rate-limit window (x-rate-limit-remaining).",
)
X_API_RATE_LIMIT_LIMIT = Gauge(
    "x_api_rate_limit_limit",
    "Size of the X API rate-limit window (x-rate-limit-limit).",
)
X_API_RATE_LIMIT_RESET = Gauge(
    "x_api_rate_limit_reset_timestamp_seconds",
    "Unix time when the X API rate-limit window resets (x-rate-limit-reset).",
)

VIEW_REFRESH_DURATION = Histogram(
    "view_refresh_duration_seconds",
    "Time to refresh one materialized view, by view.",
    ["view"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

DB_POOL_CONNECTIONS = Gauge(
    "db_pool_connections",
    "Database pool connections by state: in_use, idle, max.",
    ["state"],
)

HEALTH_CHECK_UP = Gauge(
    "health_check_up",
    "Outcome of the last health check of each dependency (1 up, 0 down).",
    ["check"],
)


def _start_known_labels_at_zero() -> None:
    """Create the children whose label values are known in advance, at zero.

    A child otherwise appears on its first inc()/observe(), already past zero, and rate() and
    increase() never count that first event: a replica's first failed populate would not move
    PopulateFailing, and its first run would draw no duration on the dashboard. Prometheus's
    instrumentation guide: "Avoid missing metrics".
    """
    for outcome in ("succeeded", "failed", "conflict"):
        POPULATE_RUNS.labels(outcome=outcome)
    for outcome in ("succeeded", "failed"):
        POPULATE_DURATION.labels(outcome=outcome)
    for outcome in ("succeeded", "failed", "conflict"):
        COMPLIANCE_PASSES.labels(outcome=outcome)
    for step in ("fetch", "store", "refresh"):
        POPULATE_STEP_DURATION.labels(step=step)
    for view in VIEWS:
        VIEW_REFRESH_DURATION.labels(view=view)
    for reason in ("rate_limit", "server_error", "network"):
        X_API_RETRIES.labels(reason=reason)


_start_known_labels_at_zero()


def start_tags_at_zero(tags: Iterable[str]) -> None:
    """The configured tags' tweets_fetched_total children, at zero (see above)."""
    for tag in tags:
        TWEETS_FETCHED.labels(tag=tag)


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
