"""Render the compose stack's config files for processes listening on 127.0.0.1.

The files under observability/ are written for docker-compose: services find each other by
name (`haproxy:8080`, `blackbox:9115`) and the API replicas through Docker's DNS. A native
test runs the same files against haproxy, prometheus and the blackbox exporter on loopback;
these functions rewrite only what has to change and fail loudly on anything they do not know,
so a new address in a config file cannot slip through unrendered.

- HAProxy: lines ending in `# loopback: <name>` are replaced (see `render_haproxy`).
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
from urllib.parse import urlsplit, urlunsplit

import yaml

LOOPBACK: Final = "127.0.0.1"

# `<indent><directive>  # loopback: <name>`
_MARKER: Final = re.compile(
    r"^(?P<indent>[ \t]*)(?P<body>\S.*?)[ \t]+#[ \t]*loopback:[ \t]*(?P<name>[\w-]+)[ \t]*$"
)


class RenderError(ValueError):
    """A config file does not have the shape the renderer expects."""


@dataclass(frozen=True, slots=True)
class LoopbackPorts:
    """Where each compose service listens on 127.0.0.1."""

    api: tuple[int, ...]
    haproxy: int
    haproxy_stats: int
    prometheus: int
    blackbox: int

    def __post_init__(self) -> None:
        ports = [*self.api, self.haproxy, self.haproxy_stats, self.prometheus, self.blackbox]
        if not self.api:
            raise ValueError("at least one API port is needed")
        if len(set(ports)) != len(ports):
            raise ValueError(f"ports must be distinct: {ports}")
        if not all(0 < port < 65536 for port in ports):
            raise ValueError(f"ports must be within 1..65535: {ports}")

    def addresses(self) -> dict[str, tuple[str, ...]]:
        """Compose address -> the loopback address(es) serving it."""
        return {
            "api:8080": tuple(f"{LOOPBACK}:{port}" for port in self.api),
            "haproxy:8080": (f"{LOOPBACK}:{self.haproxy}",),
            "haproxy:8404": (f"{LOOPBACK}:{self.haproxy_stats}",),
            "prometheus:9090": (f"{LOOPBACK}:{self.prometheus}",),
            # Prometheus scrapes itself as localhost:9090 in its container.
            "localhost:9090": (f"{LOOPBACK}:{self.prometheus}",),
            "blackbox:9115": (f"{LOOPBACK}:{self.blackbox}",),
        }


def loopback_addresses(address: str, ports: LoopbackPorts) -> tuple[str, ...]:
    """`haproxy:8080` -> (`127.0.0.1:<port>`,); `api:8080` gives one address per replica."""
    try:
        return ports.addresses()[address]
    except KeyError:
        raise RenderError(f"no loopback mapping for {address!r}") from None


def loopback_address(address: str, ports: LoopbackPorts) -> str:
    """Like `loopback_addresses`, for an address that must map to exactly one listener."""
    mapped = loopback_addresses(address, ports)
    if len(mapped) != 1:
        raise RenderError(f"{address!r} maps to {len(mapped)} addresses where one is needed")
    return mapped[0]


def loopback_url(url: str, ports: LoopbackPorts) -> str:
    """`http://haproxy:8080/api/health` -> `http://127.0.0.1:<port>/api/health`."""
    parts = urlsplit(url)
    if not parts.netloc:
        raise RenderError(f"{url!r} is not an absolute URL")
    return urlunsplit(parts._replace(netloc=loopback_address(parts.netloc, ports)))


# --- HAProxy -------------------------------------------------------------------------------

HAPROXY_MARKERS: Final = frozenset({"http", "stats", "api-servers"})


def _haproxy_lines(name: str, ports: LoopbackPorts) -> list[str]:
    if name == "http":
        return [f"bind {LOOPBACK}:{ports.haproxy}"]
    if name == "stats":
        return [f"bind {LOOPBACK}:{ports.haproxy_stats}"]
    if name == "api-servers":
        # Static servers: no resolvers, so nothing queries Docker's DNS at 127.0.0.11.
        return [
            f"server api{n} {address} check"
            for n, address in enumerate(loopback_addresses("api:8080", ports), start=1)
        ]
    raise RenderError(f"unknown loopback marker {name!r} in haproxy.cfg")


def render_haproxy(text: str, ports: LoopbackPorts) -> str:
    """Replace each line marked `# loopback: <name>`; every known marker must occur once."""
    seen: list[str] = []
    out: list[str] = []
    for line in text.splitlines():
        match = _MARKER.match(line)
        if match is None:
            out.append(line)
            continue
        name = match["name"]
        seen.append(name)
        out.extend(match["indent"] + rendered for rendered in _haproxy_lines(name, ports))
    missing = sorted(HAPROXY_MARKERS.difference(seen))
    if missing:
        raise RenderError(f"haproxy.cfg lacks the loopback marker(s) {missing}")
    repeated = sorted({name for name in seen if seen.count(name) > 1})
    if repeated:
        raise RenderError(f"haproxy.cfg repeats the loopback marker(s) {repeated}")
    return "\n".join(out) + "\n"


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
