"""The benchmark's pure functions: output parsing, percentiles, ratios, targets, tables.

No timing is checked here; `make bench` measures (bench/README.md)."""

from __future__ import annotations

import math

import pytest

from bench.bare import BODY
from bench.data import Dataset, rows_of
from bench.stats import (
    LoadResult,
    ParseError,
    at_least,
    at_most,
    collapsed_profile,
    duration_ms,
    from_latencies,
    markdown_table,
    parse_wrk,
    percentile,
    populate_events,
    ratio,
    size_label,
    step_seconds,
    summarize,
    table,
)
from service.sources.parse import parse_page

WRK = """\
Running 4s test @ http://127.0.0.1:8080/api/v1/tags
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.12ms    1.02ms  31.20ms   91.00%
    Req/Sec     6.10k   400.12     6.80k    72.50%
  Latency Distribution
     50%    3.95ms
     75%    4.40ms
     90%    5.01ms
     99%  812.00us
  48800 requests in 4.01s, 1.02GB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  12169.58
Transfer/sec:    260.12MB
"""


def test_parse_wrk_reads_rate_percentiles_and_errors() -> None:
    result = parse_wrk(WRK)

    assert result == LoadResult(
        requests=48800,
        seconds=4.01,
        rps=12169.58,
        p50_ms=3.95,
        p99_ms=0.812,
        errors=3,
        bad_status=5,
    )
    assert not result.clean


def test_parse_wrk_rejects_output_without_latency_distribution() -> None:
    without = "\n".join(line for line in WRK.splitlines() if "%" not in line or "Req" in line)
    with pytest.raises(ParseError):
        parse_wrk(without)
    with pytest.raises(ParseError):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


@pytest.mark.parametrize(
    ("text", "ms"),
    [("812.00us", 0.812), ("3.21ms", 3.21), ("1.50s", 1500.0), ("2.00m", 120_000.0)],
)
def test_duration_ms_units(text: str, ms: float) -> None:
    assert duration_ms(text) == pytest.approx(ms)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # unsorted on purpose
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_from_latencies_and_summarize() -> None:
    one = from_latencies([0.001] * 98 + [0.010, 0.020], seconds=2.0, errors=0, bad=0)
    assert (one.requests, one.rps, one.p50_ms, one.p99_ms) == (100, 50.0, 1.0, 10.0)
    two = LoadResult(10, 1.0, 70.0, 2.0, 30.0, 0, 0)
    three = LoadResult(10, 1.0, 60.0, 3.0, 20.0, 0, 1)

    summary = summarize([one, two, three])

    assert (summary.rps, summary.rps_min, summary.rps_max) == (60.0, 50.0, 70.0)
    assert summary.p99_ms == 20.0
    assert summary.p99_max_ms == 30.0
    assert summary.spread == pytest.approx(20 / 60)
    assert not summary.clean


def test_ratio_and_targets() -> None:
    assert ratio(7.0, 10.0) == 0.7
    assert math.isnan(ratio(1.0, 0.0))
    assert math.isnan(ratio(math.nan, 1.0))
    met = at_least("rps", 0.72, 0.70, "%")
    missed = at_most("p99", 61.0, 50.0, "ms")
    assert met.met
    assert met.margin == pytest.approx(0.02 / 0.70)
    assert met.goal == ">= 70 %"
    assert at_most("p99", 2.004, 2.0, "x").goal == "<= 2.000x"
    assert not missed.met
    assert missed.margin == pytest.approx(-0.22)
    assert not at_least("nothing measured", math.nan, 1.0).met


def test_tables_align_and_refuse_ragged_rows() -> None:
    text = table(["case", "rps"], [["bare", "25,000"], ["tags", "900"]])
    assert text.splitlines() == ["case     rps", "----  ------", "bare  25,000", "tags     900"]
    assert markdown_table(["a", "b"], [["1", "2"]]).splitlines()[1] == "|---|---|"
    with pytest.raises(ValueError, match="cells"):
        table(["a", "b"], [["only one"]])


def test_size_label() -> None:
    assert [size_label(n) for n in (1000, 100_000, 1_000_000, 1077)] == [
        "1k",
        "100k",
        "1M",
        "1077",
    ]


def test_metrics_and_log_parsing() -> None:
    metrics = (
        "# HELP populate_step_duration_seconds Duration of each populate step.\n"
        'populate_step_duration_seconds_sum{step="fetch"} 0.25\n'
        'populate_step_duration_seconds_sum{step="store"} 0.125\n'
        'populate_step_duration_seconds_count{step="store"} 1.0\n'
    )
    assert step_seconds(metrics) == {"fetch": 0.25, "store": 0.125}
    lines = [
        '{"event": "populate.store", "duration_ms": 12, "level": "INFO"}',
        '{"event": "populate.fetch", "tag": "#sre"}',  # no duration: skipped
        '{"event": "http.request", "duration_ms": 1}',
        'not json but mentions "populate.store"',
        '{"event": "populate.refresh", "view": "top_users", "duration_ms": 3.5}',
        '{"event.action": "populate.refresh", "view": "tweets_per_hour", "duration_ms": 2}',
    ]
    assert [e["event"] for e in populate_events(lines)] == [
        "populate.store",
        "populate.refresh",
        "populate.refresh",  # as the service writes it
    ]


def test_collapsed_profile_ranks_self_and_inclusive_frames() -> None:
    raw = (
        "main (service/__main__.py:1);run (asyncio);handle (service/routes.py:9);write (io) 6\n"
        "main (service/__main__.py:1);run (asyncio);log (service/log.py:3) 3\n"
        "main (service/__main__.py:1);run (asyncio) 1\n"
    )

    profile = collapsed_profile(raw, keep=("service/",))

    assert profile.samples == 10
    assert profile.self_pct[0] == ("write (io)", 60.0)
    assert profile.inclusive_pct == [
        ("handle (service/routes.py:9)", 60.0),
        ("log (service/log.py:3)", 30.0),
    ]
    assert profile.categories_pct == [
        ("handler and cache lookup", 60.0),
        ("access log (service/log.py)", 30.0),
        ("aiohttp, asyncio, socket I/O", 10.0),
    ]


def test_bare_body_is_1200_bytes_of_json() -> None:
    import json

    assert len(BODY) == 1200
    assert isinstance(json.loads(BODY), list)


def test_synthetic_pages_parse_and_have_the_reference_shape() -> None:
    data = Dataset(2000)
    served = [(tag, parse_page(body)) for i, tag in enumerate(data.tags) for body in data.pages(i)]
    rows = rows_of(served)

    assert len(rows.tweets) == 2000
    assert {t.id for t in rows.tweets} == {data.tweet_id(n) for n in range(2000)}
    # About 1.15 tag rows and 0.3 authors per tweet: 2.45 rows per tweet without places.
    per_tweet = (len(rows.tweets) + len(rows.tweet_tags) + len(rows.users)) / len(rows.tweets)
    assert 2.35 < per_tweet < 2.55
    assert all(page.tweets == tuple(sorted(page.tweets, key=lambda t: -t.id)) for _, page in served)
    assert Dataset(2000).tweet_object(5) == data.tweet_object(5)  # deterministic


def test_soak_table_shows_the_error_counts() -> None:
    from bench.soak import render

    soak = {
        "connections": 200,
        "seconds": 30.1,
        "requests": 262_765,
        "rps": 8_740,
        "p50_ms": 22.0,
        "p99_ms": 92.58,
        "non_2xx": 0,
        "socket_errors": 3,
        "populates": 11,
        "populate_statuses": {"201": 10, "409": 1},
    }

    row = render(soak).splitlines()[-1]

    assert row == "| 200 | 30.1 | 262,765 | 8,740 | 22.00 | 92.58 | 0 | 3 | 11 (201: 10, 409: 1) |"
