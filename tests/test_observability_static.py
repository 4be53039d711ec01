"""Static checks of the compose stack: every config parses, passes its tool's own checker where
that tool is installed, and agrees with the API's contract (metric names, routes). The log path
(Filebeat, Elasticsearch, Kibana) has its own file, tests/test_filebeat_config.py.

Nothing here needs Docker or a database. The checkers (haproxy, promtool, the blackbox
exporter) come from Debian packages; a test whose tool is missing is skipped, naming it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import pytest
import yaml
from prometheus_client import REGISTRY

from service import metrics  # noqa: F401 - importing registers the API's metrics in REGISTRY
from service.app import create_app
from service.config import Settings
from service.testing.loopback import LoopbackPorts, render_haproxy
from tests.stack.render import render_prometheus
from tests.stub_server import serving

ROOT = Path(__file__).resolve().parent.parent
OBSERVABILITY = ROOT / "observability"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
HAPROXY_CFG = OBSERVABILITY / "haproxy" / "haproxy.cfg"
PROMETHEUS_DIR = OBSERVABILITY / "prometheus"
PROMETHEUS_YML = PROMETHEUS_DIR / "prometheus.yml"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
BLACKBOX_YML = OBSERVABILITY / "blackbox" / "blackbox.yml"
GRAFANA = OBSERVABILITY / "grafana"
OPS_DASHBOARD = ROOT / "grafana_dashboard.json"
DATA_DASHBOARD = GRAFANA / "dashboards" / "data.json"
FILEBEAT_YML = OBSERVABILITY / "filebeat" / "filebeat.yml"
KIBANA_DIR = OBSERVABILITY / "kibana"

PORTS = LoopbackPorts(
    api=(18081, 18082), haproxy=18080, haproxy_stats=18404, prometheus=19090, blackbox=19115
)


def get_routes() -> set[str]:
    """The API's plain GET routes, from its own router (create_app does no I/O). /metrics is
    scraped directly, not probed; templated routes (static files) have no one URL to probe."""
    return {
        route.resource.canonical
        for route in create_app(Settings()).router.routes()
        if route.method == "GET"
        and route.resource is not None
        and "{" not in route.resource.canonical
        and route.resource.canonical != "/metrics"
    }


VIEWS = frozenset({"top_users", "tweets_per_hour", "tweets_per_tag"})


# --- helpers ---------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def tool(*names: str) -> str:
    """The first of `names` on PATH; skip the test when none is installed."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(f"{names[0]} not installed")


def run(*args: str | Path) -> str:
    result = subprocess.run(
        [str(arg) for arg in args], capture_output=True, text=True, timeout=60, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{output}"
    return output


_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>\w+))"
)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable interpolation: $$, ${VAR}, ${VAR:-default}, ${VAR-default},
    ${VAR:?error}, ${VAR?error}. A missing required variable raises KeyError."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg, value = match["op"], match["arg"], env.get(name)
        if op in (":-", ":?") and not value:
            value = None
        if value is not None:
            return value
        if op in ("?", ":?"):
            raise KeyError(f"{name}: {arg}")
        return arg if op in ("-", ":-") else ""

    return _INTERPOLATION.sub(substitute, text)


def compose_variables(text: str) -> dict[str, str | None]:
    """Variable -> its interpolation operator (None for a plain ${VAR})."""
    return {
        match["name"] or match["bare"]: match["op"]
        for match in _INTERPOLATION.finditer(text)
        if not match["escaped"]
    }


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def required_placeholders() -> dict[str, str]:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    return {
        name: "placeholder-value"
        for name, op in compose_variables(text).items()
        if op in ("?", ":?")
    }


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    """Compose interpolates string values after parsing, so `${VAR:-}` is "", not null."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, Mapping):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(value, env) for value in node]
    return node


def compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose file as `docker compose config` sees it; by default with the required
    variables set to placeholders."""
    result: dict[str, Any] = interpolate_tree(
        load_yaml(COMPOSE_FILE), required_placeholders() if env is None else env
    )
    return result


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose()["services"]
    return result


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in logical]


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Beats settings: `a: {b: 1}` and `a.b: 1` are the same key."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, Mapping):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


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
    text = _PROMQL_MATCHERS.sub("", text)
    text = _PROMQL_RANGES.sub("", text)
    text = _PROMQL_GROUPING.sub("", text)
    return {
        name for name in _PROMQL_IDENTIFIER.findall(text) if name.lower() not in _PROMQL_KEYWORDS
    }


def promql_jobs(expr: str) -> set[str]:
    return set(re.findall(r'\bjob\s*=\s*"([^"]*)"', expr))


def api_metric_names() -> set[str]:
    """Series names the API process exposes: service/metrics.py plus prometheus_client's
    default process and platform collectors, with each type's sample suffixes."""
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def metric_is_known(name: str, api_names: set[str]) -> bool:
    if name in api_names or name == "up":
        return True
    # HAProxy's exporter, the blackbox exporter, Prometheus itself.
    return name.startswith(("haproxy_", "probe_", "scrape_", "prometheus_"))


def dashboard_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(dashboard: Mapping[str, Any]) -> list[str]:
    return [
        target["expr"]
        for panel in dashboard_panels(dashboard)
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
    ]


# --- the PromQL extractor itself -------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('up{job="api"} == 0', {"up"}),
        (
            "histogram_quantile(0.99, sum by (le, route)"
            ' (rate(http_request_duration_seconds_bucket{route!="/x"}[5m])))',
            {"http_request_duration_seconds_bucket"},
        ),
        (
            "sum(rate(a_total[$__rate_interval])) / sum(rate(b_total[$__rate_interval])) > 0.05",
            {"a_total", "b_total"},
        ),
        ("time() - max(x > 0) or min(y) offset 5m", {"x", "y"}),
        ("sum(a) by (instance) unless on(instance) b", {"a", "b"}),
        ("6 * 3600 + 1e3", set()),
        ('absent(up{job="api"} == 1)', {"up"}),
    ],
)
def test_promql_metric_names_extracts_selectors(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


# --- docker-compose.yml ----------------------------------------------------------------------


def test_compose_validates_against_compose_spec() -> None:
    schema = load_json(ROOT / "tests" / "data" / "compose-spec.json")
    validator = jsonschema.Draft7Validator(schema)
    for document in (load_yaml(COMPOSE_FILE), compose()):
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_compose_interpolation_refuses_missing_required_variables() -> None:
    env = required_placeholders()
    del env["API_TOKEN"]
    with pytest.raises(KeyError, match="API_TOKEN"):
        compose(env)


def test_compose_images_are_pinned() -> None:
    for name, service in services().items():
        if "build" in service:
            continue
        image = service.get("image", "")
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: image {image!r} has no tag"
        assert "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest", f"{name}: image {image!r} is not pinned"
        assert re.search(r"\d+\.\d+", tag), f"{name}: tag of {image!r} is not a version"
    assert services()["postgres"]["image"].startswith("postgres:16.")


def test_compose_dependencies_are_healthy_services() -> None:
    all_services = services()
    image_healthcheck = any(kind == "HEALTHCHECK" for kind, _ in dockerfile_instructions())
    for name, service in all_services.items():
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


def test_compose_waits_without_sleeping() -> None:
    for name, service in services().items():
        for key in ("command", "entrypoint"):
            assert "sleep" not in json.dumps(service.get(key, "")), f"{name}: {key} sleeps"


def test_compose_api_runs_two_replicas_behind_haproxy() -> None:
    api = services()["api"]
    assert api["deploy"]["replicas"] == 2
    assert "container_name" not in api
    assert "ports" not in api
    assert services()["haproxy"]["depends_on"] == {"api": {"condition": "service_healthy"}}


def test_compose_api_token_and_passwords_are_required() -> None:
    raw = load_yaml(COMPOSE_FILE)["services"]
    assert re.fullmatch(r"\$\{API_TOKEN:\?[^}]+\}", raw["api"]["environment"]["API_TOKEN"])
    operators = compose_variables(COMPOSE_FILE.read_text(encoding="utf-8"))
    for name in (
        "API_TOKEN",
        "POSTGRES_PASSWORD",
        "APP_DB_PASSWORD",
        "ANALYST_DB_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
    ):
        assert operators[name] == ":?", f"{name} must be required with ${{{name}:?...}}"


def test_compose_api_environment_matches_the_contract() -> None:
    env = services()["api"]["environment"]
    assert env["DATABASE_URL"].startswith("postgresql://app:")
    assert env["DATABASE_URL"].endswith("@postgres:5432/tweets")
    for name in (
        "X_API_BASE_URL",
        "TWITTER_BEARER_TOKEN",
        "TWITTER_CONSUMER_KEY",
        "TWITTER_CONSUMER_SECRET",
        "TWITTER_APP_ACCESS_TOKEN",
        "TWITTER_ACCESS_SECRET",
        "TWEET_SOURCE",
    ):
        assert env[name] == "", f"{name} must pass through, optional and empty by default"
    assert env["LOG_FORMAT"] == "json"


def test_env_example_lists_every_variable_without_secrets() -> None:
    example = env_example()
    operators = compose_variables(COMPOSE_FILE.read_text(encoding="utf-8"))
    missing = sorted(set(operators) - set(example))
    assert not missing, f".env.example lacks {missing}"
    for name, op in operators.items():
        if op in ("?", ":?"):
            assert example[name] == "", f".env.example must leave required {name} empty"
    for name, value in example.items():
        if re.search(r"TOKEN|SECRET|PASSWORD|KEY", name):
            assert value == "", f".env.example must not carry a value for {name}"


def test_compose_bind_mounts_exist() -> None:
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"


def test_compose_publishes_operator_ports_on_loopback_only() -> None:
    for name, service in services().items():
        for port in service.get("ports", []):
            published = str(port)
            if published.endswith(":8080") and name == "haproxy":
                continue  # the public API
            assert published.startswith("127.0.0.1:"), f"{name}: {published} is public"


# --- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_builds_a_pinned_multi_stage_non_root_image() -> None:
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


def test_dockerfile_health_check_probes_live_with_urllib() -> None:
    checks = [arg for kind, arg in dockerfile_instructions() if kind == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "/live" in checks[0]
    assert "urllib.request" in checks[0]
    assert "curl" not in checks[0]


def test_dockerfile_bakes_in_no_secret() -> None:
    for kind, arg in dockerfile_instructions():
        if kind in ("ENV", "ARG"):
            assert not re.search(r"TOKEN|SECRET|PASSWORD|DATABASE_URL", arg, re.IGNORECASE), arg
        if kind in ("COPY", "ADD"):
            assert not re.search(r"\.env\b|twitter_keys", arg), arg
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    for entry in (".env", "twitter_keys", ".git", ".venv"):
        assert entry in ignored, f".dockerignore must exclude {entry}"


# --- PostgreSQL ------------------------------------------------------------------------------


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


# --- HAProxy ---------------------------------------------------------------------------------


def test_haproxy_config_is_valid_for_docker() -> None:
    run(tool("haproxy"), "-c", "-q", "-f", HAPROXY_CFG)


def test_haproxy_config_is_valid_for_loopback(tmp_path: Path) -> None:
    haproxy = tool("haproxy")
    rendered = tmp_path / "haproxy.cfg"
    rendered.write_text(render_haproxy(HAPROXY_CFG.read_text(encoding="utf-8"), PORTS))
    run(haproxy, "-c", "-q", "-f", rendered)


def test_haproxy_config_has_the_required_features() -> None:
    text = HAPROXY_CFG.read_text(encoding="utf-8")
    assert re.search(r"nameserver \w+ 127\.0\.0\.11:53", text)
    assert re.search(r"server-template api 2 api:8080 .*check.*resolvers docker", text)
    assert "http-check send meth GET uri /ready" in text
    assert "http-request use-service prometheus-exporter if { path /metrics }" in text
    assert re.search(r"bind :8404", text)
    assert re.search(r"stick-table type \w+ .*store http_req_rate", text)
    assert re.search(r"http-request return status 429 content-type application/json", text)
    assert "path /api/v1/populate" in text
    assert "method POST" in text
    for header in (
        "X-Content-Type-Options",
        "X-Frame-Options",
        "Referrer-Policy",
        "Content-Security-Policy",
    ):
        assert re.search(rf"http-after-response set-header {header} ", text), header
    assert re.search(r"http-request set-header X-Request-ID .* unless", text)


def test_haproxy_json_bodies_use_the_api_error_shape() -> None:
    bodies = re.findall(r"string '([^']*)'", HAPROXY_CFG.read_text(encoding="utf-8"))
    statuses = re.findall(r"http-error status (\d+)", HAPROXY_CFG.read_text(encoding="utf-8"))
    assert "503" in statuses
    assert bodies
    for body in bodies:
        error = json.loads(body)["error"]
        assert set(error) == {"code", "message"}, body


# --- Prometheus and blackbox -----------------------------------------------------------------


def test_prometheus_config_is_valid_for_docker() -> None:
    run(tool("promtool"), "check", "config", PROMETHEUS_YML)


def test_prometheus_config_is_valid_for_loopback(tmp_path: Path) -> None:
    promtool = tool("promtool")
    rendered = tmp_path / "prometheus.yml"
    text = PROMETHEUS_YML.read_text(encoding="utf-8")
    rendered.write_text(render_prometheus(text, PORTS, config_dir=PROMETHEUS_DIR))
    output = run(promtool, "check", "config", rendered)
    assert f"{len(RULE_FILES)} rule files found" in output


def test_prometheus_rules_are_valid() -> None:
    assert RULE_FILES
    run(tool("promtool"), "check", "rules", *RULE_FILES)


def test_prometheus_alert_rules_behave() -> None:
    run(tool("promtool"), "test", "rules", ROOT / "tests" / "data" / "alerts_test.yml")


def test_prometheus_scrapes_replicas_haproxy_blackbox_and_itself() -> None:
    jobs = {job["job_name"]: job for job in load_yaml(PROMETHEUS_YML)["scrape_configs"]}
    assert jobs["api"]["dns_sd_configs"] == [
        {"names": ["api"], "type": "A", "port": 8080, "refresh_interval": "15s"}
    ]
    assert jobs["haproxy"]["static_configs"] == [{"targets": ["haproxy:8404"]}]
    assert jobs["prometheus"]["static_configs"] == [{"targets": ["localhost:9090"]}]
    assert jobs["blackbox"]["metrics_path"] == "/probe"


def test_blackbox_probes_every_get_route_through_haproxy() -> None:
    job = next(
        j for j in load_yaml(PROMETHEUS_YML)["scrape_configs"] if j["job_name"] == "blackbox"
    )
    modules = load_yaml(BLACKBOX_YML)["modules"]
    probed: dict[str, str] = {}
    for group in job["static_configs"]:
        module = group["labels"]["module"]
        assert module in modules, f"unknown blackbox module {module}"
        for target in group["targets"]:
            assert target.startswith("http://haproxy:8080/"), target
            probed[target.removeprefix("http://haproxy:8080")] = module
    assert set(probed) == get_routes()
    assert {"/", "/api/v1/summary"} <= set(probed)  # the page and its poll
    assert probed["/api/health"] == "api_health"


def test_blackbox_health_module_expects_200_and_a_status_field() -> None:
    http = load_yaml(BLACKBOX_YML)["modules"]["api_health"]["http"]
    assert http["valid_status_codes"] == [200]
    assert any('"status"' in regexp for regexp in http["fail_if_body_not_matches_regexp"])


def test_blackbox_config_is_valid() -> None:
    exporter = tool("prometheus-blackbox-exporter", "blackbox_exporter")
    run(exporter, "--config.check", "--config.file", BLACKBOX_YML)


def test_alert_rules_are_annotated() -> None:
    rules = [rule for rule in alert_rules() if "alert" in rule]
    names = {rule["alert"] for rule in rules}
    for required in (
        "ApiDown",
        "ProbeFailing",
        "ApiHighErrorRate",
        "ApiHighLatencyP99",
        "PopulateFailing",
        "PopulateStale",
        "XApiRateLimitNearlySpent",
    ):
        assert required in names
    for rule in rules:
        assert rule["annotations"].get("summary"), rule["alert"]
        assert rule["annotations"].get("description"), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]


# --- metric names ----------------------------------------------------------------------------


def _expressions() -> list[tuple[str, str]]:
    sources = [
        (f"rule {rule.get('alert') or rule.get('record')}", rule["expr"]) for rule in alert_rules()
    ]
    for path in (OPS_DASHBOARD, DATA_DASHBOARD):
        sources.extend((path.name, expr) for expr in dashboard_exprs(load_json(path)))
    return sources


def test_every_referenced_metric_is_exported() -> None:
    api_names = api_metric_names()
    assert "http_requests_total" in api_names
    assert "http_request_duration_seconds_bucket" in api_names
    assert "process_start_time_seconds" in api_names
    unknown = {
        f"{where}: {name}"
        for where, expr in _expressions()
        for name in promql_metric_names(expr)
        if not metric_is_known(name, api_names)
    }
    assert not unknown, sorted(unknown)


def test_every_referenced_job_is_scraped() -> None:
    jobs = {job["job_name"] for job in load_yaml(PROMETHEUS_YML)["scrape_configs"]}
    referenced = {(where, job) for where, expr in _expressions() for job in promql_jobs(expr)}
    assert referenced
    assert {pair for pair in referenced if pair[1] not in jobs} == set()


def test_dashboard_promql_is_valid(tmp_path: Path) -> None:
    promtool = tool("promtool")
    grafana_variables = {
        "$__rate_interval": "1m",
        "$__interval": "15s",
        "$__range": "1h",
    }
    rules = []
    for n, (_, expr) in enumerate(_expressions()):
        for variable, value in grafana_variables.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"check:expr_{n}", "expr": expr})
    rule_file = tmp_path / "dashboard_exprs.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    run(promtool, "check", "rules", rule_file)


# --- Grafana ---------------------------------------------------------------------------------


def provisioned_datasources() -> dict[str, dict[str, Any]]:
    paths = sorted((GRAFANA / "provisioning" / "datasources").glob("*.yml"))
    assert paths
    return {source["uid"]: source for path in paths for source in load_yaml(path)["datasources"]}


def test_grafana_datasources_are_prometheus_and_postgres_as_analyst() -> None:
    sources = provisioned_datasources()
    assert sources["prometheus"]["type"] == "prometheus"
    assert sources["prometheus"]["url"] == "http://prometheus:9090"
    postgres = sources["postgres"]
    assert postgres["type"] in ("grafana-postgresql-datasource", "postgres")
    assert postgres["url"] == "postgres:5432"
    assert postgres["user"] == "analyst"
    assert postgres["jsonData"]["database"] == "tweets"
    # The password comes from the environment, never from the file.
    assert re.fullmatch(r"\$\{?\w+\}?", postgres["secureJsonData"]["password"])
    assert "ANALYST_DB_PASSWORD" in services()["grafana"]["environment"]


def test_grafana_provider_loads_both_dashboards() -> None:
    paths = sorted((GRAFANA / "provisioning" / "dashboards").glob("*.yml"))
    providers = [p for path in paths for p in load_yaml(path)["providers"]]
    assert len(providers) == 1
    folder = providers[0]["options"]["path"]
    assert providers[0]["type"] == "file"
    mounts = services()["grafana"]["volumes"]
    assert f"./grafana_dashboard.json:{folder}/operations.json:ro" in mounts
    assert f"./observability/grafana/dashboards/data.json:{folder}/data.json:ro" in mounts
    assert "./observability/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


@pytest.mark.parametrize(
    ("path", "uid"), [(OPS_DASHBOARD, "hashtag-ops"), (DATA_DASHBOARD, "hashtag-data")]
)
def test_dashboards_use_provisioned_datasources_by_uid(path: Path, uid: str) -> None:
    dashboard = load_json(path)
    assert dashboard["uid"] == uid
    assert dashboard.get("id") is None, "a provisioned dashboard carries no database id"
    sources = provisioned_datasources()
    panels = [panel for panel in dashboard_panels(dashboard) if panel["type"] != "row"]
    assert panels
    for panel in panels:
        refs = [panel["datasource"], *(target["datasource"] for target in panel["targets"])]
        for ref in refs:
            assert ref["uid"] in sources, f"{panel['title']}: unknown datasource {ref}"
            assert ref["type"] == sources[ref["uid"]]["type"], panel["title"]


# Panel types Grafana 12 removed with AngularJS support, and Grafana 13 (pinned) does not load:
# Grafana docs, "Angular support deprecation" (developers/angular_deprecation), and the
# Grafana 12.0 "What's new": Angular plugins and the Angular core panels are gone.
ANGULAR_PANELS = frozenset(
    {
        "graph",
        "singlestat",
        "table-old",
        "grafana-piechart-panel",
        "grafana-worldmap-panel",
        "grafana-singlestat-panel",
        "grafana-clock-panel",
        "heatmap-old",
    }
)
# Panel types Grafana 13 ships as core plugins (public/app/plugins/panel/* in grafana/grafana).
CORE_PANELS = frozenset({"row", "stat", "timeseries", "table", "barchart", "gauge", "text"})


@pytest.mark.parametrize("path", [OPS_DASHBOARD, DATA_DASHBOARD])
def test_dashboards_use_only_core_panels_of_the_pinned_grafana(path: Path) -> None:
    assert services()["grafana"]["image"].startswith("grafana/grafana:13.")
    dashboard = load_json(path)
    types = {panel["type"] for panel in dashboard_panels(dashboard)}
    assert types <= CORE_PANELS, sorted(types - CORE_PANELS)
    assert not types & ANGULAR_PANELS
    # Grafana migrates a dashboard's JSON forward from its schemaVersion when it loads it
    # (public/app/features/dashboard/state/DashboardMigrator.ts): an older version is fine,
    # one newer than the pinned Grafana knows is not.
    assert 36 <= dashboard["schemaVersion"] <= 42


def test_grafana_provisioning_files_use_the_v1_format() -> None:
    # Grafana docs, "Provision Grafana" (administration/provisioning): data source and
    # dashboard provider files are `apiVersion: 1`, unchanged through Grafana 13.
    for kind in ("datasources", "dashboards"):
        for path in sorted((GRAFANA / "provisioning" / kind).glob("*.yml")):
            assert load_yaml(path)["apiVersion"] == 1, path.name
    # The PostgreSQL data source's plugin id since Grafana 10.4 ("postgres" was the old id).
    assert provisioned_datasources()["postgres"]["type"] == "grafana-postgresql-datasource"


def test_dashboard_panel_ids_are_unique() -> None:
    for path in (OPS_DASHBOARD, DATA_DASHBOARD):
        ids = [panel["id"] for panel in dashboard_panels(load_json(path))]
        assert len(ids) == len(set(ids)), path.name


def test_operations_dashboard_covers_the_brief() -> None:
    exprs = "\n".join(dashboard_exprs(load_json(OPS_DASHBOARD)))
    for needle in (
        "rate(http_requests_total",
        'status=~"5.."',
        "histogram_quantile(0.5,",
        "histogram_quantile(0.95,",
        "histogram_quantile(0.99,",
        "probe_success",
        "probe_duration_seconds",
        "populate_runs_total",
        "populate_duration_seconds_bucket",
        "populate_last_success_timestamp_seconds",
        "x_api_requests_total",
        "x_api_rate_limit_remaining",
        "view_refresh_duration_seconds_bucket",
        "haproxy_backend_active_servers",
    ):
        assert needle in exprs, needle


_SQL_RELATIONS = re.compile(r"\b(?:FROM|JOIN)\s+([\w.\"]+)", re.IGNORECASE)


def test_data_dashboard_reads_only_the_views() -> None:
    targets = [
        target
        for panel in dashboard_panels(load_json(DATA_DASHBOARD))
        for target in panel.get("targets", [])
    ]
    assert targets
    used: set[str] = set()
    for target in targets:
        sql = target["rawSql"]
        assert re.match(r"\s*SELECT\b", sql, re.IGNORECASE), sql
        assert ";" not in sql
        relations = {
            name.strip('"').removeprefix("public.") for name in _SQL_RELATIONS.findall(sql)
        }
        assert relations, sql
        assert relations <= VIEWS, f"{sql}: reads {relations - VIEWS}"
        used |= relations
    assert used == VIEWS
    formats = {target["format"] for target in targets}
    assert formats == {"table", "time_series"}


# --- Filebeat and Kibana ---------------------------------------------------------------------


def test_kibana_data_view_is_api_server_on_timestamp() -> None:
    # Kibana 9.5 source, src/platform/plugins/shared/data_views/server/rest_api_routes/
    # (public/create_data_view.ts: POST /api/data_views/data_view, `override` replaces a view
    # of the same title; schema.ts dataViewSpecSchema: these keys). allowNoIndex lets the view
    # exist before Filebeat's first write creates the data stream.
    body = load_json(KIBANA_DIR / "data-view.json")
    assert set(body) == {"override", "data_view"}
    assert set(body["data_view"]) <= {"id", "name", "title", "timeFieldName", "allowNoIndex"}
    assert body["data_view"]["allowNoIndex"] is True
    assert body["override"] is True
    assert body["data_view"]["title"] == "api-server-*"
    assert body["data_view"]["timeFieldName"] == "@timestamp"
    setup = services()["kibana-setup"]
    assert setup["depends_on"] == {"kibana": {"condition": "service_healthy"}}
    assert setup["entrypoint"][-1] == "/setup/create-data-view.sh"


class _FakeKibana(BaseHTTPRequestHandler):
    """Records POSTs and answers with the status queued for their path."""

    requests: ClassVar[list[tuple[str, dict[str, str], Any]]] = []
    statuses: ClassVar[dict[str, int]] = {}

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"null")
        self.requests.append((self.path, dict(self.headers), body))
        status = self.statuses.get(self.path, 200)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_kibana() -> Iterator[str]:
    _FakeKibana.requests = []
    _FakeKibana.statuses = {}
    with serving(_FakeKibana) as url:
        yield url


def _run_setup(url: str) -> subprocess.CompletedProcess[str]:
    tool("curl")
    return subprocess.run(
        ["sh", str(KIBANA_DIR / "create-data-view.sh")],
        env={**os.environ, "KIBANA_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_kibana_setup_script_creates_the_data_view(fake_kibana: str) -> None:
    result = _run_setup(fake_kibana)
    assert result.returncode == 0, result.stderr
    (path, headers, body), (default_path, _, default_body) = _FakeKibana.requests
    assert path == "/api/data_views/data_view"
    assert headers["kbn-xsrf"] == "true"
    assert body == load_json(KIBANA_DIR / "data-view.json")
    assert default_path == "/api/data_views/default"
    assert default_body == {"data_view_id": body["data_view"]["id"], "force": True}


def test_kibana_setup_script_accepts_an_existing_data_view(fake_kibana: str) -> None:
    _FakeKibana.statuses["/api/data_views/data_view"] = 409
    result = _run_setup(fake_kibana)
    assert result.returncode == 0, result.stderr
    assert "already exists" in result.stdout


def test_kibana_setup_script_fails_on_other_errors(fake_kibana: str) -> None:
    _FakeKibana.statuses["/api/data_views/data_view"] = 400
    result = _run_setup(fake_kibana)
    assert result.returncode != 0
    assert "HTTP 400" in result.stderr
