"""The stack, running: PostgreSQL, two API replicas, HAProxy, blackbox and Prometheus on
127.0.0.1 with the repository's own configs (see tests/stack/stack.py for what is rendered).

`make stack-test` runs this module; the default test run leaves it out (marker `stack`).
Tests share one stack and run in file order; the last one kills a replica.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import itertools
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import psycopg2
import pytest
import yaml
from alembic.script import ScriptDirectory

from service import db
from service.config import DEFAULT_TAGS
from testing.loopback import Response
from tests.config_files import (
    KIBANA_DIR,
    OBSERVABILITY,
    OPS_DASHBOARD,
    ROOT,
    alert_rules,
    dashboard_panels,
    load_json,
)
from tests.stack.stack import NativeStack, StackError

pytestmark = pytest.mark.stack

HAPROXY_CFG: Final = OBSERVABILITY / "haproxy" / "haproxy.cfg"
DATA_DASHBOARD: Final = OBSERVABILITY / "grafana" / "dashboards" / "data.json"
COLLECTION: Final = ROOT / "postman_collection.json"
POPULATE: Final = "/api/v1/populate"

UUID4: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
SECURITY_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
READS: Final = ("/api/v1/users", "/api/v1/hour", "/api/v1/tags")

# Grafana's variables, as Grafana fills them for a Prometheus source scraped every 15 s: its
# $__rate_interval is at least four scrape intervals.
GRAFANA_VARIABLES: Final = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
# Panels that stay empty while the replicas serve the bundled sample: nothing calls the X API,
# and no compliance pass can run (tests/test_compliance.py covers the metric a pass sets).
OFFLINE_EMPTY_PANELS: Final = frozenset(
    {"X API requests by status", "Since last successful compliance pass"}
)


def wait_for_request_ids(stack: NativeStack, ids: set[str]) -> dict[str, set[str]]:
    """The request ids in each replica's request log lines (LOG_FILE), once every one of `ids`
    is there: request lines are buffered for up to 0.1 s."""

    def logged() -> dict[str, set[str]] | None:
        seen = {
            replica.name: {
                line["request_id"]
                for line in replica.log_lines()
                if line.get("event.action") == "http.request"
            }
            for replica in stack.replicas
        }
        found = set().union(*seen.values())
        return seen if ids <= found else None

    result: dict[str, set[str]] = stack.processes.wait_for(
        f"replicas log request ids {sorted(ids)[:3]}...", logged, timeout=10
    )
    return result


def assert_security_headers(response: Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.header(name) == value, name
    csp = response.header("Content-Security-Policy")
    assert csp is not None
    assert "default-src 'none'" in csp
    assert response.header("Server") is None


# --- replicas and HAProxy --------------------------------------------------------------------


def test_replicas_started_together_migrate_once(stack: NativeStack) -> None:
    upgrades = {
        replica.name: [
            line["message"]
            for line in replica.log_lines()
            if line.get("logger") == "alembic.runtime.migration"
            and line["message"].startswith("Running upgrade")
        ]
        for replica in stack.replicas
    }
    # The advisory lock serialized them: one replica applied every migration, the other found
    # the schema up to date.
    assert sorted(len(messages) > 0 for messages in upgrades.values()) == [False, True], upgrades
    for replica in stack.replicas:
        events = [line.get("event.action") for line in replica.log_lines()]
        assert "db.migrated" in events, replica.name
    with db.alembic_config("unused") as config:
        head = ScriptDirectory.from_config(config).get_current_head()
    _, rows = stack.database.query("app", "SELECT version_num FROM alembic_version")
    assert rows == [(head,)]


def test_haproxy_spreads_requests_over_both_replicas(stack: NativeStack) -> None:
    ids = {f"stack-rr-{uuid.uuid4().hex[:12]}" for _ in range(40)}
    for rid in ids:
        response = stack.public("GET", "/api/v1/tags", headers={"X-Request-ID": rid})
        assert response.status == 200
        assert response.header("X-Request-ID") == rid
    seen = wait_for_request_ids(stack, ids)
    per_replica = {name: ids & logged for name, logged in seen.items()}
    # Each request reached exactly one replica, and both replicas served some.
    assert sum(len(found) for found in per_replica.values()) == len(ids), per_replica
    assert all(per_replica.values()), {name: len(found) for name, found in per_replica.items()}
    # The proxy's log line carries the same id (captured header), so a request can be
    # followed from HAProxy's log into the API's.
    haproxy_log = stack.haproxy.output.read_text(encoding="utf-8")
    assert all(f"{{{rid}}}" in haproxy_log for rid in ids)


def test_haproxy_makes_request_ids_and_sets_security_headers(stack: NativeStack) -> None:
    plain = stack.public("GET", "/api/v1/users")
    bad = stack.public("GET", "/api/v1/users", headers={"X-Request-ID": "not a valid id!"})
    made = {plain.header("X-Request-ID"), bad.header("X-Request-ID")}
    for response in (plain, bad):
        assert response.status == 200
        assert UUID4.match(response.header("X-Request-ID") or ""), response.headers
        assert_security_headers(response)
    assert len(made) == 2
    # The API logged HAProxy's id, not one of its own.
    wait_for_request_ids(stack, {rid for rid in made if rid})


def test_haproxy_keeps_replica_metrics_off_the_public_port(stack: NativeStack) -> None:
    answer = stack.public("GET", "/metrics")
    assert answer.status == 404
    assert answer.json()["error"]["code"] == "not_found"
    assert all(replica.get("/metrics").status == 200 for replica in stack.replicas)


def test_haproxy_serves_the_dashboard_under_a_policy_that_lets_it_run(
    stack: NativeStack,
) -> None:
    page = stack.public("GET", "/")
    assert page.status == 200
    assert page.header("Content-Type") == "text/html; charset=utf-8"
    assert_security_headers(page)
    # HAProxy's policy replaces the page's own: it must still let the page load its scripts and
    # styles from the origin and read the API there (tests/test_dashboard.py runs the page).
    directives = {
        name: sources
        for name, *sources in (
            part.split() for part in (page.header("Content-Security-Policy") or "").split(";")
        )
    }
    for directive in ("script-src", "style-src", "connect-src"):
        assert "'self'" in directives[directive], directive
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.body.decode())
    assert len(assets) == 4, assets
    for path in assets:
        asset = stack.public("GET", path)
        assert asset.status == 200, path
        assert_security_headers(asset)
    listed = stack.public("GET", "/api/v1/tags?format=csv")
    assert listed.status == 200
    assert listed.header("Content-Type") == "text/csv; charset=utf-8"
    assert listed.body.startswith(b"tag,language,country,count\r\n")


def test_haproxy_rate_limits_only_posts_to_populate_per_client(stack: NativeStack) -> None:
    config = HAPROXY_CFG.read_text(encoding="utf-8")
    # The config's own values: stack.py keeps POPULATE_RATE_LIMIT out of HAProxy's environment.
    [limit_text] = re.findall(r"presetenv POPULATE_RATE_LIMIT (\d+)", config)
    [minutes] = re.findall(r"store http_req_rate\((\d+)m\)", config)
    limit, period = int(limit_text), 60 * int(minutes)

    # From 127.0.0.2: the test's own client (127.0.0.1) keeps its populate budget. No token, so
    # the API answers 401 (or 405 to another method) without running anything.
    def burst(method: str, path: str) -> list[Response]:
        return [stack.public(method, path, source="127.0.0.2") for _ in range(limit + 2)]

    started = time.monotonic()
    unlimited = burst("GET", POPULATE) + burst("POST", "/api/v1/tags")
    posts = burst("POST", POPULATE)
    # HAProxy counts a rate over `period`, and weighs the previous period's count by the share
    # of it still in the window (src/freq_ctr.c, _freq_ctr_total_from_values): a period that
    # ends inside the burst may count one POST less, never more, while the burst lasts under
    # period / (limit + 1). Hence POST limit + 1 may pass; POST limit + 2 never does.
    assert time.monotonic() - started < period / (limit + 1), "the burst outlasted its bound"
    # Neither another method on the path nor a POST elsewhere is limited, or even counted.
    assert [answer.status for answer in unlimited] == [405] * len(unlimited)
    statuses = [answer.status for answer in posts]
    assert statuses[:limit] == [401] * limit, statuses
    assert statuses[limit] in (401, 429), statuses
    assert statuses[-1] == 429, statuses
    refused = posts[-1]
    assert refused.header("Retry-After") == "60"
    assert refused.json()["error"]["code"] == "rate_limited"
    assert UUID4.match(refused.header("X-Request-ID") or "")
    assert_security_headers(refused)
    for answer in posts[:limit]:
        assert answer.json()["error"]["code"] == "unauthorized"
        assert answer.header("WWW-Authenticate") is not None
    # Another client is not affected.
    assert stack.public("POST", POPULATE).status == 401


# --- populate and reads ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def populated(stack: NativeStack) -> dict[str, Any]:
    """One populate through HAProxy, then reads through it; the populate's result."""
    # Prometheus first scrapes a few seconds after it starts. The populate must come after a
    # scrape of both replicas, or its counters would first be seen already incremented, and
    # rate() shows no increase (the dashboards' populate panels would stay empty).
    stack.processes.wait_for(
        "Prometheus has scraped both replicas",
        lambda: len(stack.promql('up{job="api"} == 1')["result"]) == len(stack.replicas),
        timeout=30,
    )
    response = stack.public(
        "POST", "/api/v1/populate", headers={"Authorization": f"Bearer {stack.api_token}"}
    )
    assert response.status == 201, response.body
    for _ in range(5):
        for path in READS:
            assert stack.public("GET", path).status == 200
    result: dict[str, Any] = response.json()
    return result


def test_populate_through_haproxy_is_served_by_every_replica(
    stack: NativeStack, populated: dict[str, Any]
) -> None:
    assert populated["source"] == "sample"
    assert populated["tweets_new"] > 0
    assert set(populated["per_tag"]) == set(DEFAULT_TAGS)

    def every_replica_serves_rows() -> bool:
        # A replica that did not run the populate notices the new view generation within a
        # second and stops serving its cached (empty) bodies.
        return all(
            len(replica.get(path).json()) > 0 for replica in stack.replicas for path in READS
        )

    stack.processes.wait_for(
        "every replica serves the new data", every_replica_serves_rows, timeout=5
    )
    health = stack.public("GET", "/api/health")
    assert health.status == 200
    body = health.json()
    assert body["status"] == "ok"
    assert body["x_api"]["source"] == "sample"
    assert body["last_populate"] is not None


def test_concurrent_populates_through_haproxy_run_one_at_a_time_and_reads_never_fail(
    stack: NativeStack, populated: dict[str, Any]
) -> None:
    del populated
    token = {"Authorization": f"Bearer {stack.api_token}"}
    stop = threading.Event()
    reads: collections.Counter[int] = collections.Counter()

    def read_continuously() -> None:
        while not stop.is_set():
            for path in READS:
                reads[stack.public("GET", path).status] += 1

    reader = threading.Thread(target=read_continuously)
    reader.start()
    try:
        # Four clients (four loopback addresses, each within HAProxy's per-client limit) ask for
        # a full populate at the same moment; HAProxy spreads them over both replicas.
        start = threading.Barrier(4)

        def populate(source: str) -> int:
            start.wait()
            return stack.public(
                "POST", "/api/v1/populate?full=true", headers=token, source=source, timeout=60
            ).status

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(populate, [f"127.0.0.{n}" for n in (11, 12, 13, 14)]))
    finally:
        stop.set()
        reader.join()

    assert set(statuses) <= {201, 409}, statuses
    assert 201 in statuses
    # Single flight, whatever the timing: the runs that succeeded never overlapped.
    _, runs = stack.database.query(
        "app",
        "SELECT started_at, finished_at FROM populate_runs "
        "WHERE status = 'succeeded' ORDER BY started_at",
    )
    assert len(runs) >= statuses.count(201)
    for (_, previous_end), (next_start, _) in itertools.pairwise(runs):
        assert previous_end <= next_start
    # Reads went on throughout the populates and their view refreshes.
    assert set(reads) == {200}, reads
    assert sum(reads.values()) > 0


# --- Prometheus and blackbox --------------------------------------------------------------------


def test_prometheus_scrapes_every_target_and_every_probe_succeeds(stack: NativeStack) -> None:
    config = yaml.safe_load(stack.prometheus_yml.read_text(encoding="utf-8"))
    expected = {
        (job["job_name"], target)
        for job in config["scrape_configs"]
        for group in job.get("static_configs", [])
        for target in group["targets"]
    }
    jobs = {"prometheus", "api", "haproxy", "blackbox_exporter", "blackbox"}
    assert {job for job, _ in expected} == jobs

    def all_up() -> bool:
        targets = stack.prometheus_api("targets", state="active")["activeTargets"]
        seen = {(t["labels"]["job"], t["labels"]["instance"]): t["health"] for t in targets}
        return set(seen) == expected and set(seen.values()) == {"up"}

    stack.processes.wait_for("every Prometheus target is up", all_up, timeout=30)
    probes = {(job, instance) for job, instance in expected if job == "blackbox"}

    def probes_succeed() -> bool:
        result = stack.promql('probe_success{job="blackbox"}')["result"]
        values = {series["metric"]["instance"]: series["value"][1] for series in result}
        return set(values) == {instance for _, instance in probes} and set(values.values()) == {"1"}

    stack.processes.wait_for("probe_success is 1 for every probe", probes_succeed, timeout=30)


# --- alert rules and dashboards ----------------------------------------------------------------


def test_alert_rules_load_and_evaluate(stack: NativeStack) -> None:
    expected = {rule.get("alert") or rule["record"]: rule["expr"] for rule in alert_rules()}
    assert expected

    def evaluated() -> dict[str, dict[str, Any]] | None:
        groups = stack.prometheus_api("rules")["groups"]
        loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
        done = all(not rule["lastEvaluation"].startswith("0001") for rule in loaded.values())
        return loaded if done and set(loaded) == set(expected) else None

    loaded = stack.processes.wait_for("Prometheus evaluates every rule", evaluated, timeout=30)
    assert {name: rule["lastError"] for name, rule in loaded.items() if rule.get("lastError")} == {}
    assert {rule["health"] for rule in loaded.values()} == {"ok"}
    for name, expr in expected.items():
        try:
            stack.promql(expr)
        except StackError as exc:
            pytest.fail(f"rule {name}: {exc}")
    # A healthy stack raises nothing, not even a pending alert. (ApiDown is pending for the
    # few seconds before Prometheus's first scrape, then resolves at the next evaluation.)
    if not stack.processes.poll(
        "no alert is active",
        lambda: stack.prometheus_api("alerts")["alerts"] == [],
        timeout=10,
    ):
        pytest.fail(f"active alerts: {stack.prometheus_api('alerts')['alerts']}")


def grafana_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable the test does not know: {expr}"
    return expr


def has_data(data: Mapping[str, Any]) -> bool:
    """A query result with at least one number that is not NaN."""
    if data["resultType"] == "scalar":
        return bool(data["result"][1] != "NaN")
    return any(series["value"][1] != "NaN" for series in data["result"])


def test_dashboard_promql_evaluates_and_every_panel_shows_data(
    stack: NativeStack, populated: dict[str, Any]
) -> None:
    del populated
    panels: dict[str, list[str]] = {}
    for path in (OPS_DASHBOARD, DATA_DASHBOARD):
        for panel in dashboard_panels(load_json(path)):
            exprs = [t["expr"] for t in panel.get("targets", []) if "expr" in t]
            if exprs:
                panels[f"{path.name}: {panel['title']}"] = [grafana_promql(e) for e in exprs]
    assert panels
    # Every expression is valid PromQL against this Prometheus (errors raise in promql()).
    for title, exprs in panels.items():
        for expr in exprs:
            try:
                stack.promql(expr)
            except StackError as exc:
                pytest.fail(f"{title}: {exc}")
    # After traffic and a populate, every panel has something to draw. Scrapes and rates lag
    # by a few seconds, hence the wait.
    offline = {f"{OPS_DASHBOARD.name}: {title}" for title in OFFLINE_EMPTY_PANELS}

    def empty_panels() -> set[str]:
        return {
            title
            for title, exprs in panels.items()
            if title not in offline and not any(has_data(stack.promql(e)) for e in exprs)
        }

    if not stack.processes.poll("panels show data", lambda: not empty_panels(), timeout=30):
        pytest.fail(f"panels without data: {sorted(empty_panels())}")


def test_data_dashboard_sql_returns_rows_as_analyst(
    stack: NativeStack, populated: dict[str, Any]
) -> None:
    del populated
    targets = [
        (panel["title"], target)
        for panel in dashboard_panels(load_json(DATA_DASHBOARD))
        for target in panel.get("targets", [])
        if "rawSql" in target
    ]
    assert targets
    for title, target in targets:
        # Grafana's $__timeFilter(column), for a time range that covers all the stored tweets.
        sql = re.sub(
            r"\$__timeFilter\((\w+)\)",
            r"\1 BETWEEN '2006-03-21T00:00:00Z' AND now() + interval '1 day'",
            target["rawSql"],
        )
        assert "$" not in sql, f"{title}: a Grafana macro the test does not know: {sql}"
        columns, rows = stack.database.query("analyst", sql)
        assert rows, f"{title}: no rows"
        if target["format"] == "time_series":
            assert "time" in columns, f"{title}: a time series needs a `time` column"
    # The role Grafana uses sees the views only.
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        stack.database.query("analyst", "SELECT count(*) FROM tweets")


# --- Postman collection -------------------------------------------------------------------------


def test_newman_runs_the_collection_through_haproxy(stack: NativeStack, tmp_path: Path) -> None:
    report = tmp_path / "newman.json"
    command = [stack.tools.newman, "run", str(COLLECTION), "--color", "off", "--reporters"]
    command += ["cli,json", "--reporter-json-export", str(report)]
    command += ["--env-var", f"baseUrl={stack.public_url}"]
    command += ["--env-var", f"apiToken={stack.api_token}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    run = load_json(report)["run"]
    assert run["failures"] == [], output
    requests = len(load_json(COLLECTION)["item"])
    assert run["stats"]["requests"] == {"total": requests, "pending": 0, "failed": 0}
    assert run["stats"]["assertions"]["failed"] == 0
    assert run["stats"]["assertions"]["total"] >= 2 * requests


# --- logs ------------------------------------------------------------------------------------

LEVELS: Final = frozenset({"TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"})
# What filebeat.yml names as the API's fields; `message` and the data view's time field are
# the two Filebeat overwrites with the API's own (ndjson overwrite_keys).
FILEBEAT_FIELDS: Final = ("@timestamp", "level", "message", "logger")
REQUEST_FIELDS: Final[dict[str, type | tuple[type, ...]]] = {
    "request_id": str,
    "event.action": str,
    "method": str,
    "path": str,
    "route": str,
    "status": int,
    "duration_ms": (int, float),
    "client.ip": str,
}
TIMESTAMP: Final = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def same_lines(*paths: Path) -> bool:
    """The files hold the same lines (blank ones aside), in any order."""
    texts = [path.read_text(encoding="utf-8").splitlines() for path in paths]
    first, second = (collections.Counter(line for line in text if line.strip()) for text in texts)
    return first == second


def test_log_lines_carry_what_filebeat_and_kibana_use(
    stack: NativeStack, populated: dict[str, Any]
) -> None:
    time_field = load_json(KIBANA_DIR / "data-view.json")["data_view"]["timeFieldName"]
    assert time_field in FILEBEAT_FIELDS
    now = datetime.now(UTC)
    for replica in stack.replicas:
        assert replica.process is not None
        assert replica.process.errors is not None
        assert replica.process.errors.read_text() == "", f"{replica.name} wrote to stderr"
        # One JSON object per line on stdout (`docker compose logs`), and the very same lines in
        # LOG_FILE, which Filebeat reads.
        stack.processes.wait_for(
            f"{replica.name}: LOG_FILE and stdout agree",
            functools.partial(same_lines, replica.process.output, replica.log_file),
            timeout=5,
        )
        entries = replica.log_lines()
        assert entries, replica.name
        for entry in entries:
            assert isinstance(entry, dict), entry
            for name in FILEBEAT_FIELDS:
                assert isinstance(entry.get(name), str), (name, entry)
            assert entry["level"] in LEVELS, entry
            assert TIMESTAMP.match(entry[time_field]), entry
            stamp = datetime.strptime(entry[time_field], "%Y-%m-%dT%H:%M:%S.%f%z")
            assert now - timedelta(minutes=10) < stamp < now + timedelta(minutes=1), entry
        requests = [e for e in entries if e.get("event.action") == "http.request"]
        assert requests, f"{replica.name} logged no request"
        for entry in requests:
            for name, kind in REQUEST_FIELDS.items():
                assert isinstance(entry.get(name), kind), (name, entry)
    # One JSON type per field and no key that is also a dotted prefix, as Elasticsearch needs:
    # tests/test_log_shipping.py, on the documents Filebeat would make of these lines.
    # The populate left its trail, tied to its run id, on the replica that ran it.
    events = {
        (e.get("event.action"), e.get("run_id"))
        for replica in stack.replicas
        for e in replica.log_lines()
    }
    for event in ("populate.start", "populate.done"):
        assert (event, populated["run_id"]) in events, event
    # No secret reaches a log line, not even the proxy's.
    secrets = {
        "API_TOKEN": stack.api_token,
        "app password": stack.database.app_password,
        "analyst password": stack.database.analyst_password,
    }
    outputs = [p.output for p in stack.processes.started] + [r.log_file for r in stack.replicas]
    for path in outputs:
        text = path.read_text(encoding="utf-8", errors="replace")
        for name, value in secrets.items():
            assert value not in text, f"{name} in {path.name}"


# --- failover (last: leaves one replica down) --------------------------------------------------


def test_requests_survive_a_killed_replica(stack: NativeStack) -> None:
    victim, survivor = stack.replicas[1], stack.replicas[0]
    assert victim.process is not None
    victim.process.kill()
    alive = [process for process in stack.processes.started if process.alive()]
    # Straight away, before any health check has noticed: HAProxy retries on the other server.
    statuses = collections.Counter(stack.public("GET", path).status for path in READS * 10)
    assert statuses == {200: len(READS) * 10}
    stack.processes.wait_for(
        "HAProxy marks the killed replica down",
        lambda: stack.haproxy_servers_up() == {"api1"},
        timeout=30,
        watch=alive,
    )
    down = {"alertname": "ApiReplicaDown", "instance": victim.address}.items()
    stack.processes.wait_for(
        "ApiReplicaDown is pending for the killed replica",
        lambda: any(down <= a["labels"].items() for a in stack.prometheus_api("alerts")["alerts"]),
        timeout=30,
        watch=alive,
    )
    assert survivor.get("/ready").status == 200
    statuses = collections.Counter(stack.public("GET", path).status for path in READS * 5)
    assert statuses == {200: len(READS) * 5}
    assert stack.public("GET", "/api/health").status == 200
