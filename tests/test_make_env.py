"""`make env`: .env for docker compose with random secrets, never overwriting an existing one."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "observability" / "make-env.py"


def run(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(directory)], capture_output=True, text=True, check=True
    )


def parse(path: Path) -> dict[str, str]:
    pairs = (line.partition("=") for line in path.read_text().splitlines())
    return {k: v for k, sep, v in pairs if sep and not k.startswith("#")}


def test_make_env_fills_every_required_secret(tmp_path: Path) -> None:
    shutil.copy(ROOT / ".env.example", tmp_path / ".env.example")

    run(tmp_path)

    values = parse(tmp_path / ".env")
    example = parse(tmp_path / ".env.example")
    names = "POSTGRES_PASSWORD APP_DB_PASSWORD ANALYST_DB_PASSWORD API_TOKEN GRAFANA_ADMIN_PASSWORD"
    required = names.split()
    for key in required:
        assert example[key] == ""
        assert len(values[key]) == 48
        assert values[key].isalnum()
    assert len({values[k] for k in required}) == len(required)
    assert values["TWITTER_BEARER_TOKEN"] == ""  # optional settings stay as in the example
    assert (tmp_path / ".env").stat().st_mode & 0o777 == 0o600


def test_make_env_keeps_an_existing_env(tmp_path: Path) -> None:
    shutil.copy(ROOT / ".env.example", tmp_path / ".env.example")
    (tmp_path / ".env").write_text("API_TOKEN=mine\n")

    run(tmp_path)

    assert (tmp_path / ".env").read_text() == "API_TOKEN=mine\n"
