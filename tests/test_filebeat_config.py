"""The log path of the compose stack, held to what upstream does at the versions pinned.

Filebeat, Elasticsearch and Kibana cannot run here. Each setting the stack relies on is tested,
and next to each test is the upstream file, page or issue that fixes the setting's meaning at
the pinned release (the Elastic stack at 9.5.6, docker-compose.yml). What the settings do
with real log lines is in tests/test_log_shipping.py, which also holds the Filebeat semantics
(`filestream_event`) these tests describe.

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
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import PurePosixPath
from typing import Any, ClassVar

import pytest
import yaml

from service.log import RotatingFile
from tests.stub_server import serving
from tests.test_observability_static import (
    COMPOSE_FILE,
    DOCKERFILE,
    FILEBEAT_YML,
    KIBANA_DIR,
    ROOT,
    compose_variables,
    dockerfile_instructions,
    env_example,
    flatten,
    load_json,
    load_yaml,
    services,
    tool,
    walk,
)

ELASTICSEARCH_DIR = ROOT / "observability" / "elasticsearch"
INDEX_TEMPLATE = ELASTICSEARCH_DIR / "index-template.json"
SETUP_SCRIPT = ELASTICSEARCH_DIR / "setup.sh"
README = ROOT / "README.md"
ELASTIC_VERSION = "9.5.6"


def filebeat() -> dict[str, Any]:
    config: dict[str, Any] = load_yaml(FILEBEAT_YML)
    return config


def the_input() -> dict[str, Any]:
    [single] = filebeat()["filebeat.inputs"]
    result: dict[str, Any] = single
    return result


def ndjson() -> dict[str, Any]:
    [parser] = the_input()["parsers"]
    result: dict[str, Any] = parser["ndjson"]
    return result


def template() -> dict[str, Any]:
    result: dict[str, Any] = load_json(INDEX_TEMPLATE)
    return result


def volume_mounts(service: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read-only) of every mount, short or long compose syntax."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            parts = volume.split(":")
            source, target = parts[0], parts[1] if len(parts) > 1 else parts[0]
            mounts.append((source, target, len(parts) > 2 and "ro" in parts[2].split(",")))
        else:
            mounts.append(
                (volume.get("source", ""), volume["target"], bool(volume.get("read_only")))
            )
    return mounts


def shipped_log_dir() -> tuple[str, str]:
    """(volume, the directory Filebeat reads it at): where the api service's LOG_FILE lands,
    followed through the named volume the api and filebeat services share."""
    api, beat = services()["api"], services()["filebeat"]
    log_dir = str(PurePosixPath(api["environment"]["LOG_FILE"]).parent)
    [volume] = [source for source, target, _ in volume_mounts(api) if target == log_dir]
    [beat_dir] = [target for source, target, _ in volume_mounts(beat) if source == volume]
    return volume, beat_dir


# --- defect 2: nothing mounts the Docker socket or the host's Docker state ---------------------


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


def test_filebeat_uses_no_docker_metadata() -> None:
    text = FILEBEAT_YML.read_text(encoding="utf-8")
    config = filebeat()
    assert "filebeat.autodiscover" not in flatten(config)
    assert not any(
        isinstance(node, Mapping) and ("add_docker_metadata" in node or "container" in node)
        for node in walk(config)
    )
    assert "docker.sock" not in text


# --- defect 1: conditions on dedotted labels never match ---------------------------------------

OLD_AUTODISCOVER = """
filebeat.autodiscover:
  providers:
    - type: docker
      templates:
        - condition:
            equals:
              docker.container.labels.com_docker_compose_service: api
          config:
            - type: filestream
              id: api-${data.docker.container.id}
"""

_DEDOTTED_LABEL = re.compile(r"(?:^|\.)labels\.(?=[^.]*_)[^.]+$")


def dedotted_label_conditions(config: Mapping[str, Any]) -> list[str]:
    """Autodiscover conditions on label names with the label's dots turned into underscores.

    Docker and Kubernetes autodiscover match conditions against the labels as they are, dots
    included; `labels.dedot` only rewrites the labels stored in events. Beats source
    `libbeat/autodiscover/providers/docker/docker.go`: "Don't dedot selectors, dedot only
    metadata used for events enrichment"; open issue elastic/beats#49814 "Filebeat: Dedoted
    autodiscover is still using dots for conditions" (8.19). Such a condition never matches,
    so no input ever starts.
    """
    found = []
    for node in walk(config):
        if isinstance(node, Mapping) and "condition" in node:
            for leaf in walk(node["condition"]):
                if isinstance(leaf, Mapping):
                    found += [key for key in leaf if _DEDOTTED_LABEL.search(str(key))]
    return found


def test_the_dedotted_label_check_catches_the_shipped_defect() -> None:
    assert dedotted_label_conditions(yaml.safe_load(OLD_AUTODISCOVER)) == [
        "docker.container.labels.com_docker_compose_service"
    ]
    dotted = {"condition": {"equals": {"docker.container.labels.com.docker.compose.service": 1}}}
    assert dedotted_label_conditions(dotted) == []


def test_filebeat_inputs_start_unconditionally() -> None:
    # Static inputs only: an input that waits for a runtime condition is the failure above.
    assert dedotted_label_conditions(filebeat()) == []
    assert not any(isinstance(node, Mapping) and "condition" in node for node in walk(filebeat()))
    assert len(filebeat()["filebeat.inputs"]) == 1


# --- the input: filestream over the API's own files --------------------------------------------


def test_filebeat_input_is_filestream_with_a_stable_id() -> None:
    # Filebeat 9.5 docs, "Filestream input" (reference/filebeat/filebeat-input-filestream):
    # every filestream input needs a unique `id`; the registry keeps each file's read offset
    # under it, so an id that changes (or a variable in it) re-sends or skips data.
    single = the_input()
    assert single["type"] == "filestream"
    assert re.fullmatch(r"[a-z][a-z0-9-]+", single["id"]), single["id"]
    assert single.get("enabled", True) is True


def test_filebeat_reads_the_directory_the_api_writes_through_the_shared_volume() -> None:
    volume, beat_dir = shipped_log_dir()
    assert volume in compose_top_level_volumes(), f"{volume} must be a named volume"
    [pattern] = the_input()["paths"]
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
    from service.config import ConfigError, Settings

    assert "prospector" not in json.dumps(the_input())  # the 1024-byte default applies
    base = {"TWITTER_KEYS_FILE": os.devnull}
    with pytest.raises(ConfigError, match="LOG_FILE_MAX_BYTES"):
        Settings.from_env({**base, "LOG_FILE_MAX_BYTES": "1024"})
    smallest = Settings.from_env({**base, "LOG_FILE_MAX_BYTES": "4096"}).log_file_max_bytes
    longest_request_line = 600  # a request line with a long path: service.log.AccessLog
    assert smallest - longest_request_line > 1024
    api = services()["api"]["environment"]
    assert int(api["LOG_FILE_MAX_BYTES"]) >= 1024 * 1024


def compose_top_level_volumes() -> set[str]:
    return set(load_yaml(COMPOSE_FILE)["volumes"])


def test_filebeat_ndjson_parser_decodes_into_the_root() -> None:
    # Beats 9.5 source, libbeat/reader/readjson/json.go (JSONParser.Next): with target "" the
    # decoded keys go through jsontransform.WriteJSONKeys into the event's root; any other
    # target nests them under that key (Kibana's filters would then be `json.route` ...).
    parser = ndjson()
    assert parser["target"] == ""
    # libbeat/common/jsontransform/jsonhelper.go (WriteJSONKeys): without overwrite_keys the
    # line's @timestamp is dropped (the read time stays) and its keys never replace Filebeat's.
    assert parser["overwrite_keys"] is True
    # Same file: expand_keys turns "event.action" into {"event": {"action": ...}} before the
    # merge, so the dotted ECS names land in the objects ECS and our template define.
    assert parser["expand_keys"] is True
    # Same file: add_error_key records a line that does not decode (or an unparseable
    # @timestamp) in error.message / error.type "json" instead of dropping it silently.
    assert parser["add_error_key"] is True
    # message_key would make the parser treat one key as the line's text (multiline); the API
    # writes whole JSON lines, and with it unset the decoded `message` is the message.
    assert "message_key" not in parser
    assert "document_id" not in parser


def test_filebeat_drops_only_fields_that_say_nothing_about_the_api() -> None:
    [processor] = filebeat()["processors"]
    dropped = set(processor["drop_fields"]["fields"])
    # log.file.path tells the replicas apart (the file name carries the container id).
    assert not dropped & {"log.file.path", "message", "@timestamp", "event.action", "level"}
    assert "host.name" in dropped  # Filebeat's own container: misleading next to the API's


# --- defect 3: data streams, their lifecycle, and what Kibana matches -------------------------


def test_filebeat_writes_one_data_stream_without_a_date_in_its_name() -> None:
    index = flatten(filebeat())["output.elasticsearch.index"]
    # A date in the name makes a new data stream every day, and a lifecycle never deletes a
    # data stream's write index (Elasticsearch 9.5 docs, "Data stream lifecycle": retention
    # applies to backing indices once rolled over): each day's stream would stay forever.
    assert "%{" not in index
    assert index == "api-server-logs"
    # The template makes it a data stream (below); Filebeat's bulk requests use op_type
    # create, the only one a data stream accepts: Beats 9.5 source,
    # libbeat/outputs/elasticsearch/client.go (createEventBulkMeta: create for ES > 7).
    [pattern] = template()["index_patterns"]
    assert fnmatch.fnmatchcase(index, pattern)


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


def test_retention_default_is_the_same_everywhere() -> None:
    retention = template()["template"]["lifecycle"]["data_retention"]
    setup = services()["elasticsearch-setup"]
    assert setup["environment"]["LOG_RETENTION_DAYS"] == retention.removesuffix("d")
    assert compose_variables(COMPOSE_FILE.read_text(encoding="utf-8"))["LOG_RETENTION_DAYS"] == ":-"
    assert "LOG_RETENTION_DAYS" in env_example()
    assert "Empty: 14." in (ROOT / ".env.example").read_text(encoding="utf-8")


def test_filebeat_loads_no_template_and_manages_no_lifecycle() -> None:
    flat = flatten(filebeat())
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


def test_filebeat_starts_after_the_template_is_loaded() -> None:
    # A write before the template exists would create a plain index api-server-logs, which no
    # later template turns into a data stream.
    assert services()["filebeat"]["depends_on"] == {
        "elasticsearch-setup": {"condition": "service_completed_successfully"}
    }
    setup = services()["elasticsearch-setup"]
    assert setup["restart"] == "no"
    assert setup["depends_on"] == {"elasticsearch": {"condition": "service_healthy"}}
    assert setup["entrypoint"] == ["/bin/sh", "/setup/setup.sh"]
    assert "./observability/elasticsearch:/setup:ro" in setup["volumes"]


def test_kibana_data_view_matches_the_data_stream_and_not_its_backing_indices() -> None:
    # Kibana 9.5 docs, "Data views": a pattern matches data streams, indices and aliases by
    # name; backing indices are hidden `.ds-<data stream>-<date>-<generation>` indices.
    title = load_json(KIBANA_DIR / "data-view.json")["data_view"]["title"]
    index = flatten(filebeat())["output.elasticsearch.index"]
    assert fnmatch.fnmatchcase(index, title)
    assert not fnmatch.fnmatchcase(f".ds-{index}-2026.12.01-000001", title)


def test_no_comment_or_readme_speaks_of_daily_indices_or_ilm_rollover_names() -> None:
    # The shipped comment said Filebeat 8 wrote daily indices and that ILM would make it ignore
    # `index`; in Beats 8/9 the name is a data stream's (defect 3).
    for path in (FILEBEAT_YML, README, KIBANA_DIR / "create-data-view.sh"):
        text = path.read_text(encoding="utf-8")
        assert "YYYY.MM.DD" not in text, path.name
        assert not re.search(r"daily\s+(`[^`]*`\s+)?indices|index a day", text), path.name
        assert "ignores `index`" not in text, path.name
    readme = README.read_text(encoding="utf-8")
    assert ".ds-api-server-logs-" in readme
    assert "api-server-logs" in readme


# --- the retention script against a stand-in for Elasticsearch ---------------------------------


class _FakeElasticsearch(BaseHTTPRequestHandler):
    """Records PUTs and answers with the status queued for their path."""

    requests: ClassVar[list[tuple[str, Any]]] = []
    statuses: ClassVar[dict[str, int]] = {}

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.requests.append((self.path, json.loads(self.rfile.read(length))))
        self.send_response(self.statuses.get(self.path, 200))
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"acknowledged": true}')

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_elasticsearch() -> Iterator[str]:
    _FakeElasticsearch.requests = []
    _FakeElasticsearch.statuses = {}
    with serving(_FakeElasticsearch) as url:
        yield url


def run_setup(url: str, **env: str) -> subprocess.CompletedProcess[str]:
    tool("curl")
    return subprocess.run(
        ["sh", str(SETUP_SCRIPT)],
        env={**os.environ, "ELASTICSEARCH_URL": url, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_setup_loads_the_template_with_the_configured_retention(fake_elasticsearch: str) -> None:
    result = run_setup(fake_elasticsearch, LOG_RETENTION_DAYS="30")
    assert result.returncode == 0, result.stderr
    (path, body), (lifecycle_path, lifecycle) = _FakeElasticsearch.requests
    assert path == "/_index_template/api-server"
    expected = template()
    expected["template"]["lifecycle"]["data_retention"] = "30d"
    assert body == expected  # everything else exactly as in the file
    # Elasticsearch 9.5 API, "Update data stream lifecycle" (PUT _data_stream/<name>/
    # _lifecycle): a template change reaches only data streams created after it.
    assert lifecycle_path == "/_data_stream/api-server-logs/_lifecycle"
    assert lifecycle == {"data_retention": "30d"}


def test_setup_defaults_to_14_days_and_accepts_a_missing_data_stream(
    fake_elasticsearch: str,
) -> None:
    _FakeElasticsearch.statuses["/_data_stream/api-server-logs/_lifecycle"] = 404
    env = {k: v for k, v in os.environ.items() if k != "LOG_RETENTION_DAYS"}
    result = subprocess.run(
        ["sh", str(SETUP_SCRIPT)],
        env={**env, "ELASTICSEARCH_URL": fake_elasticsearch},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert _FakeElasticsearch.requests[0][1] == template()
    assert "does not exist yet" in result.stdout


@pytest.mark.parametrize("days", ["0", "-3", "7d", "", "1.5", "014"])
def test_setup_refuses_a_bad_retention_before_any_request(
    fake_elasticsearch: str, days: str
) -> None:
    result = run_setup(fake_elasticsearch, LOG_RETENTION_DAYS=days)
    if days == "":
        # Compose passes ${LOG_RETENTION_DAYS:-14}; an empty value in the script means 14.
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2
    assert "LOG_RETENTION_DAYS" in result.stderr
    assert _FakeElasticsearch.requests == []


def test_setup_fails_when_elasticsearch_refuses_the_template(fake_elasticsearch: str) -> None:
    _FakeElasticsearch.statuses["/_index_template/api-server"] = 400
    result = run_setup(fake_elasticsearch, LOG_RETENTION_DAYS="14")
    assert result.returncode == 1
    assert "HTTP 400" in result.stderr
    assert len(_FakeElasticsearch.requests) == 1  # no lifecycle update after a failure


# --- non-root on both sides of the volume ------------------------------------------------------


def test_the_log_volume_is_written_by_the_app_user_and_read_by_filebeat_through_its_group() -> None:
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


# --- every image on the release upstream supports ----------------------------------------------


def test_the_elastic_stack_runs_one_supported_version() -> None:
    images = {name: services()[name]["image"] for name in ("elasticsearch", "kibana", "filebeat")}
    for name, image in images.items():
        assert image.rsplit(":", 1)[1] == ELASTIC_VERSION, f"{name}: {image}"


def test_readme_gives_a_reason_for_every_image_version() -> None:
    readme = README.read_text(encoding="utf-8")
    images = {service["image"] for service in services().values() if "image" in service}
    images.add(
        dict(a.split("=", 1) for k, a in dockerfile_instructions() if k == "ARG" and "=" in a)[
            "PYTHON_IMAGE"
        ]
    )
    for image in sorted(images):
        lines = [line for line in readme.splitlines() if f"`{image}`" in line]
        assert lines, f"README has no line on {image}"
        assert len(lines[0]) > len(image) + 40, f"README gives no reason for {image}"


def test_dockerfile_base_is_the_pinned_python() -> None:
    assert "python:3.11.15-slim-bookworm" in DOCKERFILE.read_text(encoding="utf-8")


def test_elastic_health_checks_gate_the_log_path() -> None:
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
