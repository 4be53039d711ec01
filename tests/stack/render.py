"""Render the compose stack's config files for processes listening on 127.0.0.1.

The loopback addresses and HAProxy's config come from service/testing/loopback.py, which the
benchmarks share; this module adds the rest of the set for the native stack test:

- Prometheus: DNS discovery becomes a static list, service addresses become loopback ports,
  and rule files are made absolute (see `render_prometheus`). A test may also shorten every
  scrape and evaluation interval, so it sees data within seconds instead of minutes.
- The blackbox config has no addresses; it is used as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from service.testing.loopback import (
    LoopbackPorts,
    RenderError,
    loopback_address,
    loopback_addresses,
    loopback_url,
    render_haproxy,
)

# --- Prometheus ----------------------------------------------------------------------------


def _static_from_dns(job: str, sd: Mapping[str, Any], ports: LoopbackPorts) -> dict[str, Any]:
    if sd.get("type", "SRV") != "A" or "port" not in sd:
        raise RenderError(f"job {job!r}: only dns_sd_configs of type A with a port are rendered")
    targets: list[str] = []
    for name in sd["names"]:
        targets.extend(loopback_addresses(f"{name}:{sd['port']}", ports))
    return {"targets": targets}


def _map_target(target: str, ports: LoopbackPorts) -> list[str]:
    if "://" in target:
        return [loopback_url(target, ports)]
    return list(loopback_addresses(target, ports))


def _render_job(job: dict[str, Any], ports: LoopbackPorts) -> dict[str, Any]:
    name = job["job_name"]
    unknown = {key for key in job if key.endswith("_sd_configs")} - {"dns_sd_configs"}
    if unknown:
        raise RenderError(f"job {name!r}: cannot render {sorted(unknown)}")
    rendered = dict(job)
    static = [
        {**group, "targets": [t for target in group["targets"] for t in _map_target(target, ports)]}
        for group in job.get("static_configs", [])
    ]
    static.extend(_static_from_dns(name, sd, ports) for sd in rendered.pop("dns_sd_configs", []))
    if static:
        rendered["static_configs"] = static
    relabels = []
    for rule in job.get("relabel_configs", []):
        rule = dict(rule)
        # The blackbox pattern: `__address__` is replaced by the exporter's address.
        if rule.get("target_label") == "__address__" and "replacement" in rule:
            rule["replacement"] = loopback_address(rule["replacement"], ports)
        relabels.append(rule)
    if relabels:
        rendered["relabel_configs"] = relabels
    return rendered


_DURATION: Final = re.compile(r"^(?:\d+(?:ms|s|m|h))+$")


def _set_interval(config: dict[str, Any], interval: str) -> None:
    """Every scrape and evaluation interval (and scrape timeout, which may not exceed its
    interval) becomes `interval`: the global ones and each job's own."""
    if not _DURATION.match(interval):
        raise RenderError(f"{interval!r} is not a Prometheus duration")
    global_ = dict(config.get("global") or {})
    for key in ("scrape_interval", "scrape_timeout", "evaluation_interval"):
        global_[key] = interval
    config["global"] = global_
    for job in config.get("scrape_configs", []):
        for key in ("scrape_interval", "scrape_timeout"):
            if key in job:
                job[key] = interval


def render_prometheus(
    text: str, ports: LoopbackPorts, *, config_dir: Path, interval: str | None = None
) -> str:
    """Return prometheus.yml for loopback; `config_dir` is where the original file lives, so
    its relative `rule_files` still resolve when the result is written elsewhere. With
    `interval` (e.g. "1s"), every scrape and rule evaluation runs that often."""
    config = yaml.safe_load(text)
    if not isinstance(config, dict):
        raise RenderError("prometheus.yml is not a mapping")
    config["rule_files"] = [
        str((config_dir / pattern).resolve()) if not Path(pattern).is_absolute() else pattern
        for pattern in config.get("rule_files", [])
    ]
    config["scrape_configs"] = [_render_job(job, ports) for job in config.get("scrape_configs", [])]
    if interval is not None:
        _set_interval(config, interval)
    return str(yaml.safe_dump(config, sort_keys=False))


# --- the whole set -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RenderedStack:
    haproxy_cfg: Path
    prometheus_yml: Path
    blackbox_yml: Path


def render_stack(
    repo: Path, out_dir: Path, ports: LoopbackPorts, *, interval: str | None = None
) -> RenderedStack:
    """Write the rendered HAProxy and Prometheus configs to `out_dir`; blackbox is used in place.
    `interval` goes to `render_prometheus`."""
    observability = repo / "observability"
    prometheus_dir = observability / "prometheus"
    out_dir.mkdir(parents=True, exist_ok=True)
    haproxy_cfg = out_dir / "haproxy.cfg"
    haproxy_cfg.write_text(
        render_haproxy(
            (observability / "haproxy" / "haproxy.cfg").read_text(encoding="utf-8"), ports
        ),
        encoding="utf-8",
    )
    prometheus_yml = out_dir / "prometheus.yml"
    prometheus_yml.write_text(
        render_prometheus(
            (prometheus_dir / "prometheus.yml").read_text(encoding="utf-8"),
            ports,
            config_dir=prometheus_dir,
            interval=interval,
        ),
        encoding="utf-8",
    )
    return RenderedStack(
        haproxy_cfg=haproxy_cfg,
        prometheus_yml=prometheus_yml,
        blackbox_yml=observability / "blackbox" / "blackbox.yml",
    )
