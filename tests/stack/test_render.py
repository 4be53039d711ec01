"""The loopback renderer: what it rewrites, what it keeps, and what it refuses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.testing.loopback import (
    LOOPBACK,
    LoopbackPorts,
    RenderError,
    loopback_address,
    loopback_url,
    render_haproxy,
)
from tests.stack.render import render_prometheus, render_stack

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "observability"
PORTS = LoopbackPorts(
    api=(18081, 18082), haproxy=18080, haproxy_stats=18404, prometheus=19090, blackbox=19115
)

HAPROXY_SNIPPET = """\
frontend public
    bind :8080  # loopback: http
    default_backend api
backend api
    server-template api 2 api:8080 check resolvers docker init-addr none  # loopback: api-servers
frontend operator
    bind :8404  # loopback: stats
"""


def _jobs(rendered: str) -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(rendered)
    return {job["job_name"]: job for job in config["scrape_configs"]}


def _targets(job: dict[str, Any]) -> list[str]:
    return [target for group in job.get("static_configs", []) for target in group["targets"]]


def test_loopback_ports_reject_duplicates() -> None:
    with pytest.raises(ValueError, match="distinct"):
        LoopbackPorts(api=(1, 2), haproxy=2, haproxy_stats=3, prometheus=4, blackbox=5)


def test_loopback_ports_need_an_api_port() -> None:
    with pytest.raises(ValueError, match="API port"):
        LoopbackPorts(api=(), haproxy=1, haproxy_stats=3, prometheus=4, blackbox=5)


def test_loopback_address_maps_known_services() -> None:
    assert loopback_address("haproxy:8080", PORTS) == f"{LOOPBACK}:18080"
    assert loopback_address("haproxy:8404", PORTS) == f"{LOOPBACK}:18404"
    assert loopback_address("blackbox:9115", PORTS) == f"{LOOPBACK}:19115"
    assert loopback_address("localhost:9090", PORTS) == f"{LOOPBACK}:19090"


def test_loopback_address_refuses_unknown_and_ambiguous() -> None:
    with pytest.raises(RenderError, match="no loopback mapping"):
        loopback_address("grafana:3000", PORTS)
    with pytest.raises(RenderError, match="2 addresses"):
        loopback_address("api:8080", PORTS)


def test_loopback_url_keeps_path_and_query() -> None:
    assert (
        loopback_url("http://haproxy:8080/api/v1/users?limit=5", PORTS)
        == f"http://{LOOPBACK}:18080/api/v1/users?limit=5"
    )


def test_render_haproxy_replaces_marked_lines_only() -> None:
    rendered = render_haproxy(HAPROXY_SNIPPET, PORTS)
    assert rendered.splitlines() == [
        "frontend public",
        f"    bind {LOOPBACK}:18080",
        "    default_backend api",
        "backend api",
        f"    server api1 {LOOPBACK}:18081 check",
        f"    server api2 {LOOPBACK}:18082 check",
        "frontend operator",
        f"    bind {LOOPBACK}:18404",
    ]


def test_render_haproxy_refuses_missing_marker() -> None:
    text = HAPROXY_SNIPPET.replace("  # loopback: stats", "")
    with pytest.raises(RenderError, match="lacks"):
        render_haproxy(text, PORTS)


def test_render_haproxy_refuses_unknown_marker() -> None:
    with pytest.raises(RenderError, match="unknown loopback marker 'dns'"):
        render_haproxy(
            HAPROXY_SNIPPET + "    nameserver dns 127.0.0.11:53  # loopback: dns\n", PORTS
        )


def test_render_haproxy_refuses_repeated_marker() -> None:
    with pytest.raises(RenderError, match="repeats"):
        render_haproxy(HAPROXY_SNIPPET + "    bind :8081  # loopback: http\n", PORTS)


def test_render_haproxy_repo_file_leaves_no_docker_address() -> None:
    rendered = render_haproxy((OBSERVABILITY / "haproxy" / "haproxy.cfg").read_text(), PORTS)
    assert "server-template" not in rendered
    assert re.search(r"#\s*loopback:\s*[\w-]+\s*$", rendered, re.MULTILINE) is None
    assert "api:8080" not in rendered
    assert f"server api2 {LOOPBACK}:18082 check" in rendered


def test_render_prometheus_turns_dns_discovery_into_static_targets() -> None:
    text = """
scrape_configs:
  - job_name: api
    dns_sd_configs:
      - names: [api]
        type: A
        port: 8080
"""
    jobs = _jobs(render_prometheus(text, PORTS, config_dir=Path("/etc/prometheus")))
    assert "dns_sd_configs" not in jobs["api"]
    assert _targets(jobs["api"]) == [f"{LOOPBACK}:18081", f"{LOOPBACK}:18082"]


def test_render_prometheus_refuses_srv_records_and_other_discovery() -> None:
    srv = "scrape_configs: [{job_name: a, dns_sd_configs: [{names: [_api._tcp]}]}]"
    with pytest.raises(RenderError, match="type A"):
        render_prometheus(srv, PORTS, config_dir=Path("/x"))
    files = "scrape_configs: [{job_name: a, file_sd_configs: [{files: [a.json]}]}]"
    with pytest.raises(RenderError, match="file_sd_configs"):
        render_prometheus(files, PORTS, config_dir=Path("/x"))


def test_render_prometheus_makes_rule_files_absolute(tmp_path: Path) -> None:
    text = "rule_files: [rules/*.yml, /abs/other.yml]\nscrape_configs: []\n"
    config = yaml.safe_load(render_prometheus(text, PORTS, config_dir=tmp_path))
    assert config["rule_files"] == [str(tmp_path.resolve() / "rules" / "*.yml"), "/abs/other.yml"]


def test_render_prometheus_repo_file_points_every_job_at_loopback() -> None:
    prometheus_dir = OBSERVABILITY / "prometheus"
    rendered = render_prometheus(
        (prometheus_dir / "prometheus.yml").read_text(), PORTS, config_dir=prometheus_dir
    )
    jobs = _jobs(rendered)
    assert _targets(jobs["prometheus"]) == [f"{LOOPBACK}:19090"]
    assert _targets(jobs["haproxy"]) == [f"{LOOPBACK}:18404"]
    assert _targets(jobs["api"]) == [f"{LOOPBACK}:18081", f"{LOOPBACK}:18082"]
    probes = _targets(jobs["blackbox"])
    assert probes
    assert all(target.startswith(f"http://{LOOPBACK}:18080/") for target in probes)
    replacement = [
        rule["replacement"]
        for rule in jobs["blackbox"]["relabel_configs"]
        if rule.get("target_label") == "__address__"
    ]
    assert replacement == [f"{LOOPBACK}:19115"]
    for name in ("haproxy:", "blackbox:", "api:", "localhost:"):
        assert name not in rendered


def test_render_stack_writes_configs(tmp_path: Path) -> None:
    stack = render_stack(ROOT, tmp_path / "out", PORTS)
    assert stack.haproxy_cfg.read_text().count(f"bind {LOOPBACK}:") == 2
    assert "static_configs" in stack.prometheus_yml.read_text()
    assert stack.blackbox_yml == OBSERVABILITY / "blackbox" / "blackbox.yml"


def test_render_prometheus_shortens_every_interval() -> None:
    text = """
global:
  scrape_interval: 15s
  scrape_timeout: 10s
  evaluation_interval: 15s
  external_labels: {a: b}
scrape_configs:
  - job_name: slow
    scrape_interval: 30s
    static_configs: [{targets: ["haproxy:8404"]}]
  - job_name: default
    static_configs: [{targets: ["blackbox:9115"]}]
"""
    config = yaml.safe_load(render_prometheus(text, PORTS, config_dir=Path("/x"), interval="1s"))
    assert config["global"] == {
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "evaluation_interval": "1s",
        "external_labels": {"a": "b"},
    }
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["slow"]["scrape_interval"] == "1s"
    assert "scrape_interval" not in jobs["default"]


def test_render_prometheus_keeps_intervals_by_default() -> None:
    text = "global: {scrape_interval: 15s}\nscrape_configs: []\n"
    config = yaml.safe_load(render_prometheus(text, PORTS, config_dir=Path("/x")))
    assert config["global"] == {"scrape_interval": "15s"}


def test_render_prometheus_refuses_a_bad_interval() -> None:
    with pytest.raises(RenderError, match="duration"):
        render_prometheus("scrape_configs: []\n", PORTS, config_dir=Path("/x"), interval="1")


def test_render_stack_passes_the_interval_on(tmp_path: Path) -> None:
    stack = render_stack(ROOT, tmp_path / "out", PORTS, interval="2s")
    config = yaml.safe_load(stack.prometheus_yml.read_text())
    assert config["global"]["scrape_interval"] == "2s"
    assert all(job.get("scrape_interval", "2s") == "2s" for job in config["scrape_configs"])
