"""deploy/kubernetes: every kustomization rendered and validated, and held to the service.

No cluster and no kustomize binary are needed. The kustomizations keep to a subset of
kustomize that `render` below implements (deploy/kubernetes/base/kustomization.yaml lists it);
a kustomization using anything else fails here rather than being rendered wrongly. Built-in
kinds are validated strictly (no unknown field) against the OpenAPI schemas that
kubernetes-validate bundles, for the oldest and the newest Kubernetes we support; the custom
resources (CloudNativePG `Cluster`, Prometheus Operator `ServiceMonitor` and `PrometheusRule`)
have no schema in a registry package here, so they are checked for shape, citing the upstream
docs.

The rest ties the manifests to the code rather than to copied lists: the environment
variables come from service/config.py, the routes from the app's router, the image, user and
port from the Dockerfile, the job label from the dashboards.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import shlex
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate_utils
from packaging.version import Version

from service import config
from service.__main__ import _parser
from service.app import create_app
from service.config import SECRET_VARS, Settings
from tests.test_observability_static import (
    OPS_DASHBOARD,
    RULE_FILES,
    dashboard_exprs,
    dockerfile_instructions,
    load_json,
    load_yaml,
    promql_jobs,
    run,
    tool,
    walk,
)

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "kubernetes"
BASE = DEPLOY / "base"
OVERLAYS = sorted(path.parent for path in (DEPLOY / "overlays").glob("*/kustomization.yaml"))
TARGETS = [BASE, *OVERLAYS]
SCRAPE_CONFIG = DEPLOY / "prometheus" / "scrape-config.yml"

# The oldest Kubernetes the manifests support: the preStop `sleep` action is beta and on by
# default from 1.30 (KEP-3960, kubernetes/enhancements#3960: alpha 1.29, beta 1.30; "Kubernetes
# v1.33: Updates to Container Lifecycle", kubernetes.io blog, 2025-05-14). 1.29's schema has the
# field, but its API server drops it unless the feature gate is on: no preStop pause. The other
# newer fields used (topology spread matchLabelKeys and nodeTaintsPolicy, the PDB's
# unhealthyPodEvictionPolicy) are on by default from 1.27 or earlier.
OLDEST = "1.30"
NEWEST = str(Version(kubernetes_validate_utils.latest_version()).base_version).rsplit(".", 1)[0]
VERSIONS = (OLDEST, NEWEST)

CUSTOM_KINDS = {
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
# Kinds that take no namespace (kubectl api-resources --namespaced=false), among those the
# namespace transformer could meet here.
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "IngressClass",
        "PersistentVolume",
        "PriorityClass",
        "StorageClass",
    }
)


# --- the renderer ----------------------------------------------------------------------------

KUSTOMIZATION_FIELDS = frozenset(
    {"apiVersion", "kind", "namespace", "resources", "components", "images", "patches"}
)
COMPONENT_FIELDS = frozenset({"apiVersion", "kind", "resources", "patches"})


class RenderError(Exception):
    """The kustomization is outside the supported subset, or a patch does not apply."""


def render(directory: Path) -> list[dict[str, Any]]:
    """What `kubectl kustomize directory` prints, for the supported subset.

    Order, as kustomize's: the resources (a directory is rendered as a kustomization of its
    own), then each component (its resources added, then its patches applied to everything so
    far), then this kustomization's own transformers: patches, namespace, images (kustomize
    api/internal/target/kusttarget_configplugin.go runs the built-in transformers in that
    order). Output order is not kustomize's; nothing here depends on it.
    """
    spec = _kustomization(directory, "Kustomization", KUSTOMIZATION_FIELDS)
    documents: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        documents.extend(_resource(directory / entry))
    for entry in spec.get("components", []):
        component_dir = directory / entry
        component = _kustomization(component_dir, "Component", COMPONENT_FIELDS)
        for resource in component.get("resources", []):
            documents.extend(_resource(component_dir / resource))
        _patch(documents, component.get("patches", []))
    _patch(documents, spec.get("patches", []))
    if "namespace" in spec:
        _set_namespace(documents, spec["namespace"])
    _set_images(documents, spec.get("images", []))
    return documents


def _kustomization(directory: Path, kind: str, fields: frozenset[str]) -> dict[str, Any]:
    spec: dict[str, Any] = load_yaml(directory / "kustomization.yaml")
    if spec.get("kind", "Kustomization") != kind:
        raise RenderError(f"{directory}: expected kind {kind}, found {spec.get('kind')}")
    unsupported = set(spec) - fields
    if unsupported:
        raise RenderError(f"{directory}: unsupported kustomization fields {sorted(unsupported)}")
    return spec


def _resource(path: Path) -> list[dict[str, Any]]:
    if path.is_dir():
        return render(path)
    documents = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    for doc in documents:
        if not {"apiVersion", "kind", "metadata"} <= set(doc):
            raise RenderError(f"{path}: a resource needs apiVersion, kind and metadata")
    return documents


def _patch(documents: list[dict[str, Any]], patches: list[dict[str, Any]]) -> None:
    for patch in patches:
        if set(patch) != {"target", "patch"} or not set(patch["target"]) <= {"kind", "name"}:
            raise RenderError(f"only inline JSON 6902 patches with a kind/name target: {patch}")
        target = patch["target"]
        matched = [
            doc
            for doc in documents
            if doc["kind"] == target.get("kind", doc["kind"])
            and doc["metadata"]["name"] == target.get("name", doc["metadata"]["name"])
        ]
        if not matched:
            raise RenderError(f"patch target matches nothing: {target}")
        operations = yaml.safe_load(patch["patch"])
        if not isinstance(operations, list):
            raise RenderError(f"not a JSON 6902 patch (a list of operations): {patch['patch']}")
        for doc in matched:
            for operation in operations:
                json_patch(doc, operation)


def _pointer(path: str) -> list[str]:
    # RFC 6901: "" is the whole document; each token unescapes ~1 to / and then ~0 to ~.
    if path == "":
        return []
    if not path.startswith("/"):
        raise RenderError(f"not a JSON pointer: {path!r}")
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def _index(container: list[Any], token: str, *, append: bool) -> int:
    if append and token == "-":
        return len(container)
    if not re.fullmatch(r"0|[1-9]\d*", token):
        raise RenderError(f"not an array index: {token!r}")
    index = int(token)
    if index > len(container) or (index == len(container) and not append):
        raise RenderError(f"array index out of range: {token}")
    return index


def json_patch(document: dict[str, Any], operation: Mapping[str, Any]) -> None:
    """One RFC 6902 operation (add, remove, replace, test) applied in place."""
    op, tokens = operation["op"], _pointer(operation["path"])
    if op not in ("add", "remove", "replace", "test"):
        raise RenderError(f"unsupported JSON patch operation {op!r}")
    if not tokens:
        raise RenderError("operations on the whole document are not supported")
    parent: Any = document
    for token in tokens[:-1]:
        if isinstance(parent, list):
            parent = parent[_index(parent, token, append=False)]
        elif isinstance(parent, dict) and token in parent:
            parent = parent[token]
        else:
            raise RenderError(f"path not found: {operation['path']}")
    last = tokens[-1]
    if isinstance(parent, list):
        index = _index(parent, last, append=op == "add")
        if op == "add":
            parent.insert(index, copy.deepcopy(operation["value"]))
        elif op == "remove":
            del parent[index]
        elif op == "replace":
            parent[index] = copy.deepcopy(operation["value"])
        elif parent[index] != operation["value"]:
            raise RenderError(f"test failed at {operation['path']}: {parent[index]!r}")
        return
    if not isinstance(parent, dict):
        raise RenderError(f"path not found: {operation['path']}")
    if op != "add" and last not in parent:
        raise RenderError(f"path not found: {operation['path']}")
    if op in ("add", "replace"):
        parent[last] = copy.deepcopy(operation["value"])
    elif op == "remove":
        del parent[last]
    elif parent[last] != operation["value"]:
        raise RenderError(f"test failed at {operation['path']}: {parent[last]!r}")


def _set_namespace(documents: list[dict[str, Any]], namespace: str) -> None:
    # kustomize sets metadata.namespace on namespaced objects and renames Namespace objects to
    # the namespace (api/filters/namespace/namespace.go).
    for doc in documents:
        if doc["kind"] == "Namespace":
            doc["metadata"]["name"] = namespace
        elif doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = namespace


def _set_images(documents: list[dict[str, Any]], images: list[dict[str, Any]]) -> None:
    # kustomize's image transformer: an image whose name (before any tag or digest) equals
    # `name` gets `newName`, `newTag` or `digest` (api/filters/imagetag).
    for image in images:
        if not set(image) <= {"name", "newName", "newTag", "digest"}:
            raise RenderError(f"unsupported images entry {image}")
        for container in _containers_anywhere(documents):
            name, tag, digest = split_image(container["image"])
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            if "digest" in image:
                tag, digest = None, image["digest"]
            elif "newTag" in image:
                tag, digest = image["newTag"], None
            container["image"] = (
                name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
            )


def split_image(reference: str) -> tuple[str, str | None, str | None]:
    """name[:tag][@digest]; a port in the registry host is part of the name."""
    name, _, digest = reference.partition("@")
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest or None


def _containers_anywhere(documents: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for doc in documents:
        for node in walk(doc):
            if isinstance(node, dict):
                for key in ("containers", "initContainers"):
                    for container in node.get(key) or []:
                        if isinstance(container, dict) and "image" in container:
                            yield container


# --- the renderer on cases whose kustomize output is documented -----------------------------


def _write(directory: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_render_applies_components_patches_namespace_and_images(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "base/kustomization.yaml": "resources: [ns.yaml, cm.yaml, pod.yaml]\n",
            "base/ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
            "base/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: v}\n",
            "base/pod.yaml": "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"
            "spec: {containers: [{name: x, image: 'app'}, {name: y, image: 'other:1'}]}\n",
            "comp/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1alpha1\n"
            "kind: Component\nresources: [extra.yaml]\npatches:\n"
            "  - target: {kind: ConfigMap, name: c}\n"
            "    patch: |-\n"
            "      - {op: test, path: /data/k, value: v}\n"
            "      - {op: add, path: /data/a~1b, value: '1'}\n"
            "      - {op: remove, path: /data/k}\n",
            "comp/extra.yaml": "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: s}\n",
            "top/kustomization.yaml": "namespace: b\nresources: [../base]\n"
            "components: [../comp]\nimages: [{name: app, newName: reg:5000/app, newTag: '2'}]\n",
        },
    )
    docs = {(d["kind"], d["metadata"]["name"]): d for d in render(tmp_path / "top")}
    assert set(docs) == {
        ("Namespace", "b"),
        ("ConfigMap", "c"),
        ("Pod", "p"),
        ("ServiceAccount", "s"),
    }
    assert "namespace" not in docs["Namespace", "b"]["metadata"]
    assert {d["metadata"].get("namespace") for k, d in docs.items() if k[0] != "Namespace"} == {"b"}
    assert docs["ConfigMap", "c"]["data"] == {"a/b": "1"}
    images = [c["image"] for c in docs["Pod", "p"]["spec"]["containers"]]
    assert images == ["reg:5000/app:2", "other:1"]


@pytest.mark.parametrize(
    ("operation", "message"),
    [
        ({"op": "test", "path": "/data/k", "value": "w"}, "test failed"),
        ({"op": "replace", "path": "/data/missing", "value": "w"}, "path not found"),
        ({"op": "move", "from": "/data/k", "path": "/data/j"}, "unsupported"),
        ({"op": "add", "path": "/list/3", "value": 1}, "out of range"),
    ],
)
def test_json_patch_refuses_what_kustomize_refuses(operation: dict[str, Any], message: str) -> None:
    document: dict[str, Any] = {"data": {"k": "v"}, "list": [1, 2]}
    with pytest.raises(RenderError, match=message):
        json_patch(document, operation)


def test_json_patch_appends_with_a_dash_and_inserts_at_an_index() -> None:
    document: dict[str, Any] = {"list": [1, 3]}
    json_patch(document, {"op": "add", "path": "/list/-", "value": 4})
    json_patch(document, {"op": "add", "path": "/list/1", "value": 2})
    assert document == {"list": [1, 2, 3, 4]}


def test_render_refuses_fields_outside_the_subset(tmp_path: Path) -> None:
    _write(tmp_path, {"kustomization.yaml": "resources: []\ncommonLabels: {a: b}\n"})
    with pytest.raises(RenderError, match="commonLabels"):
        render(tmp_path)


@pytest.mark.parametrize("target", TARGETS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_render_matches_kustomize_where_installed(target: Path) -> None:
    # The renderer against the real thing, where a kubectl with kustomize is on PATH (none is
    # installed by the project; the tests above do not need one).
    kubectl = tool("kubectl")
    # stdout only: kubectl may print warnings on stderr.
    result = subprocess.run(
        [kubectl, "kustomize", str(target)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    real = [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    def canonical(documents: list[dict[str, Any]]) -> list[str]:
        return sorted(json.dumps(doc, sort_keys=True) for doc in documents)

    assert canonical(render(target)) == canonical(real)


@pytest.mark.parametrize(
    ("reference", "parts"),
    [
        ("app", ("app", None, None)),
        ("app:1.0", ("app", "1.0", None)),
        ("reg:5000/team/app", ("reg:5000/team/app", None, None)),
        ("reg:5000/app:1@sha256:ab", ("reg:5000/app", "1", "sha256:ab")),
    ],
)
def test_split_image(reference: str, parts: tuple[str, str | None, str | None]) -> None:
    assert split_image(reference) == parts


# --- what the service is: routes, variables, Dockerfile ------------------------------------


class _Recorder(Mapping[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.names.add(key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def service_variables() -> set[str]:
    """Every environment variable the service reads: the names Settings looks up.

    `_parse` and not `Settings.from_env`: from_env copies its mapping into a dict first (to
    merge the keys file), which would hide the look-ups. With every variable unset, _parse
    looks each one up once (service/config.py reads nothing else from the environment).
    """
    recorder = _Recorder()
    config._parse(recorder)
    return recorder.names


def routes() -> dict[str, set[str]]:
    """Path -> methods, from the app's own router (create_app does no I/O)."""
    found: dict[str, set[str]] = {}
    for route in create_app(Settings()).router.routes():
        if route.resource is not None:
            found.setdefault(route.resource.canonical, set()).add(route.method)
    return found


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
        "healthcheck": " ".join(a for kind, a in instructions if kind == "HEALTHCHECK"),
        "image": name[1],
    }


def project_version() -> str:
    import tomllib

    with (ROOT / "pyproject.toml").open("rb") as file:
        version: str = tomllib.load(file)["project"]["version"]
    return version


def dashboard_jobs() -> set[str]:
    """The job labels the operations dashboard and the alert rules select for the API."""
    exprs = dashboard_exprs(load_json(OPS_DASHBOARD))
    exprs += [
        rule["expr"]
        for path in RULE_FILES
        for g in load_yaml(path)["groups"]
        for rule in g["rules"]
    ]
    return {job for expr in exprs for job in promql_jobs(expr)}


# --- rendered manifests: helpers -------------------------------------------------------------


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            yield doc["metadata"]["name"], doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif doc["kind"] == "Pod":
            yield doc["metadata"]["name"], doc["spec"]


def api_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def config_data(docs: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = one(docs, "ConfigMap")["data"]
    return data


def effective_settings(docs: list[dict[str, Any]]) -> Settings:
    """Settings as a pod would build them from the ConfigMap (the Secret's values made up)."""
    environ = {**dockerfile()["env"], **config_data(docs)}
    environ["DATABASE_URL"] = "postgresql://user:made-up@db.example:5432/tweets"
    return Settings.from_env(environ, keys_file=Path("/nonexistent"))


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are used"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


@pytest.fixture(scope="module", params=TARGETS, ids=lambda p: str(p.relative_to(DEPLOY)))
def docs(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(request.param)


# --- schemas ---------------------------------------------------------------------------------


def test_every_overlay_is_found() -> None:
    names = {path.name for path in OVERLAYS}
    assert {"cloudnativepg", "servicemonitor"} <= names


def test_every_kustomization_is_rendered_by_a_target() -> None:
    # Components are rendered through the overlays that use them; nothing is left untested.
    used: set[Path] = set()
    for target in TARGETS:
        spec = load_yaml(target / "kustomization.yaml")
        used.add(target)
        used.update((target / c).resolve() for c in spec.get("components", []))
    every = {path.parent.resolve() for path in DEPLOY.rglob("kustomization.yaml")}
    assert every == {path.resolve() for path in used}


def test_the_supported_versions_are_bundled() -> None:
    bundled = {v.rsplit(".", 1)[0] for v in kubernetes_validate_utils.all_versions()}
    assert {OLDEST, NEWEST} <= bundled
    assert Version(NEWEST) > Version(OLDEST)


@pytest.mark.parametrize("version", VERSIONS)
def test_manifests_validate_strictly(docs: list[dict[str, Any]], version: str) -> None:
    checked = 0
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue
        try:
            validated = kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(p) for p in error.path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} ({version}): {where}: {error}")
        assert validated == version
        checked += 1
    assert checked >= 10


def test_only_known_custom_resources(docs: list[dict[str, Any]]) -> None:
    # Anything kubernetes-validate has no schema for must be one of the two CRDs checked below.
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, NEWEST, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"no schema for {doc['apiVersion']} {doc['kind']}")


def test_manifest_files_parse_and_name_their_kind() -> None:
    for path in DEPLOY.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert doc, f"{path}: empty document"
            assert "kind" in doc, path


# --- CloudNativePG Cluster: shape ------------------------------------------------------------
# Upstream: cloudnative-pg/cloudnative-pg docs/src/cloudnative-pg.v1.md (API reference) and
# config/crd/bases/postgresql.cnpg.io_clusters.yaml: `spec.instances` is required (integer,
# minimum 1); `storage.size` a quantity; `bootstrap.initdb.database`/`owner` name the
# application database and its owner; `postgresql.parameters` maps names to string values.

CLUSTER_SPEC_FIELDS = {"instances", "storage", "bootstrap", "postgresql", "imageName"}


def test_cloudnativepg_cluster_shape_and_wiring() -> None:
    docs = render(DEPLOY / "overlays" / "cloudnativepg")
    cluster = one(docs, "Cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["metadata"]["namespace"] == one(docs, "Namespace")["metadata"]["name"]
    spec = cluster["spec"]
    assert set(spec) <= CLUSTER_SPEC_FIELDS
    assert isinstance(spec["instances"], int)
    assert spec["instances"] >= 2, "a standby to fail over to"
    assert set(spec["storage"]) <= {"size", "storageClass"}
    assert re.fullmatch(r"\d+(Mi|Gi|Ti)", spec["storage"]["size"])
    assert set(spec["bootstrap"]) == {"initdb"}
    assert set(spec["bootstrap"]["initdb"]) == {"database", "owner"}
    parameters = spec["postgresql"]["parameters"]
    assert all(isinstance(v, str) for v in parameters.values())

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


# --- ServiceMonitor: shape -------------------------------------------------------------------
# Upstream: prometheus-operator/prometheus-operator Documentation/api-reference/api.md
# (ServiceMonitorSpec, Endpoint, RelabelConfig) and example/prometheus-operator-crd/
# monitoring.coreos.com_servicemonitors.yaml: `spec.selector` is required; jobLabel names the
# Service label whose value becomes `job` (the Service's name when absent); an endpoint's
# `port` is the name of a Service port.

SERVICEMONITOR_SPEC_FIELDS = {
    "jobLabel",
    "targetLabels",
    "podTargetLabels",
    "endpoints",
    "selector",
    "namespaceSelector",
    "sampleLimit",
}
ENDPOINT_FIELDS = {
    "port",
    "targetPort",
    "path",
    "scheme",
    "params",
    "interval",
    "scrapeTimeout",
    "honorLabels",
    "honorTimestamps",
    "relabelings",
    "metricRelabelings",
}
RELABEL_FIELDS = {"sourceLabels", "separator", "targetLabel", "regex", "modulus", "replacement"}


def test_servicemonitor_shape_and_labels() -> None:
    docs = render(DEPLOY / "overlays" / "servicemonitor")
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    spec = monitor["spec"]
    assert set(spec) <= SERVICEMONITOR_SPEC_FIELDS
    assert selects(spec["selector"], service["metadata"]["labels"])
    # The job label the dashboards and alert rules select.
    assert "api" in dashboard_jobs()
    assert service["metadata"]["labels"][spec["jobLabel"]] == "api"
    port_names = {port["name"] for port in service["spec"]["ports"]}
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= ENDPOINT_FIELDS
        assert endpoint["port"] in port_names
        assert "GET" in routes()[endpoint["path"]]
        assert (
            endpoint["interval"]
            == load_yaml(ROOT / "observability/prometheus/prometheus.yml")["global"][
                "scrape_interval"
            ]
        )
        for relabel in endpoint.get("relabelings", []):
            assert set(relabel) <= RELABEL_FIELDS
        targets = {r["targetLabel"]: r for r in endpoint.get("relabelings", [])}
        assert targets["instance"]["sourceLabels"] == ["__meta_kubernetes_pod_name"]
    # Scraped once: the annotations for annotation-based discovery are gone in this overlay.
    template = one(docs, "Deployment")["spec"]["template"]
    assert not any(
        k.startswith("prometheus.io/") for k in template["metadata"].get("annotations", {})
    )


def test_prometheusrule_carries_the_compose_alert_rules_unchanged() -> None:
    # PrometheusRuleSpec is `groups` only; a RuleGroup is the rule file's group (api.md).
    docs = render(DEPLOY / "overlays" / "servicemonitor")
    rule = one(docs, "PrometheusRule")
    assert rule["metadata"]["namespace"] == one(docs, "Namespace")["metadata"]["name"]
    assert set(rule["spec"]) == {"groups"}
    groups = [group for path in RULE_FILES for group in load_yaml(path)["groups"]]
    assert rule["spec"]["groups"] == groups
    assert {r["alert"] for g in groups for r in g["rules"]} >= {"ApiDown", "PopulateStale"}


def test_annotation_scrape_config_gives_the_dashboards_their_labels() -> None:
    scrape = load_yaml(SCRAPE_CONFIG)["scrape_configs"]
    assert len(scrape) == 1
    job = scrape[0]
    assert job["job_name"] == "api"
    assert "api" in dashboard_jobs()
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


def test_annotation_scrape_config_relabelling_is_valid_for_promtool(tmp_path: Path) -> None:
    # Debian's Prometheus (the promtool CI installs) is built without Kubernetes service
    # discovery and refuses kubernetes_sd_configs, so promtool checks the rest of the job (the
    # relabelling above all) with the discovery swapped for a static target.
    promtool = tool("promtool")
    scrape = load_yaml(SCRAPE_CONFIG)
    (job,) = scrape["scrape_configs"]
    assert job.pop("kubernetes_sd_configs")[0]["role"] == "pod"
    job["static_configs"] = [{"targets": ["127.0.0.1:8080"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(scrape), encoding="utf-8")
    run(promtool, "check", "config", path)


def test_scrape_annotations_match_the_metrics_route(docs: list[dict[str, Any]]) -> None:
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"].get("annotations")
    if annotations is None:  # the ServiceMonitor overlays, checked above
        assert any(d["kind"] == "ServiceMonitor" for d in docs)
        return
    assert annotations["prometheus.io/path"] == "/metrics"
    assert "GET" in routes()["/metrics"]
    ports = {p["containerPort"] for p in api_container(docs)["ports"]}
    assert int(annotations["prometheus.io/port"]) in ports


# --- the service's contract: variables, secrets, routes, ports, image ----------------------


def test_every_variable_set_is_one_the_service_reads(docs: list[dict[str, Any]]) -> None:
    readable = service_variables()
    assert {"DATABASE_URL", "API_TOKEN", "SHUTDOWN_TIMEOUT", "PORT"} <= readable
    for name, spec in pod_specs(docs):
        assert spec.get("enableServiceLinks") is False, f"{name}: service links add variables"
        for container in spec["containers"]:
            names = {e["name"] for e in container.get("env", [])}
            for source in container.get("envFrom", []):
                assert set(source) == {"configMapRef"}, "only the ConfigMap, whose keys we see"
                assert not source.get("prefix")
                names |= set(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
            assert names, name
            assert names <= readable, sorted(names - readable)


def test_configuration_values_are_valid_settings(docs: list[dict[str, Any]]) -> None:
    settings = effective_settings(docs)
    assert settings.log_format == "json"
    assert settings.log_file is None, "the root filesystem is read-only"


def test_secrets_come_only_from_secret_references(docs: list[dict[str, Any]]) -> None:
    assert not [d for d in docs if d["kind"] == "Secret"], "the repository holds no Secret"
    secret_names = {"DATABASE_URL", *SECRET_VARS}
    assert not secret_names & set(config_data(docs))
    env = api_container(docs)["env"]
    by_name = {e["name"]: e for e in env}
    for name in secret_names:
        assert name in by_name, f"{name} is not passed to the API"
        assert set(by_name[name]) == {"name", "valueFrom"}, f"{name} must come from a Secret"
        assert set(by_name[name]["valueFrom"]) == {"secretKeyRef"}
    # Required: the database and the populate token. Optional: the X credentials (without them
    # the service serves its sample and says so).
    required = {n for n, e in by_name.items() if not e["valueFrom"]["secretKeyRef"].get("optional")}
    assert required == {"DATABASE_URL", "API_TOKEN"}


def test_probes_use_the_services_routes(docs: list[dict[str, Any]]) -> None:
    container = api_container(docs)
    get_paths = {path for path, methods in routes().items() if "GET" in methods}
    probes = {
        kind: container[kind]["httpGet"]
        for kind in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    for probe in probes.values():
        assert probe["path"] in get_paths
        assert probe["port"] in {p["name"] for p in container["ports"]}
    # Readiness is the database; liveness the process only, as in the image's HEALTHCHECK.
    assert probes["startupProbe"]["path"] == "/ready"
    assert probes["readinessProbe"]["path"] == "/ready"
    assert probes["livenessProbe"]["path"] == "/live"
    assert "/live" in dockerfile()["healthcheck"]


def test_probe_timeouts_outlast_the_database_timeout(docs: list[dict[str, Any]]) -> None:
    # /ready answers 503 within DB_TIMEOUT when the database does not answer; the probe waits
    # for that answer instead of timing out first.
    container = api_container(docs)
    db_timeout = effective_settings(docs).db_timeout
    for kind in ("startupProbe", "readinessProbe"):
        assert container[kind]["timeoutSeconds"] > db_timeout


def test_ports_match_the_dockerfile_and_the_configuration(docs: list[dict[str, Any]]) -> None:
    container = api_container(docs)
    (port,) = container["ports"]
    assert port["containerPort"] == effective_settings(docs).port
    assert port["containerPort"] in dockerfile()["expose"]
    service = one(docs, "Service")
    assert selects(
        {"matchLabels": service["spec"]["selector"]},
        one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"],
    )
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {port["name"]}


def _prefix_match(prefix: str, path: str) -> bool:
    # Ingress pathType Prefix matches element by element on "/" (networking.k8s.io/v1
    # HTTPIngressPath): /api matches /api and /api/v1, not /apis.
    elements = [e for e in prefix.split("/") if e]
    return [e for e in path.split("/") if e][: len(elements)] == elements


def _ingress_match(path: dict[str, Any], route: str) -> bool:
    # pathType Exact matches the URL path exactly (networking.k8s.io/v1 HTTPIngressPath).
    if path["pathType"] == "Exact":
        return bool(path["path"] == route)
    return _prefix_match(path["path"], route)


def test_ingress_routes_the_api_and_the_page_and_nothing_internal(
    docs: list[dict[str, Any]],
) -> None:
    ingress = one(docs, "Ingress")
    service = one(docs, "Service")
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert paths
    public = set()
    for path in paths:
        assert path["pathType"] in {"Prefix", "Exact"}
        assert path["backend"]["service"]["name"] == service["metadata"]["name"]
        assert path["backend"]["service"]["port"]["name"] in {
            p["name"] for p in service["spec"]["ports"]
        }
        public |= {route for route in routes() if _ingress_match(path, route)}
    assert {"/api/v1/users", "/api/v1/populate", "/api/health", "/api/docs"} <= public
    # The dashboard page and its files.
    assert {"/", *(r for r in routes() if r.startswith("/static/"))} <= public
    assert any(r.startswith("/static/") for r in routes())
    assert not public & {"/metrics", "/live", "/ready"}


def test_prefix_match_is_element_wise() -> None:
    assert _prefix_match("/api", "/api/v1/users")
    assert _prefix_match("/api", "/api")
    assert not _prefix_match("/api", "/apis")
    assert not _prefix_match("/api", "/metrics")


def test_image_is_the_one_the_dockerfile_builds(docs: list[dict[str, Any]]) -> None:
    expected = f"{dockerfile()['image']}:{project_version()}"
    images = {c["image"] for c in _containers_anywhere(docs)}
    assert images == {expected}
    for _, spec in pod_specs(docs):
        for container in spec["containers"]:
            assert container["imagePullPolicy"] == "IfNotPresent"
            # No command or args: the image's CMD (python -m service serve) runs.
            assert "command" not in container
            assert "args" not in container
    assert ("CMD", '["python", "-m", "service", "serve"]') in dockerfile_instructions()
    assert _parser().parse_args(["serve"]).command == "serve"


# --- availability, shutdown, sizing ----------------------------------------------------------


def test_replicas_spread_across_nodes_and_rollouts_keep_capacity(
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


def test_termination_grace_covers_prestop_shutdown_and_pool_close(
    docs: list[dict[str, Any]],
) -> None:
    # After SIGTERM the service stops accepting, gives requests and a populate in flight
    # SHUTDOWN_TIMEOUT, then cancels the populate (it rolls back) and closes the pool within
    # DB_TIMEOUT (service/__main__.py serve, service/app.py _stop_populates, database_ctx).
    # The grace period counts from the start of preStop.
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    pre_stop = api_container(docs)["lifecycle"]["preStop"]["sleep"]["seconds"]
    settings = effective_settings(docs)
    assert pre_stop >= 5, "time for endpoint removal to reach kube-proxy and the ingress"
    needed = pre_stop + settings.shutdown_timeout + settings.db_timeout
    assert spec["terminationGracePeriodSeconds"] >= needed


def test_scheduled_populates_run_in_the_replicas(docs: list[dict[str, Any]]) -> None:
    # POPULATE_INTERVAL, not a CronJob (README, "Kubernetes"): the populate metrics then come
    # from a scraped replica, as the dashboards and the PopulateStale alert expect.
    assert not [d for d in docs if d["kind"] in ("CronJob", "Job")]
    settings = effective_settings(docs)
    assert settings.populate_interval > 0
    # X's recent search allows 450 requests per 15 minutes per app (/work/shared/X_API.md):
    # every replica may populate once per interval (jittered down to 0.9 x), one request per
    # tag and page of 100.
    hpa = one(docs, "HorizontalPodAutoscaler")
    pages = -(-settings.tweets_per_tag // 100)
    runs = hpa["spec"]["maxReplicas"] * 900 / (0.9 * settings.populate_interval)
    assert runs * len(settings.tags) * pages <= 450


def test_database_connections_fit_postgresql_defaults(docs: list[dict[str, Any]]) -> None:
    # PostgreSQL's default max_connections is 100, 3 of them reserved for superusers.
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["maxReplicas"] * effective_settings(docs).db_pool_size <= 90


def test_resources_are_requested_and_limited(docs: list[dict[str, Any]]) -> None:
    resources = api_container(docs)["resources"]
    assert set(resources) == {"requests", "limits"}
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
    # 255 MiB measured at the largest populate (README, "Kubernetes"): the limit leaves room.
    assert _mebibytes(resources["limits"]["memory"]) >= 2 * 255
    assert _mebibytes(resources["requests"]["memory"]) >= 255
    hpa = one(docs, "HorizontalPodAutoscaler")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"  # utilization is relative to the request


def _mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", quantity)
    assert match, quantity
    return int(match[1]) * units[match[2]]


# --- security --------------------------------------------------------------------------------
# The "restricted" Pod Security Standard (https://kubernetes.io/docs/concepts/security/
# pod-security-standards/, "Restricted"), which the Namespace enforces at admission.

RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def test_pods_meet_the_restricted_pod_security_standard(docs: list[dict[str, Any]]) -> None:
    namespace = one(docs, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    image = dockerfile()
    for name, spec in pod_specs(docs):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert (pod["runAsUser"], pod["runAsGroup"]) == (image["uid"], image["gid"])
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(key), f"{name}: {key}"
        assert spec.get("automountServiceAccountToken") is False
        for volume in spec.get("volumes", []):
            assert set(volume) - {"name"} <= RESTRICTED_VOLUME_TYPES, volume
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert not context.get("privileged")


def test_only_the_measured_writable_paths_are_mounted(docs: list[dict[str, Any]]) -> None:
    # strace of serve (migrations, populates, reads, SIGTERM) and of populate showed no file
    # written (README, "Kubernetes"); /tmp is the one scratch space, small and bounded.
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in api_container(docs)["volumeMounts"]}
    assert mounts == {"/tmp": "tmp"}  # noqa: S108 - the container's /tmp, not the test's
    assert volumes["tmp"]["emptyDir"]["sizeLimit"]
    # DATA_DIR is the embedded PostgreSQL's, which a required DATABASE_URL rules out.
    assert dockerfile()["env"]["DATA_DIR"] not in mounts


def test_network_policies_deny_by_default_and_allow_only_the_listed_peers(
    docs: list[dict[str, Any]],
) -> None:
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    applying = [p for p in policies if selects(p["spec"]["podSelector"], pod_labels)]
    assert len(applying) == len(policies)
    deny = [p for p in applying if "ingress" not in p["spec"] and "egress" not in p["spec"]]
    assert len(deny) == 1
    assert set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    # Ingress: from namespaces (the ingress controller, Prometheus), on the container port only.
    container_port = api_container(docs)["ports"][0]["containerPort"]
    ingress_sources = set()
    for policy in applying:
        for rule in policy["spec"].get("ingress", []):
            assert rule["ports"] == [{"protocol": "TCP", "port": container_port}]
            for peer in rule["from"]:
                assert set(peer) == {"namespaceSelector"}, peer
                ingress_sources.add(
                    peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                )
    assert ingress_sources == {"ingress-nginx", "monitoring"}
    # Egress: DNS, PostgreSQL, HTTPS; nothing else.
    egress_ports = set()
    for policy in applying:
        for rule in policy["spec"].get("egress", []):
            assert rule["to"], "an empty `to` allows every destination"
            assert rule["ports"]
            egress_ports |= {(p["protocol"], p["port"]) for p in rule["ports"]}
    assert egress_ports == {("UDP", 53), ("TCP", 53), ("TCP", 5432), ("TCP", 443)}


def test_dns_egress_goes_to_kube_dns_only(docs: list[dict[str, Any]]) -> None:
    policy = one(docs, "NetworkPolicy", "hashtag-analytics-egress-dns")
    (rule,) = policy["spec"]["egress"]
    assert rule["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    assert {(p["protocol"], p["port"]) for p in rule["ports"]} == {("UDP", 53), ("TCP", 53)}


def test_https_egress_excludes_private_addresses(docs: list[dict[str, Any]]) -> None:
    policy = one(docs, "NetworkPolicy", "hashtag-analytics-egress-x-api")
    (rule,) = policy["spec"]["egress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 443}]
    private = [
        ipaddress.ip_network(n)
        for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
    ]
    for peer in rule["to"]:
        block = peer["ipBlock"]
        excluded = [ipaddress.ip_network(e) for e in block.get("except", [])]
        network = ipaddress.ip_network(block["cidr"])
        for net in private:
            if net.version == network.version:
                assert any(net.subnet_of(e) for e in excluded if e.version == net.version), net  # type: ignore[arg-type]


# --- no secret in the repository -------------------------------------------------------------

_URL_WITH_PASSWORD = re.compile(
    r"\b[a-z][a-z0-9+.-]*://(?P<user>[^/\s:@]+):(?P<password>[^/\s@]+)@"
)
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


def test_no_secret_value_in_deploy() -> None:
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


@pytest.mark.parametrize(
    "text",
    [
        "DATABASE_URL: postgresql://app:hunter2@db:5432/tweets",
        "token: AAAAAAAAAAAAAAAAAAAAAMLheAAAAAAA0%2BuSeid%2BULvsea4JtiGRiSDSJSI",
        "API_TOKEN: 94c0c25f1054e396e6d7789116797e613a6b0373",
        "key: ExuXF2gNm/EIBheORc+Mk3FF8ETiVYpM7+txbmpY",
    ],
)
def test_the_secret_scan_finds_what_it_looks_for(text: str) -> None:
    assert _URL_WITH_PASSWORD.search(text) or token_like(text)


def test_readme_shows_the_secret_command_without_values() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Kubernetes", 1)[1].split("\n## ", 1)[0]
    command = re.search(r"kubectl .*create secret generic (\S+)((?:.*\\\n)*.*)", section)
    assert command, "README: the `kubectl create secret generic` command"
    docs = render(BASE)
    env = api_container(docs)["env"]
    names = {e["valueFrom"]["secretKeyRef"]["name"] for e in env}
    assert names == {command[1]}
    assert f"-n {one(docs, 'Namespace')['metadata']['name']} " in command[0]
    for entry in env:
        key = entry["valueFrom"]["secretKeyRef"]["key"]
        if not entry["valueFrom"]["secretKeyRef"].get("optional"):
            # A value from a variable or a command, never a literal in the README.
            assert re.search(rf'--from-literal={key}="\$', command[0]), key
    # A URL in the text shows its credentials as placeholders (USER:PASSWORD) only.
    for url in _URL_WITH_PASSWORD.finditer(section):
        assert url["user"].isupper(), url[0]
        assert url["password"].isupper(), url[0]
    assert token_like(section) is None
