"""End to end, as far as it runs here: real API processes write their log files where the compose
stack puts them, and the files are read the way Filebeat's config says it reads them.

The paths come from docker-compose.yml and observability/filebeat/filebeat.yml, not from this
file: the api service's LOG_FILE, the named volume it sits on, the directory Filebeat mounts
that volume at, and the input's `paths` glob. Each line is then turned into the document
Filebeat 9.5 would send (`filestream_event`, which follows the upstream source cited in it),
and every document is checked against what Kibana and the index template expect of it.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import re
import signal
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import aiohttp
import pytest

from service.log import stamp
from testing.fake_x import FakeX
from tests import dataset
from tests.config_files import ROOT, ndjson, services, template, the_input
from tests.database import Database
from tests.service_process import API_TOKEN, Spawn, fetch, service_env

REPLICAS = ("3f2a9c1be0d4", "77c0ffee1234")  # container ids: Docker's HOSTNAME in a container

# --- Filebeat's reading of a line, after the upstream source --------------------------------


class JsonMergeError(ValueError):
    """What jsontransform reports (as error.message with add_error_key) instead of merging."""


def expand_keys(keys: Mapping[str, Any]) -> dict[str, Any]:
    """`{"a.b": 1}` -> `{"a": {"b": 1}}`, recursively; a key both a value and a prefix of
    another is an error. Beats 9.5 source, libbeat/common/jsontransform/expand.go
    (expandFields)."""
    out: dict[str, Any] = {}
    for key, value in keys.items():
        value = expand_keys(value) if isinstance(value, Mapping) else value
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise JsonMergeError(f"cannot expand {key!r}: {part!r} is a value")
            node = child
        if leaf in node and (isinstance(node[leaf], dict) != isinstance(value, dict)):
            raise JsonMergeError(f"cannot expand {key!r}: conflicting types")
        if isinstance(node.get(leaf), dict) and isinstance(value, dict):
            deep_update(node[leaf], value)
        else:
            node[leaf] = value
    return out


def deep_update(target: dict[str, Any], update: Mapping[str, Any]) -> None:
    """mapstr.M.DeepUpdate (elastic-agent-libs): maps merge, anything else overwrites."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            deep_update(target[key], value)
        else:
            target[key] = dict(value) if isinstance(value, Mapping) else value


# Go's time.RFC3339 as time.Parse accepts it (fractional seconds allowed), and jsonhelper.go's
# iso8601 layout "2006-01-02T15:04:05.000Z0700".
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
_ISO8601 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d{4})$")


def parse_timestamp(value: str) -> datetime:
    if not (_RFC3339.match(value) or _ISO8601.match(value)):
        raise JsonMergeError(f"@timestamp not overwritten (parse error on {value})")
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def filestream_event(line: str, *, path: str, offset: int, read_at: datetime) -> dict[str, Any]:
    """The document Filebeat 9.5 sends for one line, under the parser settings of
    filebeat.yml (asserted here, so a change there fails loudly rather than silently).

    - filebeat/input/filestream/input.go (eventFromMessage): the event starts as
      {"log": {"offset", "file": {"path"}}} and the parser's fields are deep-merged into it.
    - libbeat/reader/readjson/json.go (JSONParser.Next): the line is decoded; with target ""
      the keys go to jsontransform.WriteJSONKeys; a decoding error with add_error_key keeps
      the raw line as `message` and sets error.message / error.type "json".
    - libbeat/common/jsontransform/jsonhelper.go (WriteJSONKeys): expand_keys first; with
      overwrite_keys, @timestamp (a string, RFC 3339 or ISO 8601, else an error and the read
      time stays) becomes the event time, @metadata and `type` are special, and the rest is
      deep-merged over the event.
    - The event time is serialised as UTC with milliseconds (libbeat's common.Time format
      "2006-01-02T15:04:05.000Z").
    """
    parser = ndjson()
    assert parser == {
        "target": "",
        "overwrite_keys": True,
        "expand_keys": True,
        "add_error_key": True,
    }, "filebeat.yml's parser changed: update filestream_event to match"
    event: dict[str, Any] = {"log": {"offset": offset, "file": {"path": path}}}
    timestamp = read_at
    try:
        keys = json.loads(line)
        if not isinstance(keys, dict):
            raise JsonMergeError("not a JSON object")
        keys = expand_keys(keys)
        raw_ts = keys.pop("@timestamp", None)
        if raw_ts is not None:
            if not isinstance(raw_ts, str):
                raise JsonMergeError("@timestamp not overwritten (not string)")
            timestamp = parse_timestamp(raw_ts)
        keys.pop("@metadata", None)
        deep_update(event, keys)
    except (ValueError, JsonMergeError) as exc:
        event["message"] = line
        event["error"] = {"message": str(exc), "type": "json"}
    event["@timestamp"] = timestamp.strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{timestamp.microsecond // 1000:03d}Z"
    )
    return event


def read_like_filebeat(
    directory: Path, pattern: PurePosixPath, read_at: datetime
) -> list[dict[str, Any]]:
    """Every file of `directory` (mounted at the pattern's directory) the input's glob matches,
    line by line, as documents."""
    documents = []
    for path in sorted(directory.iterdir()):
        if not fnmatch.fnmatchcase(path.name, pattern.name):
            continue
        offset = 0
        for raw in path.read_bytes().splitlines(keepends=True):
            line = raw.decode("utf-8").rstrip("\n")
            if line:
                container_path = str(pattern.parent / path.name)
                documents.append(
                    filestream_event(line, path=container_path, offset=offset, read_at=read_at)
                )
            offset += len(raw)
    return documents


# --- what Elasticsearch and Kibana expect of a document -----------------------------------------

# Elasticsearch's default format for a `date` field: strict_date_optional_time||epoch_millis
# (Elasticsearch 9.5 docs, "Date field type"; mapping-date-format "strict_date_optional_time").
_STRICT_DATE_OPTIONAL_TIME = re.compile(
    r"^\d{4}(-\d\d(-\d\d(T\d\d(:\d\d(:\d\d(\.\d{1,9})?)?)?(Z|[+-]\d\d(:?\d\d)?)?)?)?)?$"
)

# Top-level Elastic Common Schema fields that are objects (ECS 9.x field reference,
# https://www.elastic.co/docs/reference/ecs/ecs-field-reference): a scalar there cannot be
# indexed next to Filebeat's own fields (log.*, agent.*, ecs.*, input.*, host.*).
_ECS_OBJECT_NAMES = """
    agent as client cloud container data_stream destination device dll dns ecs email entity
    error event faas file gen_ai group host http input log network observer orchestrator
    organization os package process registry related risk rule server service source span
    threat tls trace transaction url user user_agent volume vulnerability labels
"""
ECS_OBJECTS = frozenset(_ECS_OBJECT_NAMES.split())
ECS_SCALARS: dict[str, tuple[type, ...]] = {
    "@timestamp": (str,),
    "message": (str,),
    "tags": (str, list),
}

_LEAF_TYPES: dict[str, tuple[type, ...]] = {
    "keyword": (str, int, float, bool),
    "match_only_text": (str,),
    "wildcard": (str,),
    "date": (str,),
    "long": (int,),
    "float": (int, float),
    "ip": (str,),
}


def mapping_clashes(document: Mapping[str, Any], properties: Mapping[str, Any]) -> list[str]:
    """Where a document does not fit the index template's explicit mappings."""
    clashes = []
    for key, value in document.items():
        mapping = properties.get(key)
        if mapping is None or value is None:
            continue
        if "properties" in mapping:
            if not isinstance(value, Mapping):
                clashes.append(f"{key}: {value!r} where the template has an object")
            else:
                clashes += [f"{key}.{c}" for c in mapping_clashes(value, mapping["properties"])]
        elif isinstance(value, Mapping) or (
            isinstance(value, bool) and mapping["type"] in ("long", "float")
        ):
            clashes.append(f"{key}: {value!r} where the template has {mapping['type']}")
        elif not isinstance(value, _LEAF_TYPES[mapping["type"]]):
            clashes.append(f"{key}: {value!r} is no {mapping['type']}")
    return clashes


def leaf_kinds(document: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """path -> "object" / "string" / "number" / "boolean": what dynamic mapping would fix."""
    kinds: dict[str, str] = {}
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            kinds[path] = "object"
            kinds.update(leaf_kinds(value, path + "."))
        elif isinstance(value, bool):
            kinds[path] = "boolean"
        elif isinstance(value, int | float):
            kinds[path] = "number"
        elif value is not None:
            kinds[path] = "string"
    return kinds


# The fields docs/operations.md tells Kibana users to filter on.
KIBANA_FILTERS = ("event.action", "route", "status", "request_id", "run_id")


def get(document: Mapping[str, Any], dotted: str) -> Any:
    node: Any = document
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


# --- the end-to-end check ------------------------------------------------------------------


@pytest.mark.slow
async def test_replica_log_files_become_documents_kibana_and_the_template_accept(
    spawn: Spawn, clean_db: Database, fake_x: FakeX, tmp_path: Path
) -> None:
    dataset.load(fake_x)
    # The api's LOG_FILE name in a directory standing in for the volume Filebeat reads through
    # the input's `paths` (that they meet: tests/test_filebeat_config.py).
    log_name = PurePosixPath(services()["api"]["environment"]["LOG_FILE"]).name
    assert "{hostname}" in log_name
    [pattern] = map(PurePosixPath, the_input()["paths"])
    volume = tmp_path / "api-logs"
    volume.mkdir()
    env = service_env(clean_db.url, fake_x, LOG_FILE=str(volume / log_name), LOG_LEVEL="DEBUG")
    replicas = [spawn({**env, "HOSTNAME": host}) for host in REPLICAS]
    await asyncio.gather(*(replica.wait_live() for replica in replicas))

    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    async with aiohttp.ClientSession() as session:
        status, body, _, _ = await fetch(
            session,
            "POST",
            replicas[0].url("/api/v1/populate"),
            headers={**auth, "X-Request-ID": "ship-populate"},
        )
        assert status == 201, body
        for n, replica in enumerate(replicas):
            for path in ("/api/v1/users", "/api/v1/tags", "/api/health", "/nowhere", "/live"):
                headers = {"X-Request-ID": f"ship-{n}-{path.strip('/').replace('/', '-')}"}
                status, _, _, _ = await fetch(session, "GET", replica.url(path), headers=headers)
                assert status in (200, 404)
    for replica in replicas:  # SIGTERM: the access log's last batch is flushed on the way out
        replica.send(signal.SIGTERM)
        assert await replica.wait_exit(30) == 0

    files = sorted(p.name for p in volume.iterdir())
    assert files == sorted(f"api-{host}.ndjson" for host in REPLICAS)
    read_at = datetime(2031, 1, 1, tzinfo=UTC)  # far from any line's own time
    documents = read_like_filebeat(volume, pattern, read_at)
    assert len(documents) > 20

    properties = template()["template"]["mappings"]["properties"]
    first_kind: dict[str, tuple[str, str]] = {}
    for doc in documents:
        where = json.dumps(doc)[:300]
        # Every line decoded, and its own time became the event time.
        assert "error" not in doc or doc["error"].get("type") != "json", where
        stamp = doc["@timestamp"]
        assert _STRICT_DATE_OPTIONAL_TIME.match(stamp), where
        assert stamp != "2031-01-01T00:00:00.000Z", f"the read time, not the line's: {where}"
        for field in ("message", "level", "logger"):
            assert isinstance(doc.get(field), str), f"{field}: {where}"
            assert doc[field], f"{field}: {where}"
        assert get(doc, "log.file.path").startswith("/var/log/api/api-")
        # No clash with the template, nor with ECS objects, nor between documents.
        assert mapping_clashes(doc, properties) == [], where
        for key, value in doc.items():
            if key in ECS_OBJECTS:
                assert isinstance(value, Mapping), f"{key} must be an object: {where}"
            if key in ECS_SCALARS:
                assert isinstance(value, ECS_SCALARS[key]), f"{key}: {where}"
        for path, kind in leaf_kinds(doc).items():
            seen, first = first_kind.setdefault(path, (kind, where))
            assert seen == kind, f"{path} is {kind} here but {seen} in {first}"

    requests = [doc for doc in documents if get(doc, "event.action") == "http.request"]
    populate = [doc for doc in documents if str(get(doc, "event.action")).startswith("populate.")]
    assert len(requests) >= 11
    assert {get(doc, "log.file.path") for doc in requests} == {
        f"/var/log/api/{name}" for name in files
    }
    assert populate, "the populate's steps must be shipped too"
    for doc in requests:
        for field in KIBANA_FILTERS:
            if field != "run_id":
                assert get(doc, field) is not None, f"{field} missing: {doc}"
        assert isinstance(get(doc, "client.ip"), str)
    for doc in populate:
        assert isinstance(get(doc, "run_id"), int), doc
        assert get(doc, "request_id") == "ship-populate", doc
    ids = {get(doc, "request_id") for doc in requests}
    assert {"ship-populate", "ship-0-nowhere", "ship-1-api-v1-users"} <= ids


_LOG_METHODS = frozenset(
    {"bind", "trace", "debug", "info", "success", "warning", "error", "critical", "exception"}
)


def logged_keys() -> dict[str, set[str]]:
    """Every keyword the service passes to loguru's bind() or to a log call (loguru puts the
    latter into `extra` too), as the JSON sink names it: key -> files using it."""
    import ast

    from service.log import FIELD_NAMES

    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "service").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in _LOG_METHODS
            ):
                for keyword in node.keywords:
                    # logger_name: InterceptHandler's, taken out again as `logger` by json_line.
                    if keyword.arg not in (None, "logger_name"):
                        name = FIELD_NAMES.get(keyword.arg, keyword.arg)
                        found.setdefault(name, set()).add(path.name)
    return found


def test_no_key_the_service_logs_clashes_with_ecs_or_the_template() -> None:
    # Lines the end-to-end test does not provoke (retries, failures, shutdown) carry keys too.
    keys = logged_keys()
    assert {"event.action", "run_id", "request_id", "tag"} <= set(keys), sorted(keys)
    properties = template()["template"]["mappings"]["properties"]
    for key, files in keys.items():
        root, _, rest = key.partition(".")
        if root in ECS_OBJECTS or root in ECS_SCALARS:
            assert rest, f"{key} ({sorted(files)}) would be a scalar where ECS has an object"
        if root in properties and "properties" in properties[root]:
            assert rest, f"{key} ({sorted(files)}) is an object in the index template"


def test_line_times_are_utc_milliseconds_that_elasticsearch_reads() -> None:
    # Every line of one millisecond carries the same text (written once), the next its own.
    instant = 1_795_000_000_123_456_789  # nanoseconds
    assert stamp(instant) == stamp(instant + 999) == "2026-11-18T11:06:40.123Z"
    assert stamp(instant + 1_000_000) == "2026-11-18T11:06:40.124Z"
    assert stamp(instant + 877_000_000) == "2026-11-18T11:06:41.000Z"
    assert _STRICT_DATE_OPTIONAL_TIME.match(stamp(instant))
