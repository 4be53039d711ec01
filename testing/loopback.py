"""127.0.0.1 for the tests and the bench: free ports, one HTTP request, and the compose stack's
HAProxy and Prometheus configs rendered for processes listening there.

The files under observability/ are written for docker-compose: services find each other by
name (`haproxy:8080`, `blackbox:9115`) and the API replicas through Docker's DNS. The native
stack test (tests/stack/) and the benchmarks (bench/) run the same configs against processes
on 127.0.0.1. `render_haproxy` replaces only the lines marked `# loopback: <name>`;
`render_prometheus` turns DNS discovery into a static list, service addresses into loopback
ports and rule files into absolute paths. Both fail loudly on anything they do not know, so a
new address cannot slip through unrendered. The blackbox config has no addresses.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
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


# --- ports and requests --------------------------------------------------------------------


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that were free on 127.0.0.1 a moment ago.

    All sockets are held open until every port is chosen, so the kernel cannot hand out the
    same port twice; a port can still be taken by someone else before the child binds it.
    """
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """The first header called `name`, case-insensitively."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
    source: str | None = None,
) -> Response:
    """One HTTP request to 127.0.0.1; any status is an answer. `source` sends it from another
    loopback address (all of 127.0.0.0/8 is local on Linux), so a proxy sees another client."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname != LOOPBACK or parts.port is None:
        raise ValueError(f"requests go to http://{LOOPBACK}:<port> only, not {url}")
    connection = http.client.HTTPConnection(
        LOOPBACK,
        parts.port,
        timeout=timeout,
        source_address=(source, 0) if source is not None else None,
    )
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request(method, target, body=body, headers=dict(headers or {}))
        answer = connection.getresponse()
        return Response(answer.status, tuple(answer.getheaders()), answer.read())
    finally:
        connection.close()
