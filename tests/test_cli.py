"""`python -m service populate` and `sample`, run as the processes an operator starts."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from service.config import DEFAULT_TAGS, SAMPLE_DIR
from service.testing.loopback import free_port
from tests.database import Database, fresh_database
from tests.service_process import run_cli

pytestmark = pytest.mark.slow

BEARER = "cli-test-bearer-token-0123456789"


@pytest.fixture
def fresh_db(pg_server: tuple[str, Any]) -> Iterator[Database]:
    with fresh_database(pg_server[0]) as url:
        yield Database(url=url)


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(args, env, cwd, timeout=120)


def log_lines(stderr: str) -> list[dict[str, Any]]:
    """stderr of populate is JSON log lines only (the progress bar is for terminals)."""
    return [json.loads(line) for line in stderr.splitlines()]


def test_cli_populate_from_the_sample_prints_the_result(fresh_db: Database, tmp_path: Path) -> None:
    result = run(["populate"], {"DATABASE_URL": fresh_db.url, "TWEET_SOURCE": "sample"}, tmp_path)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    body = json.loads(lines[0])
    assert set(body) == {"run_id", "source", "per_tag", "tweets_new", "tweets_seen", "duration_ms"}
    assert body["source"] == "sample"
    assert list(body["per_tag"]) == list(DEFAULT_TAGS)
    assert body["per_tag"]["#opentracing"] == 0
    assert body["per_tag"]["#devops"] == 100
    assert body["tweets_new"] == body["tweets_seen"] == fresh_db.counts()["tweets"] > 700
    assert fresh_db.execute("SELECT id, status, source FROM populate_runs") == [
        (body["run_id"], "succeeded", "sample")
    ]
    events = [line.get("event.action") for line in log_lines(result.stderr)]
    assert "populate.done" in events
    assert "Traceback" not in result.stderr
    assert not (tmp_path / ".data").exists()  # DATABASE_URL was used, not the embedded server


def test_cli_populate_with_x_unreachable_exits_1_with_a_json_error(
    fresh_db: Database, tmp_path: Path
) -> None:
    env = {
        "DATABASE_URL": fresh_db.url,
        "TWEET_SOURCE": "x",
        "TWITTER_BEARER_TOKEN": BEARER,
        "X_API_BASE_URL": f"http://127.0.0.1:{free_port()}",
        "X_MAX_RETRIES": "0",
        "X_TIMEOUT": "5",
    }

    result = run(["populate"], env, tmp_path)

    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    body = json.loads(lines[0])
    assert list(body) == ["error"]
    assert body["error"]["code"] == "x_api_unavailable"
    assert "X API unavailable" in body["error"]["message"]
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream
        assert BEARER not in stream
    logs = log_lines(result.stderr)
    assert "populate.failed" in [line.get("event.action") for line in logs]
    assert all("error.stack_trace" not in line for line in logs)
    runs = fresh_db.execute("SELECT status, error FROM populate_runs")
    assert len(runs) == 1
    assert runs[0][0] == "failed"
    assert runs[0][1].startswith("x_api_unavailable:")
    assert fresh_db.counts() == {"tweets": 0, "tweet_tags": 0, "users": 0, "places": 0}


def test_cli_populate_with_x_rejecting_credentials_exits_1(
    fresh_db: Database, tmp_path: Path
) -> None:
    # A plain-HTTP listener that answers X's 401 Problem JSON, in a thread of this process.
    class Unauthorized(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(
                {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "no"}
            ).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/problem+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    server = ThreadingHTTPServer(("127.0.0.1", 0), Unauthorized)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {
            "DATABASE_URL": fresh_db.url,
            "TWITTER_BEARER_TOKEN": BEARER,  # the source defaults to x with a token
            "X_API_BASE_URL": f"http://127.0.0.1:{server.server_address[1]}",
            "X_MAX_RETRIES": "0",
        }
        result = run(["populate"], env, tmp_path)
    finally:
        server.shutdown()
        server.server_close()

    assert result.returncode == 1, result.stderr
    body = json.loads(result.stdout)
    assert body["error"]["code"] == "x_api_credentials_rejected"
    assert "Traceback" not in result.stderr
    assert BEARER not in result.stdout + result.stderr


def test_cli_sample_regenerates_the_bundled_files_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "sample out"

    result = run(["sample", "--out", str(out)], {}, tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.strip() == f"sample written to {out}"

    def tree(root: Path) -> dict[str, bytes]:
        return {
            path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*"))
            if path.is_file()
        }

    fresh, bundled = tree(out), tree(SAMPLE_DIR)
    assert sorted(fresh) == sorted(bundled)
    assert "manifest.json" in fresh
    assert len(fresh) > 10
    assert [name for name in bundled if fresh[name] != bundled[name]] == []
