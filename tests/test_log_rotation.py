"""LOG_FILE rotated and bounded by the service itself, so the shared log volume cannot fill up.

One test drives a real server process with a tiny bound; the others hold RotatingFile's rules
(whole lines, file mode, the oversized line). tests/test_config.py holds the settings.
"""

from __future__ import annotations

import fnmatch
import json
import signal
import stat
from pathlib import Path, PurePosixPath

import aiohttp
import pytest

from service.log import RotatingFile
from testing.fake_x import FakeX
from tests.config_files import the_input
from tests.database import Database
from tests.service_process import Spawn, fetch, service_env

MAX_BYTES = 4096
BACKUPS = 2


def files_oldest_first(path: Path, backups: int) -> list[Path]:
    rotated = [path.with_name(f"{path.name}.{n}") for n in range(backups, 0, -1)]
    return [p for p in [*rotated, path] if p.exists()]


@pytest.mark.slow
async def test_a_replica_rotates_its_log_file_and_keeps_it_bounded(
    spawn: Spawn, clean_db: Database, fake_x: FakeX, tmp_path: Path
) -> None:
    log_file = tmp_path / "logs" / "api-{hostname}.ndjson"
    env = service_env(
        clean_db.url,
        fake_x,
        HOSTNAME="replica0",
        LOG_FILE=str(log_file),
        LOG_FILE_MAX_BYTES=str(MAX_BYTES),
        LOG_FILE_BACKUPS=str(BACKUPS),
        LOG_LEVEL="INFO",
    )
    service = spawn(env)
    await service.wait_live()
    sent = [f"rot-{n:04d}" for n in range(150)]  # ~250 bytes a line: many times the bound
    async with aiohttp.ClientSession() as session:
        for request_id in sent:
            status, _, _, _ = await fetch(
                session, "GET", service.url("/api/v1/tags"), headers={"X-Request-ID": request_id}
            )
            assert status == 200
    service.send(signal.SIGTERM)
    assert await service.wait_exit(30) == 0

    active = tmp_path / "logs" / "api-replica0.ndjson"
    kept = files_oldest_first(active, BACKUPS + 5)
    names = [p.name for p in kept]
    # Rotation happened, and only BACKUPS rotated files are kept.
    assert names == [f"{active.name}.2", f"{active.name}.1", active.name]
    glob = PurePosixPath(the_input()["paths"][0]).name
    assert all(fnmatch.fnmatchcase(name, glob) for name in names), "Filebeat reads them all"
    lines = []
    for path in kept:
        size = path.stat().st_size
        assert 0 < size <= MAX_BYTES, f"{path.name}: {size} bytes"
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n"), f"{path.name} ends inside a line"
        lines += [json.loads(line) for line in text.splitlines()]  # no line cut in two
    # What is kept is the newest part of the log, in order and without a gap.
    ids = [line["request_id"] for line in lines if line.get("event.action") == "http.request"]
    assert ids, "no request line was kept"
    assert ids == sent[len(sent) - len(ids) :]
    assert len(ids) < len(sent)


def test_rotating_file_splits_a_batch_at_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "a.ndjson"
    stream = RotatingFile(path, max_bytes=100, backups=3)
    lines = [f'{{"n": {n}, "pad": "{"x" * 20}"}}\n' for n in range(12)]  # 33-34 bytes each
    stream.write("".join(lines))  # one batch, like AccessLog's
    stream.close()
    kept = files_oldest_first(path, 3)
    assert [p.name for p in kept] == ["a.ndjson.3", "a.ndjson.2", "a.ndjson.1", "a.ndjson"]
    assert all(p.stat().st_size <= 100 for p in kept)
    text = "".join(p.read_text(encoding="utf-8") for p in kept)
    assert text == "".join(lines[-len(text.splitlines()) :])  # whole lines, newest kept
    assert not path.with_name("a.ndjson.4").exists()


def test_rotating_file_gives_an_oversized_line_a_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "b.ndjson"
    stream = RotatingFile(path, max_bytes=64, backups=2)
    stream.write("short\n")
    big = "y" * 200 + "\n"
    stream.write(big)
    stream.write("after\n")
    stream.close()
    assert path.with_name("b.ndjson.2").read_text() == "short\n"
    assert path.with_name("b.ndjson.1").read_text() == big
    assert path.read_text() == "after\n"


def test_rotating_file_appends_to_an_existing_file_and_counts_it(tmp_path: Path) -> None:
    path = tmp_path / "c.ndjson"
    path.write_text("x" * 90 + "\n")
    stream = RotatingFile(path, max_bytes=100, backups=1)
    stream.write("0123456789\n")  # 91 + 11 > 100: the restart's first line starts a new file
    stream.close()
    assert path.with_name("c.ndjson.1").read_text() == "x" * 90 + "\n"
    assert path.read_text() == "0123456789\n"


def test_rotating_file_is_readable_by_its_group_only(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "d.ndjson"
    stream = RotatingFile(path, max_bytes=10, backups=1)
    stream.write("first line\nsecond line\n")
    stream.close()
    for file in (path, path.with_name("d.ndjson.1")):
        mode = stat.S_IMODE(file.stat().st_mode)
        assert mode & 0o040, f"{file.name}: the group (Filebeat) must read it"
        assert not mode & 0o007, f"{file.name}: others must not"
        assert not mode & 0o022, f"{file.name}: only the owner writes"
