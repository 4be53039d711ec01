"""The compose stack, natively on 127.0.0.1: PostgreSQL, two API replicas, HAProxy, the blackbox
exporter and Prometheus, each started from the repository's own config files.

What differs from docker-compose.yml, and why:
- PostgreSQL is the embedded server (pgserver) on a Unix socket. The compose init script
  (observability/postgres/initdb/10-roles.sh) runs against it, so the replicas connect and
  migrate as `app`, and `analyst` gets its grants from the migration, as in compose.
- HAProxy and Prometheus configs go through testing/loopback.py (loopback addresses, static
  API servers, 1 s intervals); the blackbox config is used as it is.
- The replicas serve the bundled sample (TWEET_SOURCE=sample): nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import psycopg2
from prometheus_client.parser import text_string_to_metric_families

from testing.loopback import (
    LOOPBACK,
    LoopbackPorts,
    Response,
    free_ports,
    render_haproxy,
    render_prometheus,
    request,
)
from testing.processes import Process, ProcessError, Processes, serve_command
from tests.database import start_embedded

ROOT: Final = Path(__file__).resolve().parents[2]
OBSERVABILITY: Final = ROOT / "observability"
ROLES_SCRIPT: Final = OBSERVABILITY / "postgres" / "initdb" / "10-roles.sh"
NODE_BIN: Final = ROOT / ".ci" / "node" / "node_modules" / ".bin"
INTERVAL: Final = "1s"
STARTUP_TIMEOUT: Final = 60.0
APP_DATABASE: Final = "tweets"


class StackError(ProcessError):
    """A tool is missing, a setup step failed, or Prometheus answered with an error."""


def require_tool(*names: str, hint: str) -> str:
    """The first of `names` found on PATH or in NODE_BIN; StackError naming it otherwise."""
    search = f"{os.environ.get('PATH', os.defpath)}{os.pathsep}{NODE_BIN}"
    for name in names:
        if found := shutil.which(name, path=search):
            return found
    raise StackError(f"{names[0]} is not installed; {hint}")


@dataclass(frozen=True, slots=True)
class Tools:
    haproxy: str
    prometheus: str
    blackbox: str
    newman: str

    @classmethod
    def find(cls) -> Tools:
        debian = "apt-get install haproxy prometheus prometheus-blackbox-exporter (as .ci/run does)"
        return cls(
            haproxy=require_tool("haproxy", hint=debian),
            prometheus=require_tool("prometheus", hint=debian),
            blackbox=require_tool("prometheus-blackbox-exporter", "blackbox_exporter", hint=debian),
            newman=require_tool(
                "newman", hint="npm install --prefix .ci/node newman@6 (as .ci/run does)"
            ),
        )


@dataclass
class Replica:
    name: str
    port: int
    log_file: Path
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def get(self, path: str) -> Response:
        """A request straight to this replica, bypassing HAProxy."""
        return request("GET", self.url + path)

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON lines of LOG_FILE (a line that is not JSON raises)."""
        text = self.log_file.read_text(encoding="utf-8") if self.log_file.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass
class Database:
    server: Any  # the pgserver handle
    parent: Path  # the temporary directory holding the data directory
    socket_dir: str
    app_password: str
    analyst_password: str

    def url(self, user: str, database: str = APP_DATABASE) -> str:
        password = {"app": self.app_password, "analyst": self.analyst_password}.get(user, "")
        host = urllib.parse.quote(self.socket_dir, safe="/")
        return f"postgresql://{user}:{password}@/{database}?host={host}"

    def query(self, user: str, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """(column names, rows) of one statement, in its own connection as `user`."""
        with contextlib.closing(psycopg2.connect(self.url(user))) as conn, conn.cursor() as cur:
            cur.execute(sql)
            columns = [column.name for column in cur.description or ()]
            return columns, list(cur.fetchall()) if cur.description else []


@dataclass
class NativeStack:
    directory: Path
    tools: Tools
    api_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    processes: Processes = field(init=False)
    ports: LoopbackPorts = field(init=False)
    replicas: list[Replica] = field(init=False)
    database: Database = field(init=False)
    haproxy_cfg: Path = field(init=False)
    prometheus_yml: Path = field(init=False)
    haproxy: Process = field(init=False)

    def __post_init__(self) -> None:
        self.processes = Processes(self.directory)
        api1, api2, haproxy, stats, prometheus, blackbox = free_ports(6)
        self.ports = LoopbackPorts(
            api=(api1, api2),
            haproxy=haproxy,
            haproxy_stats=stats,
            prometheus=prometheus,
            blackbox=blackbox,
        )
        self.replicas = [
            Replica(name=f"api-{n}", port=port, log_file=self.directory / f"api-{n}.log")
            for n, port in enumerate(self.ports.api, start=1)
        ]

    # --- URLs ------------------------------------------------------------------------------

    @property
    def public_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.haproxy}"

    def _url(self, port: int, path: str) -> str:
        return f"http://{LOOPBACK}:{port}{path}"

    def public(self, method: str, path: str, **kwargs: Any) -> Response:
        return request(method, self.public_url + path, **kwargs)

    def prometheus_api(self, path: str, **params: str) -> Any:
        """`data` of a Prometheus HTTP API answer; StackError unless its status is success."""
        query = urllib.parse.urlencode(params)
        answer = request("GET", self._url(self.ports.prometheus, f"/api/v1/{path}?{query}"))
        body = answer.json()
        if answer.status != 200 or body.get("status") != "success" or body.get("warnings"):
            raise StackError(f"Prometheus /api/v1/{path} {params}: {answer.status} {body}")
        return body["data"]

    def promql(self, expr: str) -> Any:
        return self.prometheus_api("query", query=expr)

    # --- start and stop --------------------------------------------------------------------

    def start(self) -> None:
        self.database = self._start_database()
        self._render_configs()
        self._start_replicas()
        # Without POPULATE_RATE_LIMIT from the shell: the config's default applies, which the
        # rate limit test reads.
        self.haproxy = self.processes.start(
            "haproxy",
            [self.tools.haproxy, "-db", "-f", str(self.haproxy_cfg)],
            env={k: v for k, v in os.environ.items() if k != "POPULATE_RATE_LIMIT"},
        )
        blackbox = self.processes.start(
            "blackbox",
            [
                self.tools.blackbox,
                f"--config.file={OBSERVABILITY / 'blackbox' / 'blackbox.yml'}",
                f"--web.listen-address={LOOPBACK}:{self.ports.blackbox}",
            ],
        )
        prometheus = self.processes.start(
            "prometheus",
            [
                self.tools.prometheus,
                f"--config.file={self.prometheus_yml}",
                f"--storage.tsdb.path={self.directory / 'prometheus-data'}",
                f"--web.listen-address={LOOPBACK}:{self.ports.prometheus}",
            ],
        )
        self.processes.wait_for(
            "HAProxy sees both API servers up",
            lambda: self.haproxy_servers_up() == {"api1", "api2"},
            timeout=STARTUP_TIMEOUT,
            watch=[self.haproxy],
        )
        self.processes.wait_for(
            "the blackbox exporter is healthy",
            lambda: request("GET", self._url(self.ports.blackbox, "/-/healthy")).status == 200,
            timeout=STARTUP_TIMEOUT,
            watch=[blackbox],
        )
        self.processes.wait_for(
            "Prometheus is ready",
            lambda: request("GET", self._url(self.ports.prometheus, "/-/ready")).status == 200,
            timeout=STARTUP_TIMEOUT,
            watch=[prometheus],
        )

    def _render_configs(self) -> None:
        """HAProxy's and Prometheus's configs for loopback, scraping and evaluating every
        INTERVAL; blackbox's is used as it is."""
        prometheus_dir = OBSERVABILITY / "prometheus"
        (self.directory / "config").mkdir()
        self.haproxy_cfg = self.directory / "config" / "haproxy.cfg"
        haproxy_text = (OBSERVABILITY / "haproxy" / "haproxy.cfg").read_text(encoding="utf-8")
        self.haproxy_cfg.write_text(render_haproxy(haproxy_text, self.ports), encoding="utf-8")
        self.prometheus_yml = self.directory / "config" / "prometheus.yml"
        prometheus_text = (prometheus_dir / "prometheus.yml").read_text(encoding="utf-8")
        rendered = render_prometheus(
            prometheus_text, self.ports, config_dir=prometheus_dir, interval=INTERVAL
        )
        self.prometheus_yml.write_text(rendered, encoding="utf-8")

    def close(self) -> None:
        try:
            self.processes.close()
        finally:
            database = getattr(self, "database", None)
            if database is not None:
                database.server.cleanup()  # stops the server and deletes its data directory
                shutil.rmtree(database.parent, ignore_errors=True)

    def _start_database(self) -> Database:
        # Not under the pytest tmp directory: a Unix socket path must stay under ~100 bytes.
        parent = Path(tempfile.mkdtemp(prefix="hashtag-stack-pg-"))
        server = start_embedded(parent / "data")
        database = Database(
            server=server,
            parent=parent,
            socket_dir=str(server.get_postmaster_info().socket_dir),
            app_password=secrets.token_urlsafe(16),
            analyst_password=secrets.token_urlsafe(16),
        )
        try:
            self._run_roles_script(database)
        except BaseException:
            server.cleanup()
            shutil.rmtree(parent, ignore_errors=True)
            raise
        return database

    def _run_roles_script(self, database: Database) -> None:
        """The compose postgres image runs this on first start; the socket stands in for it."""
        import pgserver._commands as pg_commands  # psql ships with pgserver

        env = {
            **os.environ,
            "PATH": f"{pg_commands.POSTGRES_BIN_PATH}{os.pathsep}{os.environ.get('PATH', '')}",
            "PGHOST": database.socket_dir,
            "POSTGRES_USER": "postgres",
            "POSTGRES_DB": "postgres",
            "APP_DB_PASSWORD": database.app_password,
            "ANALYST_DB_PASSWORD": database.analyst_password,
        }
        result = subprocess.run(
            ["sh", str(ROLES_SCRIPT)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"{ROLES_SCRIPT} failed:\n{result.stdout}{result.stderr}")

    def start_replica(self, replica: Replica) -> Process:
        # A clean environment: nothing from the developer's shell (X credentials, TAGS ...)
        # can change what the replicas do.
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "DATABASE_URL": self.database.url("app"),
            "API_TOKEN": self.api_token,
            "TWEET_SOURCE": "sample",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "LOG_FILE": str(replica.log_file),
            # No `twitter_keys` file may leak in from the working directory either.
            "TWITTER_KEYS_FILE": str(self.directory / "no-twitter-keys"),
        }
        replica.process = self.processes.start(
            replica.name,
            serve_command(replica.port),
            env=env,
            cwd=self.directory,
            separate_stderr=True,  # Filebeat reads stdout only; stderr is checked apart
        )
        return replica.process

    def _start_replicas(self) -> None:
        # Both at once, as compose starts them: each migrates at startup, and the migration's
        # advisory lock must make the second one wait for the first, not fail.
        started = [self.start_replica(replica) for replica in self.replicas]
        for replica in self.replicas:
            self.processes.wait_for(
                f"{replica.name} answers /ready",
                # Called before the loop moves on, so the late-bound `replica` is this one.
                lambda: replica.get("/ready").status == 200,  # noqa: B023
                timeout=STARTUP_TIMEOUT,
                watch=started,
            )

    # --- HAProxy ---------------------------------------------------------------------------

    def haproxy_servers_up(self) -> set[str]:
        """Servers of backend `api` whose state is UP, from HAProxy's own exporter."""
        text = request("GET", self._url(self.ports.haproxy_stats, "/metrics")).body.decode()
        return {
            sample.labels["server"]
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "haproxy_server_status"
            and sample.value == 1
            and (sample.labels.get("proxy"), sample.labels.get("state")) == ("api", "UP")
        }


@contextlib.contextmanager
def running_stack(directory: Path) -> Iterator[NativeStack]:
    stack = NativeStack(directory=directory, tools=Tools.find())
    try:
        stack.start()
        yield stack
    finally:
        stack.close()
