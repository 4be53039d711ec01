"""Metric series whose label values are known in advance exist before their first event."""

from __future__ import annotations

import json
import subprocess
import sys

from prometheus_client import REGISTRY

from service import metrics
from service.matviews import VIEWS

KNOWN: list[tuple[str, dict[str, str]]] = [
    *(("populate_runs_total", {"outcome": o}) for o in ("succeeded", "failed", "conflict")),
    *(("populate_duration_seconds_count", {"outcome": o}) for o in ("succeeded", "failed")),
    *(("populate_step_duration_seconds_count", {"step": s}) for s in ("fetch", "store", "refresh")),
    *(("view_refresh_duration_seconds_count", {"view": v}) for v in VIEWS),
    *(("x_api_retries_total", {"reason": r}) for r in ("rate_limit", "server_error", "network")),
]

# In a fresh interpreter: this process's registry has seen other tests' populates.
_PROBE = """
import json, sys
from prometheus_client import REGISTRY
import service.metrics
known = json.loads(sys.argv[1])
print(json.dumps([REGISTRY.get_sample_value(name, labels) for name, labels in known]))
"""


def test_metrics_known_label_values_start_at_zero_on_import() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(KNOWN)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    values = json.loads(result.stdout)
    # Present (at zero) before any populate, so rate() and increase() see the first event.
    series = [f"{name}{labels}" for name, labels in KNOWN]
    assert dict(zip(series, values, strict=True)) == dict.fromkeys(series, 0.0)


def test_metrics_start_tags_at_zero_creates_each_tag() -> None:
    tag = "#metricsstartzero"
    assert REGISTRY.get_sample_value("tweets_fetched_total", {"tag": tag}) is None
    metrics.start_tags_at_zero([tag])
    assert REGISTRY.get_sample_value("tweets_fetched_total", {"tag": tag}) == 0
