"""Loopback addresses for the compose stack's services, and HAProxy's config rendered for them.

The files under observability/ are written for docker-compose: services find each other by
name (`haproxy:8080`, `blackbox:9115`) and the API replicas through Docker's DNS. The native
stack test (tests/stack/) and the benchmarks (bench/) run the same HAProxy config against
processes on 127.0.0.1; `render_haproxy` replaces only the lines marked `# loopback: <name>`
and fails loudly on anything it does not know, so a new address cannot slip through
unrendered. The Prometheus side, which needs PyYAML (a dev dependency), stays in
tests/stack/render.py.
"""

from __future__ import annotations

import contextlib
import re
import socket
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit, urlunsplit

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
