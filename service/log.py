"""Loguru setup, stdlib logging routed through loguru, and the sinks every line goes through.

A line is first an entry (a dict: @timestamp, level, message, logger, then its fields, under the
names FIELD_NAMES gives them); json_line and text_line are the one writer of each format.
Request lines, one per HTTP request, skip loguru (ACCESS, below) and come as the values of
REQUEST_FIELDS: text_line writes their entry, request_json writes json_line's bytes for it
without building it (a third of the instructions, on every request).

Named log.py, not logging.py, which would shadow the standard library.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, Protocol

from loguru import logger

from service.config import Settings

REDACTED = "[REDACTED]"
# Loggers that must stay above DEBUG: tweepy logs request headers, Authorization included.
_QUIET = {
    "tweepy": logging.INFO,
    "aiohttp.access": logging.WARNING,
    "asyncio": logging.INFO,
    "pgserver": logging.WARNING,  # logs every pg_ctl command line and its output at INFO
    "alembic.runtime.plugins": logging.WARNING,
}


class Stream(Protocol):
    """What a sink writes to: a text stream (stdout) or a RotatingFile."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class RotatingFile:
    """LOG_FILE, kept bounded by the service itself: before a write would take the file past
    `max_bytes`, it is renamed to `<name>.1` (`.1` to `.2`, ..., the oldest of `backups`
    deleted) and a new file is started. Whole lines only: a batch is split at line ends, so no
    JSON line is ever cut between two files; a single line longer than `max_bytes` gets a file
    of its own.

    Rotation by rename keeps a reader's open file (Filebeat's harvester) valid: it finishes
    the renamed file, then finds the new one. Files are created 0640: readable by the group
    the log shipper runs in, by nobody else.
    """

    MODE: Final = 0o640

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        if max_bytes < 1 or backups < 1:
            raise ValueError("max_bytes and backups must be positive")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        # ACCESS writes from the event loop, loguru's sink from any thread that logs.
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        return os.open(self.path, flags, self.MODE)

    def write(self, text: str, /) -> int:
        data = text.encode("utf-8")
        with self._lock:
            if self._size + len(data) <= self.max_bytes:
                self._append(data)
                return len(text)
            pending = bytearray()
            for line in data.splitlines(keepends=True):
                used = self._size + len(pending)
                if used and used + len(line) > self.max_bytes:
                    self._append(bytes(pending))
                    pending.clear()
                    self._rotate()
                pending += line
            self._append(bytes(pending))
        return len(text)

    def flush(self) -> None:
        """Every write is already a write(2): nothing is buffered here."""

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)

    def rotated(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    def _append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(data)

    def _rotate(self) -> None:
        os.close(self._fd)
        for n in range(self.backups - 1, 0, -1):
            if self.rotated(n).exists():
                os.replace(self.rotated(n), self.rotated(n + 1))
        os.replace(self.path, self.rotated(1))
        self._fd = self._open()
        self._size = 0


class InterceptHandler(logging.Handler):
    """Loguru's recipe: hand stdlib records to loguru with the right level and caller."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame, depth = inspect.currentframe(), 0
        while frame and (depth == 0 or frame.f_code.co_filename == logging.__file__):
            frame = frame.f_back
            depth += 1
        logger.opt(depth=depth, exception=record.exc_info).bind(logger_name=record.name).log(
            level, record.getMessage()
        )


# Short names in the code, Elastic Common Schema names in the lines: ECS (and so the index
# template of observability/elasticsearch) maps `event`, `client`, `error`, `source` and `url`
# as objects, and Elasticsearch rejects a plain value there (tests/test_log_shipping.py).
FIELD_NAMES: Final = {
    "event": "event.action",
    "client": "client.ip",
    "error": "error.message",
    "source": "tweet_source",
    "url": "url.full",
}

Entry = dict[str, Any]


def record_entry(record: Any) -> Entry:
    """The entry of a loguru record; its extra fields by their written names (FIELD_NAMES)."""
    extra: dict[str, Any] = dict(record["extra"])
    moment = record["time"]
    line: Entry = {
        "@timestamp": stamp(int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000),
        "level": record["level"].name,
        "message": record["message"],
        "logger": extra.pop("logger_name", None) or record["name"],
    }
    for key, value in extra.items():
        if key == "duration_ms" and isinstance(value, int):
            value = float(value)  # one type per field, or Elasticsearch keeps the first it saw
        line.setdefault(FIELD_NAMES.get(key, key), value)  # never over the four above
    if record["exception"] is not None:
        exc_type, exc_value, _ = record["exception"]
        line["error.type"] = getattr(exc_type, "__name__", str(exc_type))
        line["error.message"] = str(exc_value)
        line["error.stack_trace"] = "".join(traceback.format_exception(*record["exception"]))
    return line


# The last second and millisecond written, each with its text: one strftime a second, and one
# format a millisecond for the many lines a busy server writes in it. A tuple, replaced whole:
# loguru's sinks run in any thread that logs.
_second: tuple[int, str] = (-1, "")
_milli: tuple[int, str] = (-1, "")


def stamp(time_ns: int) -> str:
    """ISO 8601 in UTC to the millisecond, with a Z."""
    global _second, _milli
    milli = time_ns // 1_000_000
    cached = _milli
    if cached[0] == milli:
        return cached[1]
    second, rest = divmod(milli, 1000)
    known = _second
    if known[0] != second:
        known = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    text = f"{known[1]}.{rest:03d}Z"
    _milli = (milli, text)
    return text


json_line = json.JSONEncoder(ensure_ascii=False, default=str).encode

# The request line's fields, in order, under their written names: the one field list of the
# line aiohttp's access log hook writes for every request (service/middlewares.py gives the
# values in this order).
REQUEST_FIELDS: Final = (
    "@timestamp",
    "level",
    "message",
    "logger",
    FIELD_NAMES["event"],
    "request_id",
    "method",
    "path",
    "route",
    "status",
    "duration_ms",
    FIELD_NAMES["client"],
)
Row = tuple[Any, ...]  # the values of an entry with fixed fields, in their order


# The request line's fields that only ever hold the service's own ASCII words: a timestamp, a
# level, constant names, an HTTP method (aiohttp's parser admits only a token) and a route
# template. JSON needs no escape in them; every other string goes through json's encoder.
_WORDS: Final = frozenset(
    {"@timestamp", "level", "logger", FIELD_NAMES["event"], "method", "route"}
)
_string = json.encoder.encode_basestring
_MARK: Final = "\ue000"  # a private-use character: in no key


def _request_template() -> str:
    """json_line's own text for the request line's keys, with a %s for each value."""
    parts = json_line(dict.fromkeys(REQUEST_FIELDS, _MARK)).split(json_line(_MARK))
    values = ['"%s"' if name in _WORDS else "%s" for name in REQUEST_FIELDS]
    return parts[0].replace("%", "%%") + "".join(
        value + part.replace("%", "%%") for value, part in zip(values, parts[1:], strict=True)
    )


_REQUEST_TEMPLATE: Final = _request_template()


def request_json(values: Row) -> str:
    """json_line(dict(zip(REQUEST_FIELDS, values))), the same bytes.

    Measured (valgrind --tool=callgrind, one process): json_line encodes a request line in
    39,000 instructions, this in 15,000; bench/callgrind.py counts 28,600 fewer a cached read
    than a dict per line encoded by json_line (354,000 before); a whole request to the bare
    aiohttp handler costs about 203,000.
    """
    stamp, level, message, name, event, request_id, method, path, route, status, ms, client = values
    return _REQUEST_TEMPLATE % (
        stamp,
        level,
        _string(message),
        name,
        event,
        _string(request_id),
        method,
        _string(path),
        route,
        status,
        ms,
        "null" if client is None else _string(client),
    )


# The text format, for a person at a terminal (`make run`): the time (UTC), the level, the event
# (or the logger), the message, then the fields that say which request or run a line belongs to
# and how long it took; a traceback on the lines after.
_TEXT_FIELDS: Final = ("duration_ms", "request_id", "run_id", "error.message")


def text_line(line: Entry) -> str:
    what = line.get("event.action") or line["logger"]
    fields = "".join(f"  {k}={line[k]}" for k in _TEXT_FIELDS if line.get(k) is not None)
    text = f"{line['@timestamp'][11:23]} {line['level']:<8} {what:<18} {line['message']}{fields}"
    trace = line.get("error.stack_trace")
    return f"{text}\n{trace.rstrip()}" if trace else text


class Sink:
    """One output of the log (stdout, LOG_FILE) in one format, with the secrets it redacts."""

    def __init__(self, stream: Stream, *, as_json: bool, secrets: Iterable[str] = ()) -> None:
        self._stream = stream
        self._line = json_line if as_json else text_line
        # Redaction runs on the written line, where a secret holding `"`, `\\` or a control
        # character appears JSON-escaped: look for that form (the secret itself otherwise).
        self._secrets = json_secrets(secrets) if as_json else plain_secrets(secrets)

    def __call__(self, message: Any) -> None:
        """As loguru's sink."""
        self.emit([record_entry(message.record)])

    def emit(self, entries: Iterable[Entry]) -> None:
        self._write("".join([self._line(line) + "\n" for line in entries]))

    def emit_requests(self, rows: Iterable[Row]) -> None:
        """Request lines, each given as the values of REQUEST_FIELDS."""
        if self._line is json_line:
            self._write("".join([request_json(row) + "\n" for row in rows]))
        else:
            self.emit(dict(zip(REQUEST_FIELDS, row, strict=True)) for row in rows)

    def _write(self, text: str) -> None:
        self._stream.write(redact(text, self._secrets))
        self._stream.flush()


class RequestLog:
    """The request lines, one per HTTP request, written to the same sinks as loguru's lines but
    not through loguru: a request appends the values of its REQUEST_FIELDS, and the lines are
    written in batches, every FLUSH_INTERVAL seconds (or FLUSH_LINES lines), off the path of
    the request.

    Measured (valgrind --tool=callgrind, one process): a line through loguru and a sink costs
    175,000 instructions; one appended here, with its share of the batch's encoding and write,
    40,000 (bench/callgrind.py: LOG_LEVEL=INFO against WARNING); a whole request to the bare
    aiohttp handler costs about 203,000.
    """

    FLUSH_INTERVAL: Final = 0.1
    FLUSH_LINES: Final = 512

    def __init__(self) -> None:
        self._sinks: list[Sink] = []
        self._levels: frozenset[str] = frozenset()  # the levels of request lines written
        self._buffer: list[Row] = []
        self._scheduled = False

    def configure(self, sinks: list[Sink], level: str) -> None:
        self.flush()
        self._sinks = sinks
        lowest = logger.level(level).no
        self._levels = frozenset(
            name for name in ("DEBUG", "INFO") if sinks and logger.level(name).no >= lowest
        )

    def enabled(self, level: str) -> bool:
        return level in self._levels

    def add(self, values: Row) -> None:
        self._buffer.append(values)
        if len(self._buffer) >= self.FLUSH_LINES:
            self.flush()
        elif not self._scheduled:
            try:
                asyncio.get_running_loop().call_later(self.FLUSH_INTERVAL, self.flush)
                self._scheduled = True
            except RuntimeError:  # no event loop: write now
                self.flush()

    def flush(self) -> None:
        self._scheduled = False
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        for sink in self._sinks:
            sink.emit_requests(batch)


ACCESS = RequestLog()
atexit.register(ACCESS.flush)


def plain_secrets(secrets: Iterable[str]) -> list[str]:
    """Secrets worth redacting (4+ characters: shorter would blank out common text), longest
    first so a secret containing another is redacted whole."""
    return sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)


def json_secrets(secrets: Iterable[str]) -> list[str]:
    """The same, as they appear inside a JSON string: `"`, `\\` and control characters escaped."""
    return plain_secrets(json.dumps(s, ensure_ascii=False)[1:-1] for s in plain_secrets(secrets))


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def secrets_of(settings: Settings) -> list[str]:
    values = list(settings.credentials.secrets())
    if settings.api_token is not None:
        values.append(settings.api_token.reveal())
    if settings.database_url is not None:
        from yarl import URL

        url = URL(settings.database_url.reveal())
        # libpq takes the password from the userinfo or from a `password` query parameter.
        values.extend(p for p in (url.password, url.query.get("password")) if p)
    return values


def configure(settings: Settings, stream: Stream | None = None) -> None:
    """Replace loguru's default handler with ours; route stdlib logging into loguru."""
    secrets = secrets_of(settings)
    sinks = [Sink(stream or sys.stdout, as_json=settings.log_format == "json", secrets=secrets)]
    if settings.log_file is not None:
        handle = RotatingFile(
            settings.log_file,
            max_bytes=settings.log_file_max_bytes,
            backups=settings.log_file_backups,
        )
        sinks.append(Sink(handle, as_json=True, secrets=secrets))
    logger.remove()
    for sink in sinks:
        logger.add(sink, level=settings.log_level, format="{message}")
    ACCESS.configure(sinks, settings.log_level)
    logging.basicConfig(handlers=[InterceptHandler()], level=0, force=True)
    for name, level in _QUIET.items():
        logging.getLogger(name).setLevel(max(level, logging.getLogger(name).level))
