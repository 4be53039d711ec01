"""The repository's configuration files as the config tests read them: paths, loaders, compose's
variable interpolation, the Dockerfile's instructions, Filebeat's input, the checkers (haproxy,
promtool, kubectl, ...) found on PATH, and how long the service takes to stop."""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, cast

import pytest
import yaml
from aiohttp import web, web_protocol, web_runner

from service.__main__ import serve
from service.app import _stop_writers, create_app, database_ctx
from service.config import Settings

ROOT = Path(__file__).resolve().parent.parent
OBSERVABILITY = ROOT / "observability"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PROMETHEUS_DIR = OBSERVABILITY / "prometheus"
PROMETHEUS_YML = PROMETHEUS_DIR / "prometheus.yml"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
OPS_DASHBOARD = ROOT / "grafana_dashboard.json"
FILEBEAT_YML = OBSERVABILITY / "filebeat" / "filebeat.yml"
KIBANA_DIR = OBSERVABILITY / "kibana"
INDEX_TEMPLATE = OBSERVABILITY / "elasticsearch" / "index-template.json"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, Mapping):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Beats settings: `a: {b: 1}` and `a.b: 1` are the same key."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def tool(*names: str) -> str:
    """The first of `names` on PATH. Missing, the test skips on a developer machine and fails
    in CI (CI=true), whose machines have them all."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{names[0]} not installed")
    pytest.skip(f"{names[0]} not installed")


def app_routes() -> dict[str, set[str]]:
    """Path -> methods, from the app's own router (create_app does no I/O)."""
    found: dict[str, set[str]] = {}
    for route in create_app(Settings()).router.routes():
        if route.resource is not None:
            found.setdefault(route.resource.canonical, set()).add(route.method)
    return found


def run(*args: str | Path) -> str:
    result = subprocess.run(
        [str(arg) for arg in args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stderr}"
    return result.stdout + result.stderr


def sh(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`sh ARGS` in exactly `env`; any exit status is an answer."""
    return subprocess.run(
        ["sh", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


# --- docker-compose.yml ----------------------------------------------------------------------

_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>\w+))"
)


def _interpolate(node: Any, env: Mapping[str, str]) -> Any:
    """Compose's interpolation of string values after parsing ($$, ${VAR}, ${VAR:-default},
    ${VAR-default}, ${VAR:?error}, ${VAR?error}); a missing required variable is a KeyError."""

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

    if isinstance(node, str):
        return _INTERPOLATION.sub(substitute, node)
    if isinstance(node, Mapping):
        return {key: _interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate(value, env) for value in node]
    return node


def compose_variables() -> dict[str, str | None]:
    """Variable -> its interpolation operator (None for a plain ${VAR})."""
    return {
        match["name"] or match["bare"]: match["op"]
        for match in _INTERPOLATION.finditer(COMPOSE_FILE.read_text(encoding="utf-8"))
        if not match["escaped"]
    }


def required_placeholders() -> dict[str, str]:
    return {name: "placeholder" for name, op in compose_variables().items() if op in ("?", ":?")}


def compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose file as `docker compose config` sees it; by default with the required
    variables set to placeholders."""
    env = required_placeholders() if env is None else env
    return cast(dict[str, Any], _interpolate(load_yaml(COMPOSE_FILE), env))


def services() -> dict[str, dict[str, Any]]:
    return cast(dict[str, dict[str, Any]], compose()["services"])


def env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    pairs = [line.partition("=") for line in lines if line.strip() and not line.startswith("#")]
    return {name.strip(): value.strip() for name, _, value in pairs}


def volume_mounts(service: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read-only) of every mount, short or long compose syntax."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            parts = volume.split(":")
            source, target = parts[0], parts[1] if len(parts) > 1 else parts[0]
            mounts.append((source, target, len(parts) > 2 and "ro" in parts[2].split(",")))
        else:
            mounts.append(
                (volume.get("source", ""), volume["target"], bool(volume.get("read_only")))
            )
    return mounts


def shipped_log_dir() -> tuple[str, str]:
    """(volume, the directory Filebeat reads it at): where the api service's LOG_FILE lands,
    followed through the named volume the api and filebeat services share."""
    api, beat = services()["api"], services()["filebeat"]
    log_dir = str(PurePosixPath(api["environment"]["LOG_FILE"]).parent)
    [volume] = [source for source, target, _ in volume_mounts(api) if target == log_dir]
    [beat_dir] = [target for source, target, _ in volume_mounts(beat) if source == volume]
    return volume, beat_dir


# --- Dockerfile, Filebeat, Elasticsearch -----------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\s*\\\n(\s*#.*\n)*\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines()]
    split = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return [(kind.upper(), arguments) for kind, arguments in split]


def filebeat() -> dict[str, Any]:
    return cast(dict[str, Any], load_yaml(FILEBEAT_YML))


def the_input() -> dict[str, Any]:
    [single] = filebeat()["filebeat.inputs"]
    return cast(dict[str, Any], single)


def ndjson() -> dict[str, Any]:
    [parser] = the_input()["parsers"]
    return cast(dict[str, Any], parser["ndjson"])


def template() -> dict[str, Any]:
    return cast(dict[str, Any], load_json(INDEX_TEMPLATE))


# --- Grafana and Prometheus ------------------------------------------------------------------


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


def promql_jobs(expr: str) -> set[str]:
    return set(re.findall(r'\bjob\s*=\s*"([^"]*)"', expr))


def graceful_stop(settings: Settings) -> float:
    """The longest the service can take from SIGTERM to exit, from aiohttp's sequence.

    `serve` gives run_app SHUTDOWN_TIMEOUT as its shutdown_timeout; on SIGTERM run_app runs the
    installed aiohttp's BaseRunner.cleanup (web_runner.py): the sites stop, on_shutdown runs (where
    the app stops a populate or a compliance pass, both within one grace), then the server's
    shutdown(shutdown_timeout), then the cleanup contexts (where the pool closes). The server's
    shutdown, per connection (web_protocol.py, RequestHandler.shutdown), waits for a request in
    progress, cancels it and waits again, each wait a ceil_timeout(timeout) (helpers.py: its
    deadline rounded up to a whole second).
    """
    calls: list[dict[str, Any]] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(web, "run_app", lambda app, **kwargs: calls.append(kwargs))
        serve(settings)
    assert calls[0]["shutdown_timeout"] == settings.shutdown_timeout
    app = create_app(settings)
    assert _stop_writers in app.on_shutdown
    assert database_ctx in app.cleanup_ctx
    cleanup = inspect.getsource(web_runner.BaseRunner.cleanup)
    steps = [
        "site.stop()",
        "await self.shutdown()",
        "self._server.shutdown(self._shutdown_timeout)",
        "await self._cleanup_server()",
    ]
    at = [cleanup.index(step) for step in steps]
    assert at == sorted(at)
    waits = inspect.getsource(web_protocol.RequestHandler.shutdown).count("ceil_timeout(timeout)")
    assert waits >= 1
    return (
        # on_shutdown: a populate's grace, then the cancelled run's rollback and failure
        # record, statements bounded by DB_TIMEOUT (service/ingestion.py, Populator.stop).
        settings.shutdown_timeout
        + settings.db_timeout
        + waits * (settings.shutdown_timeout + 1)
        # cleanup: database_ctx closes the pool within DB_TIMEOUT (service/db.py, close_pool).
        + settings.db_timeout
    )
