"""The wheel is the service: built from this tree, installed into a fresh virtualenv, and run from
a directory that holds no source, it migrates, populates from the bundled sample and serves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from testing import processes
from testing.loopback import LOOPBACK, free_port, request
from tests.database import Database

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # No build isolation: hatchling comes from the dev extra, so the build needs no network.
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "--wheel-dir", str(out), str(ROOT)], check=True, timeout=300)
    (built,) = out.glob("hashtag_analytics-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed. Its dependencies are the ones `make install`
    resolved, seen through a path entry (not a site directory: the editable install of this
    tree that lives there is not processed), so the install needs no network."""
    home = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home)], check=True)
    python = home / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True, timeout=300)
    return home


def run(venv: Path, cwd: Path, *args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(venv / "bin" / "hashtag-analytics"), *args],
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "HOME": str(cwd), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_wheel_carries_what_the_service_runs_and_nothing_else(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.startswith("hashtag_analytics-")}
    assert tops == {"service"}
    for needed in (
        "service/migrations/env.py",
        "service/migrations/versions/0004_compliance.py",
        "service/migrations/views/top_users_v02.sql",
        "service/sample_data/manifest.json",
        "service/static/index.html",
        "service/static/vendor/uplot/uPlot.iife.min.js",
    ):
        assert needed in names


def test_wheel_migrates_populates_and_serves_from_anywhere(
    venv: Path, empty_db: Database, tmp_path: Path
) -> None:
    where = subprocess.run(
        [venv / "bin" / "python", "-c", "import service; print(service.__file__)"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert where.startswith(str(venv)), where
    env = {"DATABASE_URL": empty_db.url, "TWEET_SOURCE": "sample", "TWITTER_KEYS_FILE": os.devnull}

    run(venv, tmp_path, "migrate", env=env)
    assert empty_db.scalar("SELECT version_num FROM alembic_version") == "0004"

    result = json.loads(run(venv, tmp_path, "populate", env=env))
    assert result["source"] == "sample"
    assert result["tweets_new"] == empty_db.scalar("SELECT count(*) FROM tweets") > 0

    port = free_port()
    serve = [str(venv / "bin" / "hashtag-analytics"), "serve", "--host", LOOPBACK, "--port"]
    base = f"http://{LOOPBACK}:{port}"
    home = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    log = tmp_path / "serve.log"
    server = processes.start("wheel", [*serve, str(port)], output=log, env=home | env, cwd=tmp_path)
    try:
        server.wait_http(base + "/live")
        hours, page = request("GET", base + "/api/v1/hour"), request("GET", base + "/")
    finally:
        server.stop(30)
    assert hours.status == 200
    assert sum(row["count"] for row in hours.json()) == result["tweets_new"]
    assert page.status == 200
    assert b"<html" in page.body.lower()
