"""Settings, read once from the environment (and the optional `twitter_keys` file)."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from yarl import URL

DEFAULT_TAGS: Final = (
    "#openbanking",
    "#remediation",
    "#devops",
    "#sre",
    "#microservices",
    "#observability",
    "#oauth",
    "#metrics",
    "#logmonitoring",
    "#opentracing",
)
DEFAULT_X_API_BASE_URL: Final = "https://api.x.com"
SAMPLE_DIR: Final = Path(__file__).parent / "sample_data"

# The original deployment kept its four OAuth 1.0a keys in a `twitter_keys` file under these names.
OAUTH1_VARS: Final = (
    "TWITTER_CONSUMER_KEY",
    "TWITTER_CONSUMER_SECRET",
    "TWITTER_APP_ACCESS_TOKEN",
    "TWITTER_ACCESS_SECRET",
)
SECRET_VARS: Final = ("TWITTER_BEARER_TOKEN", *OAUTH1_VARS, "API_TOKEN")

# A hashtag as X's `#` operator accepts it: letters, digits, underscore; at least one letter.
_TAG_RE: Final = re.compile(r"^#(?=\w*[^\W\d_])\w{1,100}$")

# The TWEET_SOURCE setting; the source objects themselves are sources.base.TweetSource.
SourceName = Literal["x", "sample"]
LogFormat = Literal["json", "text"]
_LOG_LEVELS: Final = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")


class ConfigError(Exception):
    """Invalid configuration; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Secret:
    """A value that never shows up in repr(), str() or logs."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class XCredentials:
    bearer_token: Secret | None = None
    consumer_key: Secret | None = None
    consumer_secret: Secret | None = None
    access_token: Secret | None = None
    access_secret: Secret | None = None

    @property
    def user_auth(self) -> bool:
        """OAuth 1.0a user context; used only when no bearer token is configured."""
        return self.bearer_token is None and self.consumer_key is not None

    @property
    def present(self) -> bool:
        return self.bearer_token is not None or self.consumer_key is not None

    def secrets(self) -> list[str]:
        values = (
            self.bearer_token,
            self.consumer_key,
            self.consumer_secret,
            self.access_token,
            self.access_secret,
        )
        return [v.reveal() for v in values if v is not None]


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: Secret | None = None  # None: embedded PostgreSQL under data_dir
    data_dir: Path = Path(".data")
    x_api_base_url: str = DEFAULT_X_API_BASE_URL
    credentials: XCredentials = XCredentials()
    tweet_source: SourceName = "sample"
    source_explicit: bool = False
    sample_dir: Path = SAMPLE_DIR
    tags: tuple[str, ...] = DEFAULT_TAGS
    tweets_per_tag: int = 100
    api_token: Secret | None = None
    host: str = "0.0.0.0"  # noqa: S104 - a container's server listens on every interface
    port: int = 8080
    log_format: LogFormat = "json"
    log_level: str = "INFO"
    log_file: Path | None = None
    log_file_max_bytes: int = 10 * 1024 * 1024  # the file rotates before it grows past this
    log_file_backups: int = 3  # rotated files kept next to it; older ones are deleted
    x_rate_limit_max_wait: float = 60.0
    x_concurrency: int = 4
    x_timeout: float = 20.0
    x_max_retries: int = 3
    x_retry_backoff: float = 0.5
    health_cache_ttl: float = 30.0
    db_timeout: float = 5.0
    db_write_timeout: float = 600.0
    db_pool_size: int = 10
    migrate_on_start: bool = True
    populate_interval: float = 0.0  # seconds between scheduled populates; 0: only on request
    shutdown_timeout: float = 30.0  # seconds in-flight requests get after SIGTERM

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, keys_file: Path | None = None
    ) -> Settings:
        """Build settings from `environ`, falling back to KEY=VALUE lines in `keys_file`.

        Raises ConfigError naming the first invalid variable.
        """
        env = dict(os.environ if environ is None else environ)
        path = (
            keys_file
            if keys_file is not None
            else Path(env.get("TWITTER_KEYS_FILE", "twitter_keys"))
        )
        # The environment wins over the file, so a deployment can override one key. An empty
        # variable counts as unset, as for every setting (compose passes `${VAR:-}` as ""), so it
        # does not hide the file's value.
        from_file = read_keys_file(path)
        env.update((k, v) for k, v in from_file.items() if not env.get(k, "").strip())
        return _parse(env)


def read_keys_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and `#` comments skipped, surrounding quotes dropped."""
    if not path.is_file():
        return {}
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        if not sep or not key:
            raise ConfigError(f"{path}: line {number} is not KEY=VALUE")
        values[key] = value.strip().strip("'\"")
    return values


def parse_tags(raw: str) -> tuple[str, ...]:
    """`#devops, sre #oauth` -> ("#devops", "#sre", "#oauth"), lower-cased, de-duplicated."""
    tags: list[str] = []
    for item in re.split(r"[\s,]+", raw.strip()):
        if not item:
            continue
        tag = "#" + item.lstrip("#").lower()
        if not _TAG_RE.match(tag):
            raise ConfigError(f"TAGS: {item!r} is not a hashtag (letters, digits, underscore)")
        if tag not in tags:
            tags.append(tag)
    if not tags:
        raise ConfigError("TAGS: no hashtag given")
    return tuple(tags)


def _secret(env: Mapping[str, str], name: str) -> Secret | None:
    value = env.get(name, "").strip()
    return Secret(value) if value else None


def _number(
    env: Mapping[str, str], name: str, default: float, *, low: float, high: float, integer: bool
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name}: {raw!r} is not {kind}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}: {value} is outside {low:g}..{high:g}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    return int(_number(env, name, default, low=low, high=high, integer=True))


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    return _number(env, name, default, low=low, high=high, integer=False)


def _credentials(env: Mapping[str, str]) -> XCredentials:
    oauth1 = {name: _secret(env, name) for name in OAUTH1_VARS}
    given = [name for name, value in oauth1.items() if value is not None]
    if given and len(given) != len(OAUTH1_VARS):
        missing = ", ".join(name for name in OAUTH1_VARS if name not in given)
        raise ConfigError(
            f"{missing}: OAuth 1.0a needs all four keys; set them or unset the others"
        )
    return XCredentials(
        bearer_token=_secret(env, "TWITTER_BEARER_TOKEN"),
        consumer_key=oauth1["TWITTER_CONSUMER_KEY"],
        consumer_secret=oauth1["TWITTER_CONSUMER_SECRET"],
        access_token=oauth1["TWITTER_APP_ACCESS_TOKEN"],
        access_secret=oauth1["TWITTER_ACCESS_SECRET"],
    )


def _base_url(raw: str) -> str:
    url = URL(raw.strip())
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"X_API_BASE_URL: {raw!r} is not an http(s) URL")
    return str(url).rstrip("/")


def _database_url(raw: str) -> Secret | None:
    raw = raw.strip()
    if not raw:
        return None
    if not raw.startswith(("postgresql://", "postgres://")):
        # Never echo the value: it usually carries a password.
        raise ConfigError("DATABASE_URL: must start with postgresql:// or postgres://")
    return Secret(raw)


def _parse(env: Mapping[str, str]) -> Settings:
    credentials = _credentials(env)
    raw_source = env.get("TWEET_SOURCE", "").strip().lower()
    if raw_source not in ("", "x", "sample"):
        raise ConfigError(f"TWEET_SOURCE: {raw_source!r} is not 'x' or 'sample'")
    source: SourceName = "sample"
    if raw_source == "x" or (not raw_source and credentials.present):
        source = "x"
    if source == "x" and not credentials.present:
        raise ConfigError(
            "TWITTER_BEARER_TOKEN: TWEET_SOURCE=x needs X credentials "
            "(a bearer token or the four OAuth 1.0a keys)"
        )

    log_format = env.get("LOG_FORMAT", "json").strip().lower() or "json"
    if log_format not in ("json", "text"):
        raise ConfigError(f"LOG_FORMAT: {log_format!r} is not 'json' or 'text'")
    log_level = env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if log_level not in _LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL: {log_level!r} is not one of {', '.join(_LOG_LEVELS)}")
    log_file = env.get("LOG_FILE", "").strip()
    if "{hostname}" in log_file:
        # One file per replica on a shared volume: Docker sets HOSTNAME to the container's id.
        log_file = log_file.replace("{hostname}", env.get("HOSTNAME") or socket.gethostname())

    api_token = _secret(env, "API_TOKEN")
    if api_token is not None and len(api_token.reveal()) < 8:
        raise ConfigError("API_TOKEN: must be at least 8 characters")

    return Settings(
        database_url=_database_url(env.get("DATABASE_URL", "")),
        data_dir=Path(env.get("DATA_DIR", "").strip() or ".data"),
        x_api_base_url=_base_url(env.get("X_API_BASE_URL", "") or DEFAULT_X_API_BASE_URL),
        credentials=credentials,
        tweet_source=source,
        source_explicit=bool(raw_source),
        sample_dir=Path(env.get("SAMPLE_DIR", "").strip() or SAMPLE_DIR),
        tags=parse_tags(env["TAGS"]) if env.get("TAGS", "").strip() else DEFAULT_TAGS,
        tweets_per_tag=_int(env, "TWEETS_PER_TAG", 100, 1, 10_000),
        api_token=api_token,
        host=env.get("HOST", "").strip() or "0.0.0.0",  # noqa: S104 - see the field default
        port=_int(env, "PORT", 8080, 0, 65535),
        log_format=log_format,  # type: ignore[arg-type]  # checked against the Literal above
        log_level=log_level,
        log_file=Path(log_file) if log_file else None,
        log_file_max_bytes=_int(env, "LOG_FILE_MAX_BYTES", 10 * 1024 * 1024, 4096, 2**40),
        log_file_backups=_int(env, "LOG_FILE_BACKUPS", 3, 1, 100),
        x_rate_limit_max_wait=_float(env, "X_RATE_LIMIT_MAX_WAIT", 60.0, 0, 900),
        x_concurrency=_int(env, "X_CONCURRENCY", 4, 1, 10),
        x_timeout=_float(env, "X_TIMEOUT", 20.0, 0.1, 300),
        x_max_retries=_int(env, "X_MAX_RETRIES", 3, 0, 10),
        x_retry_backoff=_float(env, "X_RETRY_BACKOFF", 0.5, 0, 60),
        health_cache_ttl=_float(env, "HEALTH_CACHE_TTL", 30.0, 0, 30),
        db_timeout=_float(env, "DB_TIMEOUT", 5.0, 0.1, 300),
        db_write_timeout=_float(env, "DB_WRITE_TIMEOUT", 600.0, 1, 86_400),
        db_pool_size=_int(env, "DB_POOL_SIZE", 10, 1, 100),
        populate_interval=_float(env, "POPULATE_INTERVAL", 0.0, 0, 7 * 86_400),
        shutdown_timeout=_float(env, "SHUTDOWN_TIMEOUT", 30.0, 0, 3600),
    )
