"""`python -m service populate`, run as the process an operator starts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from service.config import DEFAULT_TAGS
from testing.loopback import free_port
from tests import dataset
from tests.database import Database
from tests.service_process import run_cli
from tests.stub_server import stub_server

pytestmark = pytest.mark.slow

BEARER = "cli-test-bearer-token-0123456789"


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(args, env, cwd, timeout=120)


def log_lines(stderr: str) -> list[dict[str, Any]]:
    """stderr of populate is JSON log lines only (the progress bar is for terminals)."""
    return [json.loads(line) for line in stderr.splitlines()]


def test_cli_populate_from_the_sample_prints_the_result(empty_db: Database, tmp_path: Path) -> None:
    result = run(["populate"], {"DATABASE_URL": empty_db.url, "TWEET_SOURCE": "sample"}, tmp_path)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    body = json.loads(lines[0])
    assert set(body) == {"run_id", "source", "per_tag", "tweets_new", "tweets_seen", "duration_ms"}
    assert body["source"] == "sample"
    assert list(body["per_tag"]) == list(DEFAULT_TAGS)
    assert body["per_tag"]["#opentracing"] == 0
    assert body["per_tag"]["#devops"] == 100
    assert body["tweets_new"] == body["tweets_seen"] == empty_db.counts()["tweets"] > 700
    assert empty_db.execute("SELECT id, status, source FROM populate_runs") == [
        (body["run_id"], "succeeded", "sample")
    ]
    events = [line.get("event.action") for line in log_lines(result.stderr)]
    assert "populate.done" in events
    assert "Traceback" not in result.stderr
    assert not (tmp_path / ".data").exists()  # DATABASE_URL was used, not the embedded server


@pytest.mark.parametrize(
    ("x_answers", "code"),
    [("nothing", "x_api_unavailable"), ("401", "x_api_credentials_rejected")],
)
def test_cli_populate_failing_exits_1_with_a_json_error(
    empty_db: Database, tmp_path: Path, x_answers: str, code: str
) -> None:
    env = {"DATABASE_URL": empty_db.url, "TWITTER_BEARER_TOKEN": BEARER, "X_MAX_RETRIES": "0"}
    with stub_server() as x_api:
        if x_answers == "401":  # the source defaults to x with a token
            x_api.statuses["/2/tweets/search/recent"] = 401
            env["X_API_BASE_URL"] = x_api.url
        else:
            env |= {"TWEET_SOURCE": "x", "X_API_BASE_URL": f"http://127.0.0.1:{free_port()}"}
        result = run(["populate"], env, tmp_path)

    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    body = json.loads(lines[0])
    assert list(body) == ["error"]
    assert body["error"]["code"] == code
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream
        assert BEARER not in stream
    logs = log_lines(result.stderr)
    assert "populate.failed" in [line.get("event.action") for line in logs]
    assert all("error.stack_trace" not in line for line in logs)
    runs = empty_db.execute("SELECT status, error FROM populate_runs")
    assert len(runs) == 1
    assert runs[0][0] == "failed"
    assert runs[0][1].startswith(f"{code}:")
    assert empty_db.counts() == dataset.NOTHING
