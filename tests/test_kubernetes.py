"""deploy/kubernetes: every kustomization rendered with `kubectl kustomize`, validated, and held
to the service.

Built-in kinds are validated strictly (no unknown field) against the OpenAPI schemas that
kubernetes-validate bundles, for the oldest and the newest Kubernetes we support; the custom
resources (Gateway API `HTTPRoute`, CloudNativePG `Cluster` and `ScheduledBackup`, Barman Cloud
`ObjectStore`, Prometheus Operator `ServiceMonitor` and `PrometheusRule`) strictly against the
published CRDs of the versions the README names, kept in tests/crds/ (tools/crdschemas.py).
The rest ties the manifests to the code rather than to copied lists: the environment variables
come from service/config.py, the routes from the app's router, the image, user and port from
the Dockerfile, the job label from the dashboards, the shutdown sequence from the installed
aiohttp.
"""

from __future__ import annotations

import functools
import math
import re
import shlex
import subprocess
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast
from unittest import mock

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate_utils
from packaging.version import Version

from service import config
from service.__main__ import _parser
from service.config import SECRET_VARS, Settings
from tests.config_files import (
    OPS_DASHBOARD,
    PROMETHEUS_YML,
    ROOT,
    RULE_FILES,
    alert_rules,
    app_routes,
    dashboard_exprs,
    dockerfile_instructions,
    graceful_stop,
    load_json,
    load_yaml,
    promql_jobs,
    run,
    services,
    tool,
    walk,
)

DEPLOY = ROOT / "deploy" / "kubernetes"
BASE = DEPLOY / "base"
OVERLAYS = sorted(path.parent for path in (DEPLOY / "overlays").glob("*/kustomization.yaml"))
TARGETS = [BASE, *OVERLAYS]
CRDS = ROOT / "tests" / "crds"
SCRAPE_CONFIG = DEPLOY / "prometheus" / "scrape-config.yml"
README = DEPLOY / "README.md"

# The oldest Kubernetes the manifests support: the preStop `sleep` action is beta and on by
# default from 1.30 (KEP-3960, kubernetes/enhancements#3960: alpha 1.29, beta 1.30; "Kubernetes
# v1.33: Updates to Container Lifecycle", kubernetes.io blog, 2025-05-14). 1.29's schema has the
# field, but its API server drops it unless the feature gate is on: no preStop pause. The other
# newer fields used (topology spread matchLabelKeys and nodeTaintsPolicy, the PDB's
# unhealthyPodEvictionPolicy) are on by default from 1.27 or earlier.
OLDEST = "1.30"
NEWEST = str(Version(kubernetes_validate_utils.latest_version()).base_version).rsplit(".", 1)[0]

CUSTOM_KINDS = {
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("postgresql.cnpg.io/v1", "ScheduledBackup"),
    ("barmancloud.cnpg.io/v1", "ObjectStore"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}


@functools.cache
def render(directory: Path) -> list[dict[str, Any]]:
    """What a user applies: `kubectl kustomize directory` (stdout only: warnings go to stderr)."""
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=TARGETS, ids=lambda p: str(p.relative_to(DEPLOY)))
def docs(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(request.param)


# --- the image, and the rendered manifests ---------------------------------------------------


def dockerfile() -> dict[str, Any]:
    instructions = dockerfile_instructions()
    env: dict[str, str] = {}
    for kind, arguments in instructions:
        if kind == "ENV":
            env.update(item.partition("=")[::2] for item in shlex.split(arguments))
    user = [arguments for kind, arguments in instructions if kind == "USER"][-1]
    uid, _, gid = user.partition(":")
    # The header comment names the tag the image is built with.
    name = re.search(r"docker build -t ([\w./:-]+) \.", (ROOT / "Dockerfile").read_text())
    assert name, "Dockerfile: the `docker build -t NAME .` line names the image"
    return {
        "env": env,
        "uid": int(uid),
        "gid": int(gid or uid),
        "expose": {int(a) for kind, a in instructions if kind == "EXPOSE"},
        "image": name[1],
    }


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    kinds = {"Job", "CronJob", "StatefulSet", "DaemonSet", "Pod", "ReplicaSet"}
    assert not [d for d in docs if d["kind"] in kinds]
    return cast(dict[str, Any], one(docs, "Deployment")["spec"]["template"]["spec"])


def api_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = pod_spec(docs)["containers"]
    return cast(dict[str, Any], container)


def effective_settings(docs: list[dict[str, Any]]) -> Settings:
    """Settings as a pod would build them from the ConfigMap (the Secret's values made up)."""
    environ = {**dockerfile()["env"], **one(docs, "ConfigMap")["data"]}
    environ["DATABASE_URL"] = "postgresql://user:made-up@db.example:5432/tweets"
    return Settings.from_env(environ, keys_file=Path("/nonexistent"))


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are used"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def cluster_settings() -> dict[str, str]:
    """base/cluster.yaml: the names taken from the cluster, the one place they are set."""
    return cast(dict[str, str], load_yaml(BASE / "cluster.yaml")["data"])


# --- rendering and schemas -------------------------------------------------------------------


def test_every_kustomization_is_rendered_by_a_target() -> None:
    # Components are rendered through the overlays that use them; nothing is left untested.
    assert {"cloudnativepg", "servicemonitor", "gateway-api"} <= {path.name for path in OVERLAYS}
    used = {target.resolve() for target in TARGETS}
    for target in TARGETS:
        components = load_yaml(target / "kustomization.yaml").get("components", [])
        used.update((target / c).resolve() for c in components)
    assert {path.parent.resolve() for path in DEPLOY.rglob("kustomization.yaml")} == used


def test_the_clusters_names_are_set_once_in_cluster_yaml(docs: list[dict[str, Any]]) -> None:
    # kustomize reads the local-config object and leaves it out of its output; every
    # placeholder is replaced (the tests below compare each use with cluster.yaml).
    assert not [d for d in docs if d["metadata"]["name"] == "cluster-settings"]
    assert "from-cluster.yaml" not in yaml.safe_dump_all(docs)
    names = set(cluster_settings().values())
    for path in DEPLOY.rglob("*.yaml"):
        if path != BASE / "cluster.yaml":
            found = yaml.safe_load_all(path.read_text(encoding="utf-8"))
            values = {node for doc in found for node in walk(doc) if isinstance(node, str)}
            assert not values & names, f"{path}: {values & names} belongs in cluster.yaml"


@pytest.mark.parametrize("version", [OLDEST, NEWEST])
def test_manifests_validate_strictly(docs: list[dict[str, Any]], version: str) -> None:
    bundled = {v.rsplit(".", 1)[0] for v in kubernetes_validate_utils.all_versions()}
    assert version in bundled
    assert Version(NEWEST) > Version(OLDEST)
    built_in = [doc for doc in docs if (doc["apiVersion"], doc["kind"]) not in CUSTOM_KINDS]
    assert len(built_in) >= 10
    for doc in built_in:
        # A kind without a schema raises SchemaNotFoundError: only the CUSTOM_KINDS are exempt.
        try:
            assert kubernetes_validate.validate(doc, version, strict=True) == version
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(p) for p in error.path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} ({version}): {where}: {error}")


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A CRD's structural schema as JSON Schema that, like `kubectl apply --validate=strict`,
    rejects unknown fields (the API server prunes them silently otherwise). `nullable` admits
    null; the CEL rules (x-kubernetes-validations) run in the API server only, not here."""
    node = dict(schema)
    for key in ("properties", "patternProperties"):
        if key in node:
            node[key] = {name: _strict(sub) for name, sub in node[key].items()}
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            node[key] = _strict(node[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in node:
            node[key] = [_strict(sub) for sub in node[key]]
    open_ended = "additionalProperties" in node or node.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in node and not open_ended:
        node["additionalProperties"] = False
    if node.pop("nullable", False):
        node = {"anyOf": [node, {"type": "null"}]}
    return node


def test_custom_resources_validate_strictly_against_their_crds(docs: list[dict[str, Any]]) -> None:
    crds = [load_json(path) for path in sorted(CRDS.glob("*.json"))]
    validators = {
        (crd["apiVersion"], crd["kind"]): jsonschema.Draft7Validator(_strict(crd["schema"]))
        for crd in crds
    }
    assert set(validators) == CUSTOM_KINDS
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            validator = validators[doc["apiVersion"], doc["kind"]]
            errors = [
                f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)
            ]
            assert not errors, f"{doc['kind']}/{doc['metadata']['name']}: {errors}"
            # An unknown field fails, as kubectl's strict validation would have it.
            assert not validator.is_valid({**doc, "spec": {**doc["spec"], "unknownField": 1}})


# --- CloudNativePG Cluster ------------------------------------------------------------------
# Upstream: cloudnative-pg/cloudnative-pg v1.30.0 (its CRD in tests/crds/ checks the fields);
# docs/src/cloudnative-pg.v1.md: `bootstrap.initdb.database`/`owner` name the application
# database and its owner.


def test_cloudnativepg_cluster_wiring() -> None:
    docs = render(DEPLOY / "overlays" / "cloudnativepg")
    cluster = one(docs, "Cluster")
    assert cluster["metadata"]["namespace"] == one(docs, "Namespace")["metadata"]["name"]
    spec = cluster["spec"]
    # PostgreSQL 16 as in compose, not the operator's default: the operator reads the major
    # version from the tag's leading number (docs/src/container_images.md, "Image Tag
    # Requirements"); `standard` and `minimal` are the images for backup plugins
    # (cloudnative-pg/postgres-containers README, "Image Types").
    image = re.fullmatch(
        r"ghcr\.io/cloudnative-pg/postgresql:(\d+\.\d+)-(standard|minimal)-\w+", spec["imageName"]
    )
    composed = re.fullmatch(r"postgres:(\d+\.\d+)-\w+", services()["postgres"]["image"])
    assert image
    assert composed
    assert image[1] == composed[1]
    assert image[1].startswith("16.")
    # Guaranteed QoS, which CloudNativePG recommends (docs/src/resource_management.md): requests
    # equal to limits for cpu and memory, on the postgres container and the operator's bootstrap
    # init container alike (pkg/specs/containers.go gives both the Cluster's resources).
    assert set(spec["resources"]["limits"]) == {"cpu", "memory"}
    assert spec["resources"]["requests"] == spec["resources"]["limits"]
    assert spec["instances"] >= 2, "a standby to fail over to"
    assert set(spec["bootstrap"]["initdb"]) == {"database", "owner"}
    parameters = spec["postgresql"]["parameters"]

    # The operator's Secret `<cluster>-app` holds `uri`, a postgresql:// URL (docs/src/
    # applications.md, "Secrets"; pkg/specs/secrets.go builds it with url.URL{Scheme:
    # "postgresql"}), which service/config.py accepts as DATABASE_URL.
    env = {e["name"]: e for e in api_container(docs)["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{cluster['metadata']['name']}-app",
        "key": "uri",
    }
    # The connection budget fits the Cluster's max_connections.
    hpa = one(docs, "HorizontalPodAutoscaler")
    pool = effective_settings(docs).db_pool_size
    assert hpa["spec"]["maxReplicas"] * pool <= int(parameters["max_connections"]) - 10

    # Egress to PostgreSQL goes to the Cluster's pods (label cnpg.io/cluster, docs/src/
    # labels_annotations.md), nowhere else.
    policy = one(docs, "NetworkPolicy", "hashtag-analytics-egress-postgres")
    assert policy["spec"]["egress"][0]["to"] == [
        {"podSelector": {"matchLabels": {"cnpg.io/cluster": cluster["metadata"]["name"]}}}
    ]


# --- CloudNativePG backups with the Barman Cloud plugin ------------------------------------
# Upstream: cloudnative-pg/plugin-barman-cloud v0.14.0 web/docs/usage.md (an ObjectStore; the
# Cluster's `plugins` entry naming it in barmanObjectName, isWALArchiver; a ScheduledBackup with
# method `plugin`); cloudnative-pg/cloudnative-pg v1.30.0 docs/src/backup.md (six cron fields,
# seconds first). Their CRDs in tests/crds/ check the fields.

BARMAN_CLOUD = "barman-cloud.cloudnative-pg.io"


def test_cloudnativepg_backups_wiring() -> None:
    docs = render(DEPLOY / "overlays" / "full")
    cluster = one(docs, "Cluster")
    store = one(docs, "ObjectStore")
    backup = one(docs, "ScheduledBackup")
    namespace = one(docs, "Namespace")["metadata"]["name"]
    assert {d["metadata"]["namespace"] for d in (cluster, store, backup)} == {namespace}
    configuration = store["spec"]["configuration"]
    assert configuration["destinationPath"] == cluster_settings()["backupDestinationPath"]
    assert cluster["spec"]["plugins"] == [
        {
            "name": BARMAN_CLOUD,
            "isWALArchiver": True,
            "parameters": {"barmanObjectName": store["metadata"]["name"]},
        }
    ]
    spec = backup["spec"]
    assert spec["cluster"] == {"name": cluster["metadata"]["name"]}
    assert (spec["method"], spec["pluginConfiguration"]) == ("plugin", {"name": BARMAN_CLOUD})
    assert len(spec["schedule"].split()) == 6
    # The plugin adds a sidecar to every PostgreSQL pod (internal/cnpgi/operator/lifecycle.go,
    # with the ObjectStore's instanceSidecarConfiguration.resources): a pod is Guaranteed only
    # if that container too has requests equal to limits.
    sidecar = store["spec"]["instanceSidecarConfiguration"]["resources"]
    assert set(sidecar["limits"]) == {"cpu", "memory"}
    assert sidecar["requests"] == sidecar["limits"]


# --- ServiceMonitor and PrometheusRule ------------------------------------------------------
# Upstream: prometheus-operator/prometheus-operator v0.93.0 Documentation/api-reference/api.md
# (its CRDs in tests/crds/ check the fields): jobLabel names the Service label whose value
# becomes `job` (the Service's name when absent); an endpoint's `port` is the name of a Service
# port.


def test_servicemonitor_and_prometheusrule_labels() -> None:
    docs = render(DEPLOY / "overlays" / "servicemonitor")
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    spec = monitor["spec"]
    assert selects(spec["selector"], service["metadata"]["labels"])
    # The job label the dashboards and alert rules select (the scrape config's test below).
    assert service["metadata"]["labels"][spec["jobLabel"]] == "api"
    port_names = {port["name"] for port in service["spec"]["ports"]}
    interval = load_yaml(PROMETHEUS_YML)["global"]["scrape_interval"]
    for endpoint in spec["endpoints"]:
        assert endpoint["port"] in port_names
        assert "GET" in app_routes()[endpoint["path"]]
        assert endpoint["interval"] == interval
        targets = {r["targetLabel"]: r for r in endpoint.get("relabelings", [])}
        assert targets["instance"]["sourceLabels"] == ["__meta_kubernetes_pod_name"]
    # Scraped once: the annotations for annotation-based discovery are gone in this overlay.
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"].get("annotations", {})
    assert not any(k.startswith("prometheus.io/") for k in annotations)

    # A RuleGroup is the rule file's group (api.md): the compose stack's alert rules, unchanged.
    rule = one(docs, "PrometheusRule")
    assert rule["metadata"]["namespace"] == one(docs, "Namespace")["metadata"]["name"]
    groups = [group for path in RULE_FILES for group in load_yaml(path)["groups"]]
    assert rule["spec"]["groups"] == groups

    # kube-prometheus-stack's Prometheus selects both by `release: <Helm release name>` unless
    # told otherwise (prometheus-community/helm-charts kube-prometheus-stack 88.5.3: values.yaml
    # serviceMonitorSelectorNilUsesHelmValues and ruleSelectorNilUsesHelmValues, true;
    # templates/prometheus/prometheus.yaml): components/kube-prometheus-stack adds it.
    labelled = render(DEPLOY / "overlays" / "full")
    for kind in ("ServiceMonitor", "PrometheusRule"):
        labels = one(labelled, kind)["metadata"]["labels"]
        assert labels["release"] == cluster_settings()["prometheusRelease"]


def test_annotation_scrape_config_gives_the_dashboards_their_labels(tmp_path: Path) -> None:
    scrape = load_yaml(SCRAPE_CONFIG)
    (job,) = scrape["scrape_configs"]
    assert job["job_name"] == "api"
    # The job label the operations dashboard and the alert rules select for the API.
    exprs = dashboard_exprs(load_json(OPS_DASHBOARD)) + [r["expr"] for r in alert_rules()]
    assert "api" in {job for expr in exprs for job in promql_jobs(expr)}
    relabels = job["relabel_configs"]
    keep = {tuple(r["source_labels"]): r["regex"] for r in relabels if r.get("action") == "keep"}
    annotations = one(render(BASE), "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert keep[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)] == "true"
    assert annotations["prometheus.io/scrape"] == "true"
    assert keep[("__meta_kubernetes_pod_label_app_kubernetes_io_component",)] == "api"
    instance = [r for r in relabels if r.get("target_label") == "instance"]
    assert instance[0]["source_labels"] == ["__meta_kubernetes_pod_name"]
    namespaces = job["kubernetes_sd_configs"][0]["namespaces"]["names"]
    assert namespaces == [one(render(BASE), "Namespace")["metadata"]["name"]]

    # Debian's Prometheus (the promtool CI installs) is built without Kubernetes service
    # discovery and refuses kubernetes_sd_configs, so promtool checks the rest of the job (the
    # relabelling above all) with the discovery swapped for a static target.
    assert job.pop("kubernetes_sd_configs")[0]["role"] == "pod"
    job["static_configs"] = [{"targets": ["127.0.0.1:8080"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(scrape), encoding="utf-8")
    run(tool("promtool"), "check", "config", path)


# --- the service's contract: variables, secrets, routes, ports, image ----------------------


def test_every_variable_set_is_read_by_the_service_parses_and_secrets_come_from_secrets(
    docs: list[dict[str, Any]],
) -> None:
    # `_parse` and not `Settings.from_env`: from_env copies its mapping into a dict first (to
    # merge the keys file), which would hide the look-ups. With every variable unset, _parse
    # looks each one up once with `get` (service/config.py reads nothing else from the
    # environment).
    environ = mock.Mock(spec=["get"])
    environ.get.side_effect = lambda name, default=None: default
    config._parse(environ)
    readable = {call.args[0] for call in environ.get.call_args_list}
    assert {"DATABASE_URL", "API_TOKEN", "SHUTDOWN_TIMEOUT", "PORT"} <= readable
    spec = pod_spec(docs)
    assert spec.get("enableServiceLinks") is False, "service links add variables"
    (container,) = spec["containers"]
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, "only the ConfigMap, whose keys we see"
        assert not source.get("prefix")
        names |= set(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    assert names
    assert names <= readable, sorted(names - readable)
    settings = effective_settings(docs)
    assert settings.log_format == "json"
    assert settings.log_file is None, "the root filesystem is read-only"

    assert not [d for d in docs if d["kind"] == "Secret"], "the repository holds no Secret"
    secret_names = {"DATABASE_URL", *SECRET_VARS}
    assert not secret_names & set(one(docs, "ConfigMap")["data"])
    by_name = {e["name"]: e for e in container["env"]}
    for name in secret_names:
        assert name in by_name, f"{name} is not passed to the API"
        assert by_name[name]["valueFrom"].keys() == {"secretKeyRef"}, f"{name}: from a Secret"
        assert set(by_name[name]) == {"name", "valueFrom"}, f"{name} must come from a Secret"
    # Required: the database and the populate token. Optional: the X credentials (without them
    # the service serves its sample and says so).
    required = {n for n, e in by_name.items() if not e["valueFrom"]["secretKeyRef"].get("optional")}
    assert required == {"DATABASE_URL", "API_TOKEN"}


def test_the_container_is_the_images_with_its_probes_ports_and_scrape(
    docs: list[dict[str, Any]],
) -> None:
    container = api_container(docs)
    settings = effective_settings(docs)
    image = dockerfile()
    with (ROOT / "pyproject.toml").open("rb") as file:
        version = tomllib.load(file)["project"]["version"]
    assert not pod_spec(docs).get("initContainers")
    assert container["image"] == f"{image['image']}:{version}"
    assert container["imagePullPolicy"] == "IfNotPresent"
    # No command or args: the image's CMD (python -m service serve) runs.
    assert "command" not in container
    assert "args" not in container
    assert _parser().parse_args(["serve"]).command == "serve"
    (port,) = container["ports"]
    probes = {k: container[k] for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    # Readiness is the database; liveness the process only, as in the image's HEALTHCHECK
    # (test_observability_static.py): GET routes of the app, on the container's port.
    paths = {kind: probe["httpGet"]["path"] for kind, probe in probes.items()}
    assert paths == {"startupProbe": "/ready", "readinessProbe": "/ready", "livenessProbe": "/live"}
    assert "GET" in app_routes()["/ready"] & app_routes()["/live"]
    assert {probe["httpGet"]["port"] for probe in probes.values()} == {port["name"]}
    # /ready answers 503 within DB_TIMEOUT when the database does not answer; the probe waits
    # for that answer instead of timing out first.
    for kind in ("startupProbe", "readinessProbe"):
        assert probes[kind]["timeoutSeconds"] > settings.db_timeout
    assert port["containerPort"] == settings.port
    assert port["containerPort"] in image["expose"]
    service = one(docs, "Service")
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selects({"matchLabels": service["spec"]["selector"]}, labels)
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {port["name"]}
    # Annotation-based scraping where there is no ServiceMonitor (checked above).
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"].get("annotations")
    if annotations is None:
        assert any(d["kind"] == "ServiceMonitor" for d in docs)
    else:
        assert annotations["prometheus.io/path"] == "/metrics"
        assert "GET" in app_routes()["/metrics"]
        assert int(annotations["prometheus.io/port"]) == port["containerPort"]


def _path_match(kind: str, value: str, route: str) -> bool:
    # Exact matches the URL path exactly; the Ingress's Prefix and the Gateway API's PathPrefix
    # ("semantically equivalent", gateway-api apis/v1/httproute_types.go) match element by
    # element on "/": /api matches /api and /api/v1, not /apis (networking.k8s.io/v1
    # HTTPIngressPath).
    if kind == "Exact":
        return value == route
    elements = [e for e in value.split("/") if e]
    return [e for e in route.split("/") if e][: len(elements)] == elements


def test_the_entry_routes_the_api_and_the_page_and_nothing_internal_within_a_populate(
    docs: list[dict[str, Any]],
) -> None:
    # The public entry: the base's Ingress, or the HTTPRoute that replaces it.
    (route,) = [d for d in docs if d["kind"] in ("Ingress", "HTTPRoute")]
    service = one(docs, "Service")
    settings = cluster_settings()
    if route["kind"] == "Ingress":
        assert route["spec"]["ingressClassName"] == settings["ingressClass"]
        (rule,) = route["spec"]["rules"]
        assert rule["host"] == settings["host"]
        paths = [(p["pathType"], p["path"]) for p in rule["http"]["paths"]]
        backends = [p["backend"]["service"] for p in rule["http"]["paths"]]
        names = {p["name"] for p in service["spec"]["ports"]}
        assert all(b["port"]["name"] in names for b in backends)
    else:
        # Upstream: kubernetes-sigs/gateway-api v1.6.1, standard channel (its CRD in tests/crds/
        # checks the fields and GEP-2257's Duration pattern): `timeouts.request` bounds the
        # whole request (Extended).
        assert route["metadata"]["namespace"] == one(docs, "Namespace")["metadata"]["name"]
        (parent,) = route["spec"]["parentRefs"]
        assert parent.get("kind", "Gateway") == "Gateway"
        gateway = (settings["gatewayName"], settings["gatewayNamespace"])
        assert (parent["name"], parent["namespace"]) == gateway
        assert route["spec"]["hostnames"] == [settings["host"]]
        rules = route["spec"]["rules"]
        paths = [(m["path"]["type"], m["path"]["value"]) for r in rules for m in r["matches"]]
        backends = [b for r in rules for b in r["backendRefs"]]
        assert all(b.get("kind", "Service") == "Service" for b in backends)
        # A Service backend names the Service's port number (HTTPBackendRef `port`).
        assert all(b["port"] in {p["port"] for p in service["spec"]["ports"]} for b in backends)
        # The gateway waits for a populate to answer before it gives up: one wait for X's
        # rate-limit window (at most X_RATE_LIMIT_MAX_WAIT, else it answers 503:
        # service/sources/x.py), then the tags X_CONCURRENCY at a time (service/ingestion.py,
        # _fetch_all), one request of up to X_TIMEOUT per page of 100 (recent search's largest
        # page).
        s = effective_settings(docs)
        rounds = math.ceil(len(s.tags) / s.x_concurrency)
        pages = math.ceil(s.tweets_per_tag / 100)
        populate = s.x_rate_limit_max_wait + rounds * pages * s.x_timeout
        units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
        for rule in rules:
            timeout = re.findall(r"(\d+)(ms|h|m|s)", rule["timeouts"]["request"])
            assert sum(int(n) * units[unit] for n, unit in timeout) >= populate
    assert paths
    assert {kind for kind, _ in paths} <= {"Exact", "Prefix", "PathPrefix"}
    assert {b["name"] for b in backends} == {service["metadata"]["name"]}
    public = {r for r in app_routes() for kind, value in paths if _path_match(kind, value, r)}
    assert {"/api/v1/users", "/api/v1/populate", "/api/health", "/api/docs"} <= public
    # The dashboard page and its files.
    static = {r for r in app_routes() if r.startswith("/static/")}
    assert static
    assert {"/", *static} <= public
    assert not public & {"/metrics", "/live", "/ready"}


# --- availability, shutdown, sizing ----------------------------------------------------------


def test_replicas_spread_rollouts_keep_capacity_and_stops_populates_and_memory_fit(
    docs: list[dict[str, Any]],
) -> None:
    deployment = one(docs, "Deployment")
    spec = deployment["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert selects(spec["selector"], labels)
    assert "replicas" not in spec, "the HPA owns the count; apply would reset it"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert spec["strategy"]["rollingUpdate"]["maxSurge"] >= 1
    spread = {c["topologyKey"]: c for c in spec["template"]["spec"]["topologySpreadConstraints"]}
    hostname = spread["kubernetes.io/hostname"]
    assert hostname["whenUnsatisfiable"] == "DoNotSchedule"
    assert hostname["maxSkew"] == 1
    assert selects(hostname["labelSelector"], labels)
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = one(docs, "PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"], labels)
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]

    # The grace period outlasts aiohttp's graceful stop, counted from the start of preStop.
    settings = effective_settings(docs)
    pre_stop = api_container(docs)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop >= 5, "time for endpoint removal to reach kube-proxy and the gateway"
    worst = pre_stop + graceful_stop(settings)
    assert pod_spec(docs)["terminationGracePeriodSeconds"] >= worst + 5

    # POPULATE_INTERVAL, not a CronJob (deploy/kubernetes/README.md): the populate metrics then come
    # from a scraped replica, as the dashboards and the PopulateStale alert expect. X's recent
    # search allows 450 requests per 15 minutes per app: every replica may populate once per
    # interval (jittered down to 0.9 x), one request per tag and page of 100.
    assert settings.populate_interval > 0
    pages = -(-settings.tweets_per_tag // 100)
    runs = hpa["spec"]["maxReplicas"] * 900 / (0.9 * settings.populate_interval)
    assert runs * len(settings.tags) * pages <= 450

    # PostgreSQL's default max_connections is 100, 3 of them reserved for superusers.
    assert hpa["spec"]["maxReplicas"] * settings.db_pool_size <= 90

    resources = api_container(docs)["resources"]
    assert set(resources) == {"requests", "limits"}
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
    # 255 MiB measured at the largest populate (deploy/kubernetes/README.md): the limit leaves room.
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}  # a quantity of another form fails here
    mib = {k: int(v["memory"][:-2]) * units[v["memory"][-2:]] for k, v in resources.items()}
    assert mib["limits"] >= 2 * 255
    assert mib["requests"] >= 255
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"  # utilization is relative to the request


# --- security --------------------------------------------------------------------------------
# The "restricted" Pod Security Standard (https://kubernetes.io/docs/concepts/security/
# pod-security-standards/, "Restricted"), which the Namespace enforces at admission.

RESTRICTED_VOLUME_TYPES = {
    *("configMap", "csi", "downwardAPI", "emptyDir", "ephemeral"),
    *("persistentVolumeClaim", "projected", "secret"),
}


def test_pods_meet_the_restricted_pod_security_standard(docs: list[dict[str, Any]]) -> None:
    namespace = one(docs, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    image = dockerfile()
    spec = pod_spec(docs)
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": image["uid"],
        "runAsGroup": image["gid"],
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key), key
    assert spec.get("automountServiceAccountToken") is False
    for volume in spec.get("volumes", []):
        assert set(volume) - {"name"} <= RESTRICTED_VOLUME_TYPES, volume
    assert api_container(docs)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": True,
    }
    # strace of serve (migrations, populates, reads, SIGTERM) and of populate showed no file
    # written (deploy/kubernetes/README.md); /tmp is the one scratch space, small and bounded.
    mounts = {m["mountPath"]: m["name"] for m in api_container(docs)["volumeMounts"]}
    assert mounts == {"/tmp": "tmp"}  # noqa: S108 - the container's /tmp, not the test's
    assert [v["emptyDir"]["sizeLimit"] for v in spec["volumes"] if v["name"] == "tmp"]
    # DATA_DIR is the embedded PostgreSQL's, which a required DATABASE_URL rules out.
    assert image["env"]["DATA_DIR"] not in mounts


def test_network_policies_deny_by_default_and_allow_only_the_listed_peers(
    docs: list[dict[str, Any]],
) -> None:
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert all(selects(p["podSelector"], pod_labels) for p in policies.values())
    deny = policies.pop("hashtag-analytics-default-deny")
    assert deny.keys() == {"podSelector", "policyTypes"}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    # Ingress: on the container port only, from the entry's namespace (the Gateway's data plane,
    # or the ingress controller) and Prometheus's, as cluster.yaml names them.
    settings = cluster_settings()
    gateway = any(d["kind"] == "HTTPRoute" for d in docs)  # the entry test: it or an Ingress
    via = "gatewayDataPlaneNamespace" if gateway else "ingressNamespace"
    port = {"protocol": "TCP", "port": api_container(docs)["ports"][0]["containerPort"]}
    ingress = {name: p["ingress"] for name, p in policies.items() if "ingress" in p}
    for name, key in (("ingress", via), ("prometheus", "prometheusNamespace")):
        source = {"matchLabels": {"kubernetes.io/metadata.name": settings[key]}}
        rules = ingress.pop(f"hashtag-analytics-api-from-{name}")
        assert rules == [{"from": [{"namespaceSelector": source}], "ports": [port]}]
    assert ingress == {}
    # Egress: DNS, PostgreSQL (the Cluster's pods with CloudNativePG: test above), HTTPS; nothing
    # else.
    egress = {name: p["egress"] for name, p in policies.items() if "egress" in p}
    assert set(egress) == {f"hashtag-analytics-egress-{to}" for to in ("dns", "postgres", "x-api")}
    (postgres,) = egress["hashtag-analytics-egress-postgres"]
    assert postgres["to"], "an empty `to` allows every destination"
    assert postgres["ports"] == [{"protocol": "TCP", "port": 5432}]

    # DNS, and only in this policy: kube-dns's pods, and NodeLocal DNSCache's, which run on the
    # host network and answer on a link-local address (169.254.20.10 by default): its pods and
    # 169.254.0.0/16, no wider (kubernetes/kubernetes cluster/addons/dns/nodelocaldns/README.md,
    # "Network policy and DNS connectivity"; nodelocaldns.yaml for the label and -localip).
    (dns,) = one(docs, "NetworkPolicy", "hashtag-analytics-egress-dns")["spec"]["egress"]
    kube_system = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}
    }
    assert dns["to"] == [
        {**kube_system, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}},
        {**kube_system, "podSelector": {"matchLabels": {"k8s-app": "node-local-dns"}}},
        {"ipBlock": {"cidr": "169.254.0.0/16"}},
    ]
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}

    # HTTPS (the X API) anywhere but to private, shared (RFC 6598) and link-local addresses.
    (https,) = one(docs, "NetworkPolicy", "hashtag-analytics-egress-x-api")["spec"]["egress"]
    private = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"]
    assert https == {
        "to": [
            {"ipBlock": {"cidr": "0.0.0.0/0", "except": private}},
            {"ipBlock": {"cidr": "::/0", "except": ["fc00::/7", "fe80::/10"]}},
        ],
        "ports": [{"protocol": "TCP", "port": 443}],
    }


# --- no secret in the repository -------------------------------------------------------------

_URL_WITH_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://([^/\s:@]+):([^/\s@]+)@")
_LONG_RUN = re.compile(r"[A-Za-z0-9+/=_%-]{32,}")


def token_like(text: str) -> str | None:
    """A run of 32+ token characters with 3+ digits, either hex or mixing upper and lower case:
    API tokens, keys, hex and base64 secrets look so; paths, label keys and words do not."""
    for match in _LONG_RUN.finditer(text):
        found = match[0]
        if len(re.findall(r"\d", found)) < 3:
            continue
        hexadecimal = re.fullmatch(r"[0-9a-fA-F]+", found)
        if hexadecimal or (re.search(r"[A-Z]", found) and re.search(r"[a-z]", found)):
            return found
    return None


def test_no_secret_value_in_deploy_or_the_readme_whose_commands_match_the_manifests() -> None:
    files = [p for p in DEPLOY.rglob("*") if p.is_file()]
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not _URL_WITH_PASSWORD.search(text), f"{path}: a URL with a password"
        assert token_like(text) is None, f"{path}: a token-like string"
        for doc in yaml.safe_load_all(text) if path.suffix in (".yaml", ".yml") else ():
            assert doc.get("kind") != "Secret", f"{path}: a Secret"
            for node in walk(doc):
                if isinstance(node, dict) and node.get("name") in {"DATABASE_URL", *SECRET_VARS}:
                    assert "value" not in node, f"{path}: {node['name']} has a literal value"
    # The README's `kubectl create secret` command and URLs show placeholders (USER:PASSWORD).
    text = README.read_text(encoding="utf-8")
    assert "create secret generic" in text
    for user, password in _URL_WITH_PASSWORD.findall(text):
        assert user.isupper(), user
        assert password.isupper(), password
    assert token_like(text) is None

    # Its commands name the Secrets' keys and the image the manifests use: every Secret key the
    # manifests read (secretKeyRef, the ObjectStore's credentials).
    reads: dict[str, dict[str, bool]] = {}
    refs = [n for t in TARGETS for n in walk(render(t)) if isinstance(n, dict) and "key" in n]
    for ref in refs:
        assert set(ref) <= {"name", "key", "optional"}
        reads.setdefault(ref["name"], {})[ref["key"]] = bool(ref.get("optional"))
    # A Secret comes from a file only its owner reads (umask 077), written by the shell's own
    # printf from variables, and is applied idempotently: no value on a command line.
    assert "--from-literal" not in text
    made = re.findall(
        r"create secret generic (\S+) --from-env-file=(\S+) --dry-run=client -o yaml"
        r" \| kubectl apply --server-side --force-conflicts -f -",
        text,
    )
    cluster = one(render(DEPLOY / "overlays" / "cloudnativepg"), "Cluster")
    assert {name for name, _ in made} == set(reads) - {f"{cluster['metadata']['name']}-app"}
    for name, file in made:
        writes = re.findall(rf"\( umask 077 && printf '%s\\n' (.+) > {re.escape(file)} \)", text)
        pairs = [pair for written in writes for pair in re.findall(r'"(\w+)=([^"]*)"', written)]
        assert pairs, f"{name}: no file written"
        assert all(value.startswith("$") for _, value in pairs), "values come from the shell"
        assert {key for key, _ in pairs} <= set(reads[name])
        assert {key for key, optional in reads[name].items() if not optional} <= dict(pairs).keys()
    # Pods read a Secret at start: a change needs a restart of the Deployment.
    deployment = one(render(BASE), "Deployment")["metadata"]["name"]
    assert f"rollout restart deployment/{deployment}" in text
    # kind: the image built and loaded onto the node is the one the pods run.
    image = api_container(render(BASE))["image"]
    assert re.findall(r"kind load docker-image (\S+)", text) == [image]
    assert f"docker build -t {image} ." in text
