"""Static checks of the compose stack: every config parses, passes its tool's own checker, and
agrees with the API's contract (metric names, routes). The log path (Filebeat, Elasticsearch,
Kibana) has its own file, tests/test_filebeat_config.py.

Nothing here needs Docker or a database. The checkers (haproxy, promtool, the blackbox
exporter) come from Debian packages (tests/config_files.py `tool`).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from prometheus_client import REGISTRY

from service import metrics  # noqa: F401 - importing registers the API's metrics in REGISTRY
from service.config import SECRET_VARS, Settings
from testing.loopback import LoopbackPorts, render_haproxy, render_prometheus
from tests.config_files import (
    COMPOSE_FILE,
    OBSERVABILITY,
    OPS_DASHBOARD,
    PROMETHEUS_DIR,
    PROMETHEUS_YML,
    ROOT,
    RULE_FILES,
    alert_rules,
    app_routes,
    compose,
    compose_variables,
    dashboard_exprs,
    dashboard_panels,
    dockerfile_instructions,
    env_example,
    graceful_stop,
    load_json,
    load_yaml,
    promql_jobs,
    required_placeholders,
    run,
    services,
    tool,
    volume_mounts,
)

HAPROXY_CFG = OBSERVABILITY / "haproxy" / "haproxy.cfg"
BLACKBOX_YML = OBSERVABILITY / "blackbox" / "blackbox.yml"
GRAFANA = OBSERVABILITY / "grafana"
DATA_DASHBOARD = GRAFANA / "dashboards" / "data.json"
DASHBOARDS = (OPS_DASHBOARD, DATA_DASHBOARD)
VIEWS = frozenset({"top_users", "tweets_per_hour", "tweets_per_tag"})
PORTS = LoopbackPorts(
    api=(18081, 18082), haproxy=18080, haproxy_stats=18404, prometheus=19090, blackbox=19115
)


# --- PromQL ----------------------------------------------------------------------------------

_PROMQL_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_PROMQL_MATCHERS = re.compile(r"\{[^{}]*\}")
_PROMQL_RANGES = re.compile(r"\[[^\[\]]*\]")
_PROMQL_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_PROMQL_IDENTIFIER = re.compile(r"(?<![\w.:$@])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_PROMQL_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"}
)


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords, labels and Grafana
    variables left out)."""
    text = _PROMQL_STRING.sub('""', expr)
    for pattern in (_PROMQL_MATCHERS, _PROMQL_RANGES, _PROMQL_GROUPING):
        text = pattern.sub("", text)
    return {n for n in _PROMQL_IDENTIFIER.findall(text) if n.lower() not in _PROMQL_KEYWORDS}


def scrape_jobs() -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in load_yaml(PROMETHEUS_YML)["scrape_configs"]}


def expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every alert and recording rule and every dashboard panel."""
    sources = [(f"rule {r.get('alert') or r.get('record')}", r["expr"]) for r in alert_rules()]
    for path in DASHBOARDS:
        sources.extend((path.name, expr) for expr in dashboard_exprs(load_json(path)))
    return sources


# --- docker-compose.yml ----------------------------------------------------------------------


def test_compose_validates_against_compose_spec() -> None:
    schema = load_json(ROOT / "tests" / "data" / "compose-spec.json")
    validator = jsonschema.Draft7Validator(schema)
    for document in (load_yaml(COMPOSE_FILE), compose()):
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_compose_images_are_pinned_mounts_exist_and_operator_ports_are_on_loopback() -> None:
    for name, service in services().items():
        if "build" not in service:
            image = service.get("image", "")
            repository, _, tag = image.rpartition(":")
            assert repository, f"{name}: image {image!r} has no tag"
            assert "/" not in tag, f"{name}: image {image!r} has no tag"
            assert re.search(r"\d+\.\d+", tag), f"{name}: tag of {image!r} is not a version"
        for source, _, _ in volume_mounts(service):
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
        for port in map(str, service.get("ports", [])):
            if not (name == "haproxy" and port.endswith(":8080")):  # the public API
                assert port.startswith("127.0.0.1:"), f"{name}: {port} is public"
    assert services()["postgres"]["image"].startswith("postgres:16.")


def test_compose_waits_for_healthy_services_without_sleeping() -> None:
    all_services = services()
    image_healthcheck = any(kind == "HEALTHCHECK" for kind, _ in dockerfile_instructions())
    for name, service in all_services.items():
        for key in ("command", "entrypoint"):
            assert "sleep" not in json.dumps(service.get(key, "")), f"{name}: {key} sleeps"
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on must use conditions"
        for dependency, spec in depends_on.items():
            target = all_services[dependency]
            if spec.get("condition") == "service_completed_successfully":
                # A one-shot setup job: it exits, so it is waited for, not health-checked.
                assert target.get("restart") == "no", f"{name} -> {dependency}"
                continue
            assert spec.get("condition") == "service_healthy", f"{name} -> {dependency}"
            has_check = "healthcheck" in target or ("build" in target and image_healthcheck)
            assert has_check, f"{dependency} has no health check, yet {name} waits for it"
            assert not target.get("healthcheck", {}).get("disable", False)


def test_compose_api_runs_two_replicas_behind_haproxy_with_its_environment_and_stop_grace() -> None:
    api = services()["api"]
    assert api["deploy"]["replicas"] == 2
    assert "container_name" not in api
    assert "ports" not in api
    assert services()["haproxy"]["depends_on"] == {"api": {"condition": "service_healthy"}}
    env = api["environment"]
    assert env["DATABASE_URL"].startswith("postgresql://app:")
    assert env["DATABASE_URL"].endswith("@postgres:5432/tweets")
    for name in {*SECRET_VARS, "X_API_BASE_URL", "TWEET_SOURCE"} - {"API_TOKEN"}:
        assert env[name] == "", f"{name} must pass through, optional and empty by default"
    assert env["LOG_FORMAT"] == "json"
    # The stop grace outlasts the graceful stop of the service these values configure.
    environ = {k: str(v) for k, v in env.items() if str(v)}
    settings = Settings.from_env(environ, keys_file=Path("/nonexistent"))
    grace = re.fullmatch(r"(\d+)s", api["stop_grace_period"])
    assert grace, api["stop_grace_period"]
    assert int(grace[1]) >= graceful_stop(settings) + 5


def test_compose_requires_the_token_and_passwords_and_env_example_carries_no_value() -> None:
    raw = load_yaml(COMPOSE_FILE)["services"]
    assert re.fullmatch(r"\$\{API_TOKEN:\?[^}]+\}", raw["api"]["environment"]["API_TOKEN"])
    without_token = {k: v for k, v in required_placeholders().items() if k != "API_TOKEN"}
    with pytest.raises(KeyError, match="API_TOKEN"):
        compose(without_token)
    operators = compose_variables()
    for name in (
        *("API_TOKEN", "POSTGRES_PASSWORD", "APP_DB_PASSWORD", "ANALYST_DB_PASSWORD"),
        "GRAFANA_ADMIN_PASSWORD",
    ):
        assert operators[name] == ":?", f"{name} must be required with ${{{name}:?...}}"
    example = env_example()
    assert not set(operators) - set(example), ".env.example lacks a variable"
    for name, op in operators.items():
        if op in ("?", ":?"):
            assert example[name] == "", f".env.example must leave required {name} empty"
    for name, value in example.items():
        if re.search(r"TOKEN|SECRET|PASSWORD|KEY", name):
            assert value == "", f".env.example must not carry a value for {name}"


def test_compose_networks_let_only_what_must_talk_reach_each_other() -> None:
    # The exact matrix (docs/operations.md, "Services, and who reaches what"): the API side,
    # PostgreSQL with its two clients, the log stores, each among themselves; the cleanup job
    # reaches none.
    app = {"api", "haproxy", "prometheus", "blackbox", "grafana"}
    db = {"postgres", "api", "grafana"}
    logs = {"elasticsearch", "kibana", "filebeat", "elasticsearch-setup", "kibana-setup"}
    expected: dict[str, set[str]] = {name: set() for name in services()}
    for group in (app, db, logs):
        for name in group:
            expected[name] |= group - {name}
    # A service without `networks` is on `default`, one with `network_mode: none` on none
    # (Compose Specification, services.networks and network_mode).
    nets = {
        name: set() if s.get("network_mode") == "none" else set(s.get("networks") or ["default"])
        for name, s in services().items()
    }
    reach = {name: {o for o in nets if o != name and nets[name] & nets[o]} for name in nets}
    assert reach == expected
    for client in ("api", "haproxy"):  # internet-facing: no way to the open log stores
        assert not reach[client] & {"elasticsearch", "kibana"}
    # Everything a service is configured to call is within its reach: URLs and host:port in its
    # environment and config files, Prometheus' DNS discovery, and the blackbox probes, which
    # Prometheus hands to the exporter.
    jobs = scrape_jobs()
    probes = [t for group in jobs["blackbox"]["static_configs"] for t in group["targets"]]
    needs: dict[str, set[str]] = {}
    for name, service in services().items():
        texts = [json.dumps(service.get("environment", {}))]
        for source in (s for s, _, _ in volume_mounts(service) if s.startswith("./")):
            path = ROOT / source
            files = [path] if path.is_file() else sorted(path.rglob("*"))
            texts += [f.read_text(encoding="utf-8") for f in files if f.is_file()]
        named = re.findall(r"\b([a-z][\w-]*):\d+\b", "\n".join(texts))
        needs[name] = set(named) & set(services()) - {name}
    needs["prometheus"] |= {n for sd in jobs["api"]["dns_sd_configs"] for n in sd["names"]}
    needs["blackbox"] |= {urlsplit(target).hostname for target in probes}
    assert needs["grafana"] == {"prometheus", "postgres"}  # its data sources
    assert needs["blackbox"] == {"haproxy"}  # the probes
    assert {name: need - reach[name] for name, need in needs.items() if need - reach[name]} == {}
    # Internal networks have no way out, and Docker publishes no port of a container that is
    # only on internal ones (moby/moby#36174).
    internal = {name for name, net in compose()["networks"].items() if (net or {}).get("internal")}
    assert internal == {"db", "logs"}
    for name, service in services().items():
        if "ports" in service:
            assert set(service["networks"]) - internal, f"{name} publishes a port it cannot"


# --- Dockerfile and PostgreSQL ---------------------------------------------------------------


def test_dockerfile_builds_a_pinned_multi_stage_non_root_image_without_secrets() -> None:
    instructions = dockerfile_instructions()
    args = dict(arg.split("=", 1) for kind, arg in instructions if kind == "ARG" and "=" in arg)
    bases = [arg.split()[0] for kind, arg in instructions if kind == "FROM"]
    assert len(bases) >= 2, "a builder stage and a runtime stage"
    for base in bases:
        image = args.get(base.strip("${}"), base)
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", image), image
    users = [arg for kind, arg in instructions if kind == "USER"]
    assert users, "the image must not run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert ("EXPOSE", "8080") in instructions
    assert instructions[-1] == ("CMD", '["python", "-m", "service", "serve"]')
    (check,) = [arg for kind, arg in instructions if kind == "HEALTHCHECK"]
    assert "/live" in check
    assert "urllib.request" in check  # no curl in the slim image
    for kind, arg in instructions:
        if kind in ("ENV", "ARG"):
            assert not re.search(r"TOKEN|SECRET|PASSWORD|DATABASE_URL", arg, re.IGNORECASE), arg
        if kind in ("COPY", "ADD"):
            assert not re.search(r"\.env\b|twitter_keys", arg), arg
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    for entry in (".env", "twitter_keys", ".git", ".venv"):
        assert entry in ignored, f".dockerignore must exclude {entry}"


def test_postgres_init_creates_app_owner_and_read_only_analyst() -> None:
    scripts = sorted((OBSERVABILITY / "postgres" / "initdb").iterdir())
    assert scripts
    text = "\n".join(script.read_text(encoding="utf-8") for script in scripts)
    assert re.search(r"CREATE ROLE app LOGIN PASSWORD :'app_password'", text)
    assert re.search(r"CREATE ROLE analyst LOGIN PASSWORD :'analyst_password'", text)
    assert re.search(r'CREATE DATABASE :"db" OWNER app', text)
    assert re.search(r'GRANT CONNECT ON DATABASE :"db" TO analyst', text)
    assert re.search(r"GRANT USAGE ON SCHEMA public TO analyst", text)
    # SELECT on the views comes from the migration; the script grants nothing on tables.
    assert not re.search(r"GRANT SELECT", text)
    mount = "./observability/postgres/initdb:/docker-entrypoint-initdb.d:ro"
    assert mount in services()["postgres"]["volumes"]


# --- the checkers: haproxy, promtool, the blackbox exporter ----------------------------------


def test_prometheus_config_rules_and_dashboard_promql_are_valid_and_the_alerts_behave(
    tmp_path: Path,
) -> None:
    promtool = tool("promtool")
    run(promtool, "check", "config", PROMETHEUS_YML)
    rendered = tmp_path / "prometheus.yml"
    text = PROMETHEUS_YML.read_text(encoding="utf-8")
    rendered.write_text(render_prometheus(text, PORTS, config_dir=PROMETHEUS_DIR))
    assert f"{len(RULE_FILES)} rule files found" in run(promtool, "check", "config", rendered)
    assert RULE_FILES
    run(promtool, "check", "rules", *RULE_FILES)
    run(promtool, "test", "rules", ROOT / "tests" / "data" / "alerts_test.yml")
    # Every dashboard expression parses too, checked as a recording rule.
    grafana_variables = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
    rules = []
    for n, (_, expr) in enumerate(expressions()):
        for variable, value in grafana_variables.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"check:expr_{n}", "expr": expr})
    rule_file = tmp_path / "dashboard_exprs.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    run(promtool, "check", "rules", rule_file)
    alerts = [rule for rule in alert_rules() if "alert" in rule]
    assert {r["alert"] for r in alerts} >= {
        *("ApiDown", "ProbeFailing", "ApiHighErrorRate", "ApiHighLatencyP99"),
        *("PopulateFailing", "PopulateStale", "XApiRateLimitNearlySpent"),
    }
    for rule in alerts:
        assert rule["annotations"].get("summary"), rule["alert"]
        assert rule["annotations"].get("description"), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]


def test_prometheus_retention_stays_a_flag_while_the_tests_promtool_refuses_the_key(
    tmp_path: Path,
) -> None:
    # docker-compose.yml says why the deprecated flag stays; this fails once Debian's promtool
    # (and Prometheus, in make stack-test) read `storage.tsdb.retention` from the file.
    assert "--storage.tsdb.retention.time=15d" in services()["prometheus"]["command"]
    config = load_yaml(PROMETHEUS_YML)
    assert "storage" not in config
    moved = tmp_path / "prometheus.yml"
    moved.write_text(
        yaml.safe_dump({**config, "storage": {"tsdb": {"retention": {"time": "15d"}}}})
    )
    check = subprocess.run(
        [tool("promtool"), "check", "config", str(moved)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode != 0
    assert "field retention not found" in check.stdout + check.stderr


# --- HAProxy ---------------------------------------------------------------------------------


def test_haproxy_config_is_valid_for_docker_and_loopback_with_the_features(tmp_path: Path) -> None:
    text = HAPROXY_CFG.read_text(encoding="utf-8")
    haproxy = tool("haproxy")
    run(haproxy, "-c", "-q", "-f", HAPROXY_CFG)
    rendered = tmp_path / "haproxy.cfg"
    rendered.write_text(render_haproxy(text, PORTS))
    run(haproxy, "-c", "-q", "-f", rendered)
    assert re.search(r"nameserver \w+ 127\.0\.0\.11:53", text)
    assert re.search(r"server-template api 2 api:8080 .*check.*resolvers docker", text)
    assert "http-check send meth GET uri /ready" in text
    assert "http-request use-service prometheus-exporter if { path /metrics }" in text
    assert re.search(r"bind :8404", text)
    assert re.search(r"stick-table type \w+ .*store http_req_rate", text)
    assert re.search(r"http-request return status 429 content-type application/json", text)
    # One ACL per condition, ANDed: a repeated name would OR its lines (haproxy.cfg says where).
    names = re.findall(r"^\s*acl (\S+)", text, re.MULTILINE)
    assert len(names) == len(set(names)), names
    assert "acl post_request method POST" in text
    assert "acl populate_path path /api/v1/populate" in text
    assert "track-sc1 src table populate_rate if post_request populate_path\n" in text
    for header in (
        *("X-Content-Type-Options", "X-Frame-Options"),
        *("Referrer-Policy", "Content-Security-Policy"),
    ):
        assert re.search(rf"http-after-response set-header {header} ", text), header
    assert re.search(r"http-request set-header X-Request-ID .* unless", text)
    # Its own JSON bodies (429, 503) have the API's error shape.
    assert "503" in re.findall(r"http-error status (\d+)", text)
    bodies = re.findall(r"string '([^']*)'", text)
    assert bodies
    for body in bodies:
        assert set(json.loads(body)["error"]) == {"code", "message"}, body


# --- Prometheus and blackbox -----------------------------------------------------------------


def test_prometheus_scrapes_replicas_haproxy_itself_and_blackbox_probes_every_get_route() -> None:
    jobs = scrape_jobs()
    assert jobs["api"]["dns_sd_configs"] == [
        {"names": ["api"], "type": "A", "port": 8080, "refresh_interval": "15s"}
    ]
    assert jobs["haproxy"]["static_configs"] == [{"targets": ["haproxy:8404"]}]
    assert jobs["prometheus"]["static_configs"] == [{"targets": ["localhost:9090"]}]
    job = jobs["blackbox"]
    assert job["metrics_path"] == "/probe"
    modules = load_yaml(BLACKBOX_YML)["modules"]
    probed: dict[str, str] = {}
    for group in job["static_configs"]:
        module = group["labels"]["module"]
        assert module in modules, f"unknown blackbox module {module}"
        for target in group["targets"]:
            assert target.startswith("http://haproxy:8080/"), target
            probed[target.removeprefix("http://haproxy:8080")] = module
    # Every plain GET route but /metrics (scraped, not probed); templated routes (static files)
    # have no one URL to probe.
    routes = {p for p, methods in app_routes().items() if "GET" in methods and "{" not in p}
    assert set(probed) == routes - {"/metrics"}
    assert {"/", "/api/v1/summary"} <= set(probed)  # the page and its poll
    assert probed["/api/health"] == "api_health"
    http = modules["api_health"]["http"]
    assert http["valid_status_codes"] == [200]
    assert any('"status"' in regexp for regexp in http["fail_if_body_not_matches_regexp"])
    exporter = tool("prometheus-blackbox-exporter", "blackbox_exporter")
    run(exporter, "--config.check", "--config.file", BLACKBOX_YML)


def test_every_referenced_metric_is_exported_and_every_job_scraped() -> None:
    # Series names the API process exposes: service/metrics.py plus prometheus_client's
    # default process and platform collectors, with each type's sample suffixes.
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    api_names = {f.name + end for f in REGISTRY.collect() for end in suffixes.get(f.type, ("",))}
    assert {
        *("http_requests_total", "http_request_duration_seconds_bucket"),
        "process_start_time_seconds",
    } <= api_names
    # Besides the API's: HAProxy's exporter, the blackbox exporter, Prometheus itself.
    others = ("haproxy_", "probe_", "scrape_", "prometheus_")
    unknown = {
        f"{where}: {name}"
        for where, expr in expressions()
        for name in promql_metric_names(expr)
        if name not in api_names and name != "up" and not name.startswith(others)
    }
    assert not unknown, sorted(unknown)
    jobs = scrape_jobs()
    referenced = {(where, job) for where, expr in expressions() for job in promql_jobs(expr)}
    assert referenced
    assert {pair for pair in referenced if pair[1] not in jobs} == set()


# --- Grafana ---------------------------------------------------------------------------------


def provisioned_datasources() -> dict[str, dict[str, Any]]:
    paths = sorted((GRAFANA / "provisioning" / "datasources").glob("*.yml"))
    assert paths
    return {source["uid"]: source for path in paths for source in load_yaml(path)["datasources"]}


def test_grafana_provisions_prometheus_postgres_as_analyst_and_both_dashboards() -> None:
    # Grafana docs, "Provision Grafana" (administration/provisioning): data source and
    # dashboard provider files are `apiVersion: 1`, unchanged through Grafana 13.
    for kind in ("datasources", "dashboards"):
        for path in sorted((GRAFANA / "provisioning" / kind).glob("*.yml")):
            assert load_yaml(path)["apiVersion"] == 1, path.name
    sources = provisioned_datasources()
    assert sources["prometheus"]["type"] == "prometheus"
    assert sources["prometheus"]["url"] == "http://prometheus:9090"
    postgres = sources["postgres"]
    # The PostgreSQL data source's plugin id since Grafana 10.4 ("postgres" was the old id).
    assert postgres["type"] == "grafana-postgresql-datasource"
    assert postgres["url"] == "postgres:5432"
    assert postgres["user"] == "analyst"
    assert postgres["jsonData"]["database"] == "tweets"
    # The versions Grafana's config editor offers (datasources.yml cites its source): the
    # pinned PostgreSQL falls under the highest one not above it.
    editor = (900, 901, 902, 903, 904, 905, 906, 1000, 1100, 1200, 1300, 1400, 1500)
    server = 100 * int(re.findall(r"^postgres:(\d+)\.", services()["postgres"]["image"])[0])
    assert postgres["jsonData"]["postgresVersion"] == max(v for v in editor if v <= server)
    # The password comes from the environment, never from the file.
    assert re.fullmatch(r"\$\{?\w+\}?", postgres["secureJsonData"]["password"])
    assert "ANALYST_DB_PASSWORD" in services()["grafana"]["environment"]

    paths = sorted((GRAFANA / "provisioning" / "dashboards").glob("*.yml"))
    (provider,) = [p for path in paths for p in load_yaml(path)["providers"]]
    folder = provider["options"]["path"]
    assert provider["type"] == "file"
    mounts = services()["grafana"]["volumes"]
    assert f"./grafana_dashboard.json:{folder}/operations.json:ro" in mounts
    assert f"./observability/grafana/dashboards/data.json:{folder}/data.json:ro" in mounts
    assert "./observability/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


# Panel types Grafana 13 ships as core plugins (public/app/plugins/panel/* in grafana/grafana).
# None is an Angular panel (graph, singlestat, table-old, ...), which Grafana 12 removed with
# AngularJS support and Grafana 13 (pinned) does not load: Grafana docs, "Angular support
# deprecation" (developers/angular_deprecation), and the Grafana 12.0 "What's new".
CORE_PANELS = frozenset({"row", "stat", "timeseries", "table", "barchart", "gauge", "text"})


@pytest.mark.parametrize(
    ("path", "uid"), [(OPS_DASHBOARD, "hashtag-ops"), (DATA_DASHBOARD, "hashtag-data")]
)
def test_dashboards_load_in_the_pinned_grafana_with_provisioned_datasources(
    path: Path, uid: str
) -> None:
    assert services()["grafana"]["image"].startswith("grafana/grafana:13.")
    dashboard = load_json(path)
    assert dashboard["uid"] == uid
    assert dashboard.get("id") is None, "a provisioned dashboard carries no database id"
    panels = list(dashboard_panels(dashboard))
    types = {panel["type"] for panel in panels}
    assert types <= CORE_PANELS, sorted(types - CORE_PANELS)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    # Grafana migrates a dashboard's JSON forward from its schemaVersion when it loads it
    # (public/app/features/dashboard/state/DashboardMigrator.ts): an older version is fine,
    # one newer than the pinned Grafana knows is not.
    assert 36 <= dashboard["schemaVersion"] <= 42
    sources = provisioned_datasources()
    assert any(panel["type"] != "row" for panel in panels)
    for panel in panels:
        if panel["type"] == "row":
            continue
        for ref in [panel["datasource"], *(target["datasource"] for target in panel["targets"])]:
            assert ref["uid"] in sources, f"{panel['title']}: unknown datasource {ref}"
            assert ref["type"] == sources[ref["uid"]]["type"], panel["title"]


def test_operations_dashboard_covers_the_brief() -> None:
    exprs = "\n".join(dashboard_exprs(load_json(OPS_DASHBOARD)))
    for needle in (
        *("rate(http_requests_total", 'status=~"5.."', "histogram_quantile(0.5,"),
        *("histogram_quantile(0.95,", "histogram_quantile(0.99,", "probe_success"),
        *("probe_duration_seconds", "populate_runs_total", "populate_duration_seconds_bucket"),
        *("populate_last_success_timestamp_seconds", "x_api_requests_total"),
        *("x_api_rate_limit_remaining", "view_refresh_duration_seconds_bucket"),
        "haproxy_backend_active_servers",
    ):
        assert needle in exprs, needle


def test_data_dashboard_reads_only_the_views() -> None:
    targets = [
        target
        for panel in dashboard_panels(load_json(DATA_DASHBOARD))
        for target in panel.get("targets", [])
    ]
    assert {target["format"] for target in targets} == {"table", "time_series"}
    used: set[str] = set()
    for target in targets:
        sql = target["rawSql"]
        assert re.match(r"\s*SELECT\b", sql, re.IGNORECASE), sql
        assert ";" not in sql
        found = re.findall(r"\b(?:FROM|JOIN)\s+([\w.\"]+)", sql, re.IGNORECASE)
        relations = {name.strip('"').removeprefix("public.") for name in found}
        assert relations, sql
        used |= relations
    assert used == VIEWS
