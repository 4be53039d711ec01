"""Loguru setup: flat JSON lines (for Filebeat) or text, stdlib logging routed through loguru.

Request lines, one per HTTP request, take a faster path (AccessLog): the same line format,
buffered and written in batches, because loguru's per-message machinery would cost more than
serving a cached read.

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
from datetime import UTC
from pathlib import Path
from typing import Any, Final, NamedTuple, Protocol

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
        # AccessLog writes from the event loop, loguru's sink from any thread that logs.
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


class JsonSink:
    """One flat JSON object per line; field names are what Filebeat and Kibana rely on."""

    def __init__(self, stream: Stream, secrets: Iterable[str] = ()) -> None:
        self._stream = stream
        # Redaction runs on the serialized line, where a secret holding `"`, `\` or a control
        # character appears JSON-escaped: look for that form (the secret itself otherwise).
        self._secrets = json_secrets(secrets)

    def write(self, message: Any) -> None:
        self._stream.write(redact(json_line(message.record), self._secrets) + "\n")
        self._stream.flush()


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


def _field(key: str, value: Any) -> tuple[str, Any]:
    if key == "duration_ms" and isinstance(value, int | float):
        value = float(value)  # one type per field, or Elasticsearch keeps the first it saw
    return FIELD_NAMES.get(key, key), value


def json_line(record: Any) -> str:
    extra = dict(record["extra"])
    entry: dict[str, Any] = {
        "@timestamp": record["time"].astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
        "level": record["level"].name,
        "message": record["message"],
        "logger": extra.pop("logger_name", None) or record["name"],
    }
    for key, value in extra.items():
        name, value = _field(key, value)
        entry.setdefault(name, value)
    if record["exception"] is not None:
        exc_type, exc_value, _ = record["exception"]
        entry["error.type"] = getattr(exc_type, "__name__", str(exc_type))
        entry["error.message"] = str(exc_value)
        entry["error.stack_trace"] = "".join(traceback.format_exception(*record["exception"]))
    return json.dumps(entry, ensure_ascii=False, default=str)


_LEVELS: Final = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "SUCCESS": 25, "WARNING": 30, "ERROR": 40}


_quote = json.encoder.encode_basestring  # the C-accelerated string quoting json.dumps uses


class RequestLine(NamedTuple):
    ts: float
    level: str
    method: str
    path: str
    status: int
    request_id: str
    route: str
    seconds: float
    client: str | None


class AccessLog:
    """One line per HTTP request, in the JSON sink's format, without loguru's per-message cost:
    a request appends a tuple; the lines are formatted and written in batches, every
    FLUSH_INTERVAL seconds (or FLUSH_LINES lines), off the path of the request."""

    FLUSH_INTERVAL: Final = 0.1
    FLUSH_LINES: Final = 512
    LOGGER: Final = "service.access"

    def __init__(self) -> None:
        self._sinks: list[tuple[Stream, bool]] = []  # (stream, JSON lines?)
        self._min_level = _LEVELS["INFO"]
        self._secrets: list[str] = []
        self._json_secrets: list[str] = []
        self._buffer: list[RequestLine] = []
        self._scheduled = False
        self._second = -1
        self._second_text = ""

    def configure(self, sinks: list[tuple[Stream, bool]], level: str, secrets: list[str]) -> None:
        self.flush()
        self._sinks = sinks
        self._min_level = _LEVELS.get(level, 20)
        self._secrets = plain_secrets(secrets)
        self._json_secrets = json_secrets(secrets)

    def enabled(self, level: str) -> bool:
        return bool(self._sinks) and _LEVELS[level] >= self._min_level

    def request(
        self,
        level: str,
        method: str,
        path: str,
        status: int,
        request_id: str,
        route: str,
        seconds: float,
        client: str | None,
    ) -> None:
        self._buffer.append(
            RequestLine(
                time.time(), level, method, path, status, request_id, route, seconds, client
            )
        )
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
        for stream, as_json in self._sinks:
            if as_json:
                text = redact("".join([self._json(line) for line in batch]), self._json_secrets)
            else:
                text = redact("".join([self._text(line) for line in batch]), self._secrets)
            stream.write(text)
            stream.flush()

    def _stamp(self, ts: float) -> str:
        second = int(ts)
        if second != self._second:  # one strftime a second, not one a line
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int((ts - second) * 1000):03d}Z"

    def _json(self, line: RequestLine) -> str:
        # The field names of FIELD_NAMES' targets (event.action, client.ip), written directly.
        client = _quote(line.client) if line.client is not None else "null"
        message = f"{line.method} {line.path} {line.status}"
        return (
            f'{{"@timestamp": "{self._stamp(line.ts)}", "level": "{line.level}", '
            f'"message": {_quote(message)}, "logger": "{self.LOGGER}", '
            f'"event.action": "http.request", "request_id": {_quote(line.request_id)}, '
            f'"method": {_quote(line.method)}, "path": {_quote(line.path)}, '
            f'"route": {_quote(line.route)}, "status": {line.status}, '
            f'"duration_ms": {round(line.seconds * 1000, 3)!r}, "client.ip": {client}}}\n'
        )

    def _text(self, line: RequestLine) -> str:
        stamp = self._stamp(line.ts).replace("T", " ")[:-1]
        return (
            f"{stamp} | {line.level: <8} | {self.LOGGER}: {line.method} {line.path} "
            f"{line.status} {line.seconds * 1000:.2f} ms\n"
        )


ACCESS = AccessLog()
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
    out = stream if stream is not None else sys.stdout
    secrets = secrets_of(settings)
    logger.remove()
    sinks: list[tuple[Stream, bool]] = [(out, settings.log_format == "json")]
    if settings.log_format == "json":
        logger.add(JsonSink(out, secrets).write, level=settings.log_level, format="{message}")
    else:
        logger.add(
            _TextSink(out, secrets).write,
            level=settings.log_level,
            format="{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}: {message}",
            colorize=False,
        )
    if settings.log_file is not None:
        handle = RotatingFile(
            settings.log_file,
            max_bytes=settings.log_file_max_bytes,
            backups=settings.log_file_backups,
        )
        logger.add(JsonSink(handle, secrets).write, level=settings.log_level, format="{message}")
        sinks.append((handle, True))
    ACCESS.configure(sinks, settings.log_level, secrets)
    logging.basicConfig(handlers=[InterceptHandler()], level=0, force=True)
    for name, level in _QUIET.items():
        logging.getLogger(name).setLevel(max(level, logging.getLogger(name).level))


class _TextSink:
    def __init__(self, stream: Stream, secrets: Iterable[str]) -> None:
        self._stream = stream
        self._secrets = plain_secrets(secrets)

    def write(self, message: str) -> None:
        self._stream.write(redact(str(message), self._secrets))
        self._stream.flush()
