"""The log path of the compose stack (Filebeat, Elasticsearch, Kibana), held to what upstream
does at the versions pinned.

Those three cannot run here. Each setting the stack relies on is tested, and next to each test
is the upstream file, page or issue that fixes the setting's meaning at the pinned release (the
Elastic stack at 9.5.6, docker-compose.yml). What the settings do with real log lines is in
tests/test_log_shipping.py.

Source files are cited by their path in elastic/beats (or elastic/kibana, moby/moby,
elastic/dockerfiles). They were read at revisions of the 9.x line from 2025-2026, not at the
v9.5.6 tag itself: the whole elastic/beats repository was too large to fetch here, so each file
was read on its own.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath

import pytest

from service.config import ConfigError, Settings
from service.log import RotatingFile
from tests.config_files import (
    COMPOSE_FILE,
    FILEBEAT_YML,
    KIBANA_DIR,
    OBSERVABILITY,
    compose_variables,
    dockerfile_instructions,
    env_example,
    filebeat,
    flatten,
    load_json,
    load_yaml,
    ndjson,
    services,
    sh,
    shipped_log_dir,
    template,
    the_input,
    tool,
    volume_mounts,
    walk,
)
from tests.stub_server import Stub, stub_server

ELASTIC_VERSION = "9.5.6"


def test_no_service_mounts_the_docker_socket_or_host_paths() -> None:
    # Whoever controls a container with /var/run/docker.sock is root on the host; Docker Engine
    # 29 also refuses the old API client inside Filebeat 8.15 ("client version 1.31 is too
    # old. Minimum supported API version is 1.44", e.g. skalenetwork/skale-admin#1334).
    for name, service in services().items():
        for source, target, _ in volume_mounts(service):
            for path in (source, target):
                assert "docker.sock" not in path, f"{name} mounts {path}"
                assert not path.startswith("/var/lib/docker"), f"{name} mounts {path}"
            # Named volumes and files of this repository only, nothing of the host's.
            assert not source.startswith("/"), f"{name} mounts the host path {source}"
        assert not service.get("privileged", False), name
        assert service.get("pid") != "host", name
        assert service.get("user") not in ("root", "0", "0:0"), f"{name} runs as root"


def test_filebeat_has_one_static_input_no_docker_metadata_and_drops_only_its_own_fields() -> None:
    # No autodiscover and no condition: Docker and Kubernetes autodiscover match conditions
    # against the labels as they are, dots included, and `labels.dedot` only rewrites the labels
    # stored in events (Beats source libbeat/autodiscover/providers/docker/docker.go: "Don't
    # dedot selectors, dedot only metadata used for events enrichment"; open issue
    # elastic/beats#49814, 8.19). The shipped condition on a dedotted label never matched, so
    # no input ever started.
    config = filebeat()
    assert len(config["filebeat.inputs"]) == 1
    assert "filebeat.autodiscover" not in flatten(config)
    for node in walk(config):
        if isinstance(node, Mapping):
            assert not {"condition", "add_docker_metadata", "container"} & set(node), node
    assert "docker.sock" not in FILEBEAT_YML.read_text(encoding="utf-8")
    # It drops only fields that say nothing about the API; log.file.path tells the replicas
    # apart (the file name carries the container id).
    [processor] = config["processors"]
    dropped = set(processor["drop_fields"]["fields"])
    assert not dropped & {"log.file.path", "message", "@timestamp", "event.action", "level"}
    assert "host.name" in dropped  # Filebeat's own container: misleading next to the API's


# --- the input: filestream over the API's own files --------------------------------------------


def test_filebeat_input_is_filestream_with_a_stable_id_over_the_apis_files() -> None:
    # Filebeat 9.5 docs, "Filestream input" (reference/filebeat/filebeat-input-filestream):
    # every filestream input needs a unique `id`; the registry keeps each file's read offset
    # under it, so an id that changes (or a variable in it) re-sends or skips data.
    single = the_input()
    assert single["type"] == "filestream"
    assert re.fullmatch(r"[a-z][a-z0-9-]+", single["id"]), single["id"]
    assert single.get("enabled", True) is True
    # It reads the directory the API writes through the shared volume.
    volume, beat_dir = shipped_log_dir()
    assert volume in set(load_yaml(COMPOSE_FILE)["volumes"]), f"{volume} must be a named volume"
    [pattern] = single["paths"]
    assert str(PurePosixPath(pattern).parent) == beat_dir
    # The active file of any replica and every rotated one (service.log.RotatingFile names them
    # <file>.1, <file>.2, ...). Filebeat 9.5 docs, "Filestream input", "Reading from rotating
    # logs": rotated files belong in `paths`, or a renamed file is not read to its end.
    log_name = PurePosixPath(services()["api"]["environment"]["LOG_FILE"]).name
    active = log_name.replace("{hostname}", "0123456789ab")
    for name in (active, f"{active}.1", f"{active}.12"):
        assert fnmatch.fnmatchcase(name, PurePosixPath(pattern).name), name
    assert not fnmatch.fnmatchcase("other.log", PurePosixPath(pattern).name)


def test_every_rotated_file_is_big_enough_for_filebeat_to_read() -> None:
    # Filebeat 9.0 breaking change: filestream identifies files by a fingerprint of their
    # first 1024 bytes (prospector.scanner.fingerprint.length) and ingests no smaller file
    # (elastic/beats#44780). A rotated file is never written again, so it must be larger.
    assert "prospector" not in json.dumps(the_input())  # the 1024-byte default applies
    base = {"TWITTER_KEYS_FILE": os.devnull}
    with pytest.raises(ConfigError, match="LOG_FILE_MAX_BYTES"):
        Settings.from_env({**base, "LOG_FILE_MAX_BYTES": "1024"})
    smallest = Settings.from_env({**base, "LOG_FILE_MAX_BYTES": "4096"}).log_file_max_bytes
    longest_request_line = 600  # a request line with a long path: service.log.AccessLog
    assert smallest - longest_request_line > 1024
    api = services()["api"]["environment"]
    assert int(api["LOG_FILE_MAX_BYTES"]) >= 1024 * 1024


def test_filebeat_ndjson_parser_decodes_into_the_root() -> None:
    # Beats 9.5 source, libbeat/reader/readjson/json.go (JSONParser.Next): with target "" the
    # decoded keys go through jsontransform.WriteJSONKeys into the event's root; any other
    # target nests them under that key (Kibana's filters would then be `json.route` ...).
    # libbeat/common/jsontransform/jsonhelper.go (WriteJSONKeys): without overwrite_keys the
    # line's @timestamp is dropped (the read time stays) and its keys never replace Filebeat's.
    # Same file: expand_keys turns "event.action" into {"event": {"action": ...}} before the
    # merge, so the dotted ECS names land in the objects ECS and our template define.
    # Same file: add_error_key records a line that does not decode (or an unparseable
    # @timestamp) in error.message / error.type "json" instead of dropping it silently.
    # No message_key (it would make the parser treat one key as the line's text, multiline; the
    # API writes whole JSON lines, and with it unset the decoded `message` is the message) and
    # no document_id.
    assert ndjson() == {
        "target": "",
        "overwrite_keys": True,
        "expand_keys": True,
        "add_error_key": True,
    }


# --- data streams, their lifecycle, and what Kibana matches -----------------------------------


def test_filebeat_writes_one_data_stream_that_kibana_matches_with_no_setup_of_its_own() -> None:
    flat = flatten(filebeat())
    index = flat["output.elasticsearch.index"]
    # A date in the name makes a new data stream every day, and a lifecycle never deletes a
    # data stream's write index (Elasticsearch 9.5 docs, "Data stream lifecycle": retention
    # applies to backing indices once rolled over): each day's stream would stay forever.
    assert index == "api-server-logs"
    # The template makes it a data stream (below); Filebeat's bulk requests use op_type
    # create, the only one a data stream accepts: Beats 9.5 source,
    # libbeat/outputs/elasticsearch/client.go (createEventBulkMeta: create for ES > 7).
    [pattern] = template()["index_patterns"]
    assert fnmatch.fnmatchcase(index, pattern)
    # Kibana 9.5 docs, "Data views": a pattern matches data streams, indices and aliases by
    # name; backing indices are hidden `.ds-<data stream>-<date>-<generation>` indices.
    title = load_json(KIBANA_DIR / "data-view.json")["data_view"]["title"]
    assert fnmatch.fnmatchcase(index, title)
    assert not fnmatch.fnmatchcase(f".ds-{index}-2026.12.01-000001", title)
    # Ours is the only template for api-server-*. Beats 9.5 source, libbeat/cmd/instance/
    # beat.go (checkTemplateESSettings): with the template disabled, a custom index needs no
    # setup.template.name/pattern.
    assert flat["setup.template.enabled"] is False
    # With ILM on, Filebeat would set index.lifecycle.name in a template of its own.
    assert flat["setup.ilm.enabled"] is False
    # setup.dsl is refused on a self-managed cluster: Beats 9.5 source,
    # libbeat/idxmgmt/lifecycle/es_client_handler.go (NewESClientHandler: "DSL is only
    # supported on Serverless Elasticsearch").
    assert not any(key.startswith("setup.dsl") for key in flat)


def test_index_template_declares_a_data_stream_with_a_retention() -> None:
    body = template()
    # Elasticsearch 9.5 docs, "Tutorial: create a data stream with a lifecycle": `data_stream`
    # makes matching names data streams; `template.lifecycle.data_retention` is the least time
    # data is kept before Elasticsearch may delete it; priority above 200 avoids the built-in
    # templates.
    assert body["data_stream"] == {}
    assert body["priority"] > 200
    assert body["template"]["lifecycle"] == {"data_retention": "14d"}
    # Single node: a replica could never be allocated and the data stream would stay yellow.
    assert body["template"]["settings"]["index.number_of_replicas"] == 0
    assert "index.lifecycle.name" not in json.dumps(body)  # no ILM next to the lifecycle
    # No pattern of a built-in template (logs-*-*, metrics-*-*) is shadowed.
    for pattern in body["index_patterns"]:
        assert not fnmatch.fnmatchcase("logs-generic-default", pattern)
    # The same default retention in compose and .env.example.
    setup = services()["elasticsearch-setup"]
    assert setup["environment"]["LOG_RETENTION_DAYS"] == "14"
    assert compose_variables()["LOG_RETENTION_DAYS"] == ":-"
    assert "LOG_RETENTION_DAYS" in env_example()


def test_filebeat_starts_after_the_template_is_loaded_and_the_old_files_are_gone() -> None:
    # A write before the template exists would create a plain index api-server-logs, which no
    # later template turns into a data stream. Old files: test_log_cleanup_* below.
    done = {"condition": "service_completed_successfully"}
    assert services()["filebeat"]["depends_on"] == {
        "elasticsearch-setup": done,
        "api-logs-cleanup": done,
    }
    setup = services()["elasticsearch-setup"]
    assert setup["restart"] == "no"
    assert setup["depends_on"] == {"elasticsearch": {"condition": "service_healthy"}}
    assert setup["entrypoint"] == ["/bin/sh", "/setup/setup.sh"]
    assert "./observability/elasticsearch:/setup:ro" in setup["volumes"]


def test_kibana_data_view_is_api_server_on_timestamp() -> None:
    # Kibana 9.5 source, src/platform/plugins/shared/data_views/server/rest_api_routes/
    # (public/create_data_view.ts: POST /api/data_views/data_view, `override` replaces a view
    # of the same title; schema.ts dataViewSpecSchema: these keys). allowNoIndex lets the view
    # exist before Filebeat's first write creates the data stream.
    view = {"title": "api-server-*", "timeFieldName": "@timestamp", "allowNoIndex": True}
    body = load_json(KIBANA_DIR / "data-view.json")
    assert body == {"override": True, "data_view": {**body["data_view"], **view}}
    assert set(body["data_view"]) <= {"id", "name", *view}
    setup = services()["kibana-setup"]
    assert setup["depends_on"] == {"kibana": {"condition": "service_healthy"}}
    assert setup["entrypoint"][-1] == "/setup/create-data-view.sh"


# --- the setup scripts against stand-ins for Elasticsearch and Kibana --------------------------


@pytest.fixture
def stub() -> Iterator[Stub]:
    with stub_server() as server:
        yield server


def run_script(script: Path, **env: str) -> subprocess.CompletedProcess[str]:
    tool("curl")
    base = {k: v for k, v in os.environ.items() if k != "LOG_RETENTION_DAYS"}
    return sh(str(script), env={**base, **env})


ES_SETUP = OBSERVABILITY / "elasticsearch" / "setup.sh"
KIBANA_SETUP = KIBANA_DIR / "create-data-view.sh"


@pytest.mark.parametrize(("days", "stream"), [("30", 200), (None, 404)])
def test_setup_loads_the_template_with_the_retention_default_14_days(
    stub: Stub, days: str | None, stream: int
) -> None:
    # A missing data stream (404) is accepted: Filebeat's first write creates it.
    stub.statuses["/_data_stream/api-server-logs/_lifecycle"] = stream
    retention = {"LOG_RETENTION_DAYS": days} if days else {}
    result = run_script(ES_SETUP, ELASTICSEARCH_URL=stub.url, **retention)
    assert result.returncode == 0, result.stderr
    assert ("does not exist yet" in result.stdout) is (stream == 404)
    (path, _, body), (lifecycle_path, _, lifecycle) = stub.requests
    assert path == "/_index_template/api-server"
    expected = template()
    expected["template"]["lifecycle"]["data_retention"] = f"{days or 14}d"
    assert body == expected  # everything else exactly as in the file
    # Elasticsearch 9.5 API, "Update data stream lifecycle" (PUT _data_stream/<name>/
    # _lifecycle): a template change reaches only data streams created after it.
    assert lifecycle_path == "/_data_stream/api-server-logs/_lifecycle"
    assert lifecycle == {"data_retention": f"{days or 14}d"}


@pytest.mark.parametrize("days", ["0", "-3", "7d", "", "1.5", "014"])
def test_setup_refuses_a_bad_retention_before_any_request(stub: Stub, days: str) -> None:
    result = run_script(ES_SETUP, ELASTICSEARCH_URL=stub.url, LOG_RETENTION_DAYS=days)
    if days == "":
        # Compose passes ${LOG_RETENTION_DAYS:-14}; an empty value in the script means 14.
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2
    assert "LOG_RETENTION_DAYS" in result.stderr
    assert stub.requests == []


def test_setup_fails_when_elasticsearch_refuses_the_template(stub: Stub) -> None:
    stub.statuses["/_index_template/api-server"] = 400
    result = run_script(ES_SETUP, ELASTICSEARCH_URL=stub.url, LOG_RETENTION_DAYS="14")
    assert result.returncode == 1
    assert "HTTP 400" in result.stderr
    assert len(stub.requests) == 1  # no lifecycle update after a failure


@pytest.mark.parametrize("status", [200, 409, 400])
def test_kibana_setup_script_creates_the_data_view_or_fails_on_other_errors(
    stub: Stub, status: int
) -> None:
    stub.statuses["/api/data_views/data_view"] = status
    result = run_script(KIBANA_SETUP, KIBANA_URL=stub.url)
    if status == 400:
        assert result.returncode != 0
        assert "HTTP 400" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    (path, headers, body), (default_path, _, default_body) = stub.requests
    assert path == "/api/data_views/data_view"
    assert headers["kbn-xsrf"] == "true"
    assert body == load_json(KIBANA_DIR / "data-view.json")
    assert default_path == "/api/data_views/default"
    assert default_body == {"data_view_id": body["data_view"]["id"], "force": True}
    assert ("already exists" in result.stdout) is (status == 409)


# --- non-root on both sides of the volume ------------------------------------------------------


def test_the_log_volume_is_written_by_the_app_user_read_by_filebeat_cleaned_by_its_owner() -> None:
    instructions = dockerfile_instructions()
    user = [arg for kind, arg in instructions if kind == "USER"][-1]
    uid, gid = user.split(":")
    volume, beat_dir = shipped_log_dir()
    log_dir = str(PurePosixPath(services()["api"]["environment"]["LOG_FILE"]).parent)
    runs = " ".join(arg for kind, arg in instructions if kind == "RUN")
    # The image's directory, owned by the app user, 0750. A new named volume starts as a copy
    # of it, owner and mode included (moby source, copyExistingContents -> copyOwnership), so
    # the app (uid 10001) can write and its group can read.
    assert f"mkdir -p {log_dir}" in runs
    assert f"chown app:app {log_dir}" in runs
    assert f"chmod 0750 {log_dir}" in runs
    assert re.search(rf"groupadd --system --gid {gid} app", runs)
    assert re.search(rf"useradd --system --uid {uid} --gid app", runs)
    # The files: 0640, group-readable only (service.log.RotatingFile).
    assert RotatingFile.MODE == 0o640
    beat = services()["filebeat"]
    # Filebeat keeps its image's non-root user (uid 1000) and joins the app's group.
    assert "user" not in beat
    assert beat["group_add"] == [gid]
    assert (volume, beat_dir, True) in volume_mounts(beat), "Filebeat must mount it read-only"
    assert (volume, log_dir, False) in volume_mounts(services()["api"])

    # The cleanup job (test_log_cleanup_* below) runs as the files' owner, who alone may remove
    # them from the 0750 directory, on the same volume.
    job = services()["api-logs-cleanup"]
    assert job["user"] == user
    assert volume_mounts(job) == [(volume, log_dir, False)]
    assert job["environment"]["LOG_DIR"] == log_dir


# --- old files on the volume ------------------------------------------------------------------


def test_log_cleanup_deletes_exactly_the_files_not_written_for_the_retention(
    tmp_path: Path,
) -> None:
    # An hour either side of 3 days: far wider than the test takes.
    hour, day, now = 3600, 86400, time.time()
    ages = {
        "api-0123456789ab.ndjson": 3 * day + hour,
        "api-0123456789ab.ndjson.3": 40 * day,
        "api-77c0ffee1234.ndjson": 3 * day - hour,
        "api-77c0ffee1234.ndjson.1": 0,
        "notes.txt": 40 * day,  # not the API's
    }
    for name, age in ages.items():
        (tmp_path / name).write_text("{}\n")
        os.utime(tmp_path / name, (now - age, now - age))
    # The cleanup job's own shell script, from the compose file.
    job = services()["api-logs-cleanup"]
    assert job["entrypoint"] == ["/bin/sh", "-c"]
    [script] = job["command"]
    env = {**job["environment"], "LOG_DIR": str(tmp_path), "PATH": os.environ["PATH"]}
    for days in ("0", "3d", ""):  # a bad retention deletes nothing
        refused = sh("-c", script, env={**env, "LOG_RETENTION_DAYS": days})
        assert refused.returncode == 2, refused.stderr
        assert "LOG_RETENTION_DAYS" in refused.stderr
    assert len(list(tmp_path.iterdir())) == len(ages)
    result = sh("-c", script, env={**env, "LOG_RETENTION_DAYS": "3"})
    assert result.returncode == 0, result.stderr
    kept = {"api-77c0ffee1234.ndjson", "api-77c0ffee1234.ndjson.1", "notes.txt"}
    assert {path.name for path in tmp_path.iterdir()} == kept
    assert {PurePosixPath(line).name for line in result.stdout.split()} == set(ages) - kept


def test_log_cleanup_runs_on_every_up_in_the_apis_base_with_the_logs_retention() -> None:
    job = services()["api-logs-cleanup"]
    # The API image's Debian base: the GNU find the test above runs.
    instructions = dockerfile_instructions()
    [base] = [arg.split("=", 1)[1] for kind, arg in instructions if arg.startswith("PYTHON_IMAGE=")]
    assert job["image"] == base
    # The retention Elasticsearch keeps the lines for, from the same variable and default.
    raw = load_yaml(COMPOSE_FILE)["services"]
    retention = raw["elasticsearch-setup"]["environment"]["LOG_RETENTION_DAYS"]
    assert raw["api-logs-cleanup"]["environment"]["LOG_RETENTION_DAYS"] == retention
    # Started again at each `up` (an exited container is started: docker-compose.yml cites
    # Compose's source), never restarted in a loop, and on no network.
    assert job["restart"] == "no"
    assert job["network_mode"] == "none"
    # Filebeat's defaults that make a deletion harmless are in force (docker-compose.yml).
    assert not [key for key in flatten(the_input()) if key.startswith(("close", "clean_"))]


# --- the Elastic images ------------------------------------------------------------------------


def test_the_elastic_stack_runs_one_version_health_checks_gate_the_log_path_memory_fits() -> None:
    for name in ("elasticsearch", "kibana", "filebeat"):
        image = services()[name]["image"]
        assert image.rsplit(":", 1)[1] == ELASTIC_VERSION, f"{name}: {image}"
    # elasticsearch-setup (and so Filebeat) waits for Elasticsearch's health check, the data
    # view job for Kibana's. Both run curl inside the Elastic images: those are built
    # FROM redhat/ubi9-minimal, whose own curl their builder stage uses without installing it
    # (elastic/dockerfiles, branches 9.x: elasticsearch/Dockerfile, kibana/Dockerfile).
    es = services()["elasticsearch"]["healthcheck"]["test"]
    assert es[0] == "CMD-SHELL"
    assert es[1].startswith("curl -fsS 'http://127.0.0.1:9200/_cluster/health?wait_for_status=")
    # One node and number_of_replicas 0 (the template): yellow is as healthy as it gets for
    # indices with replicas; the data stream itself goes green.
    assert "wait_for_status=yellow" in es[1]
    kibana = services()["kibana"]["healthcheck"]["test"]
    # Kibana 9.5 GET /api/status: {"status": {"overall": {"level": "available", ...}}}.
    assert "/api/status" in kibana[1]
    assert '\\"level\\":\\"available\\"' in kibana[1] or '"level":"available"' in kibana[1]
    assert services()["elasticsearch"]["environment"]["discovery.type"] == "single-node"
    # Elasticsearch 9.5 docs, "JVM settings": Xms = Xmx, at most 50 % of the node's memory.
    # Kibana: 1 GiB, the default of Elastic's operator (docker-compose.yml cites both).
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    es = services()["elasticsearch"]
    heap = re.fullmatch(r"-Xms(\d+)([kmg]) -Xmx\1\2", es["environment"]["ES_JAVA_OPTS"])
    assert heap
    limit = re.fullmatch(r"(\d+)([KMG])", es["deploy"]["resources"]["limits"]["memory"])
    assert limit
    assert 2 * int(heap[1]) * units[heap[2]] <= int(limit[1]) * units[limit[2].lower()]
    assert services()["kibana"]["deploy"]["resources"]["limits"]["memory"] == "1G"
