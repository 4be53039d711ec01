"""Loguru setup: flat JSON lines (for Filebeat) or text, stdlib logging routed through loguru.

Named log.py, not logging.py, which would shadow the standard library.
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC
from typing import Any, TextIO

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

    def __init__(self, stream: TextIO, secrets: Iterable[str] = ()) -> None:
        self._stream = stream
        # Redaction runs on the serialized line, where a secret holding `"`, `\` or a control
        # character appears JSON-escaped: look for that form (the secret itself otherwise).
        escaped = {json.dumps(s, ensure_ascii=False)[1:-1] for s in secrets if len(s) >= 4}
        # Longest first, so a secret containing another is redacted whole.
        self._secrets = sorted(escaped, key=len, reverse=True)

    def write(self, message: Any) -> None:
        self._stream.write(redact(json_line(message.record), self._secrets) + "\n")
        self._stream.flush()


def json_line(record: Any) -> str:
    extra = dict(record["extra"])
    entry: dict[str, Any] = {
        "@timestamp": record["time"].astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
        "level": record["level"].name,
        "message": record["message"],
        "logger": extra.pop("logger_name", None) or record["name"],
    }
    for key, value in extra.items():
        entry.setdefault(key, value)
    if record["exception"] is not None:
        exc_type, exc_value, _ = record["exception"]
        entry["error.type"] = getattr(exc_type, "__name__", str(exc_type))
        entry["error.message"] = str(exc_value)
        entry["error.stack_trace"] = "".join(
            __import__("traceback").format_exception(*record["exception"])
        )
    return json.dumps(entry, ensure_ascii=False, default=str)


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


def configure(settings: Settings, stream: TextIO | None = None) -> None:
    """Replace loguru's default handler with ours; route stdlib logging into loguru."""
    out = stream if stream is not None else sys.stdout
    secrets = secrets_of(settings)
    logger.remove()
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
        settings.log_file.parent.mkdir(parents=True, exist_ok=True)
        handle = settings.log_file.open("a", encoding="utf-8")
        logger.add(JsonSink(handle, secrets).write, level=settings.log_level, format="{message}")
    logging.basicConfig(handlers=[InterceptHandler()], level=0, force=True)
    for name, level in _QUIET.items():
        logging.getLogger(name).setLevel(max(level, logging.getLogger(name).level))


class _TextSink:
    def __init__(self, stream: TextIO, secrets: Iterable[str]) -> None:
        self._stream = stream
        self._secrets = sorted(set(secrets), key=len, reverse=True)

    def write(self, message: str) -> None:
        self._stream.write(redact(str(message), self._secrets))
        self._stream.flush()
