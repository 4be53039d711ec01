"""Settings, read once from the environment (and the optional `twitter_keys` file)."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args

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
# X's Developer Agreement and Policy wants stored content kept in line with X: once a day.
DEFAULT_COMPLIANCE_INTERVAL: Final = 86_400.0

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
    """Every default is the field's own; from_env changes only what the environment sets."""

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
    raw_retention_days: int = 30  # post text and raw JSON older than this are cleared; 0 keeps
    # Seconds between scheduled compliance passes (service/compliance.py); 0: only on request.
    # From the environment with the X API as the source, COMPLIANCE_INTERVAL's default is
    # DEFAULT_COMPLIANCE_INTERVAL; the sample has nothing to ask X about (see _parse).
    compliance_interval: float = 0.0
    compliance_timeout: float = 6 * 3600.0  # a pass that has not finished by then fails
    compliance_poll: float = 5.0  # first wait between job status checks; doubles up to a minute
    compliance_job_max_ids: int = 5_000_000  # ids per job; more are split across jobs
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


# The numeric settings: variable -> (field, lowest, highest). The value parses as the type of the
# field's default: an int field takes integers only.
_NUMBERS: Final = {
    "TWEETS_PER_TAG": ("tweets_per_tag", 1, 10_000),
    "PORT": ("port", 0, 65535),
    "LOG_FILE_MAX_BYTES": ("log_file_max_bytes", 4096, 2**40),
    "LOG_FILE_BACKUPS": ("log_file_backups", 1, 100),
    "X_RATE_LIMIT_MAX_WAIT": ("x_rate_limit_max_wait", 0, 900),
    "X_CONCURRENCY": ("x_concurrency", 1, 10),
    "X_TIMEOUT": ("x_timeout", 0.1, 300),
    "X_MAX_RETRIES": ("x_max_retries", 0, 10),
    "X_RETRY_BACKOFF": ("x_retry_backoff", 0, 60),
    "HEALTH_CACHE_TTL": ("health_cache_ttl", 0, 30),
    "DB_TIMEOUT": ("db_timeout", 0.1, 300),
    "DB_WRITE_TIMEOUT": ("db_write_timeout", 1, 86_400),
    "DB_POOL_SIZE": ("db_pool_size", 1, 100),
    "POPULATE_INTERVAL": ("populate_interval", 0, 7 * 86_400),
    "RAW_RETENTION_DAYS": ("raw_retention_days", 0, 3650),
    "COMPLIANCE_INTERVAL": ("compliance_interval", 0, 30 * 86_400),
    "COMPLIANCE_TIMEOUT": ("compliance_timeout", 60, 7 * 86_400),
    "COMPLIANCE_POLL": ("compliance_poll", 0.1, 600),
    "COMPLIANCE_JOB_MAX_IDS": ("compliance_job_max_ids", 1, 100_000_000),
    "SHUTDOWN_TIMEOUT": ("shutdown_timeout", 0, 3600),
}
_DEFAULTS: Final = Settings()


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
    value = env.get(name)
    return Secret(value) if value else None


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
    url = URL(raw)
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"X_API_BASE_URL: {raw!r} is not an http(s) URL")
    return str(url).rstrip("/")


def _database_url(raw: str) -> Secret:
    if not raw.startswith(("postgresql://", "postgres://")):
        # Never echo the value: it usually carries a password.
        raise ConfigError("DATABASE_URL: must start with postgresql:// or postgres://")
    return Secret(raw)


def _api_token(raw: str) -> Secret:
    if len(raw) < 8:
        raise ConfigError("API_TOKEN: must be at least 8 characters")
    return Secret(raw)


def _choice(name: str, choices: Sequence[str]) -> Callable[[str], str]:
    """A parser of one of `choices`, in any case."""

    def parse(raw: str) -> str:
        for choice in choices:
            if raw.lower() == choice.lower():
                return choice
        raise ConfigError(f"{name}: {raw!r} is not one of {', '.join(choices)}")

    return parse


def _number(name: str, raw: str) -> float:
    field_name, low, high = _NUMBERS[name]
    integer = isinstance(getattr(_DEFAULTS, field_name), int)
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name}: {raw!r} is not {kind}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}: {value} is outside {low:g}..{high:g}")
    return value


# The other settings one variable sets: variable -> (field, parser of the value, stripped).
_TEXTS: Final[dict[str, tuple[str, Callable[[str], Any]]]] = {
    "DATABASE_URL": ("database_url", _database_url),
    "DATA_DIR": ("data_dir", Path),
    "X_API_BASE_URL": ("x_api_base_url", _base_url),
    "SAMPLE_DIR": ("sample_dir", Path),
    "TAGS": ("tags", parse_tags),
    "API_TOKEN": ("api_token", _api_token),
    "HOST": ("host", str),
    "LOG_FORMAT": ("log_format", _choice("LOG_FORMAT", get_args(LogFormat))),
    "LOG_LEVEL": ("log_level", _choice("LOG_LEVEL", _LOG_LEVELS)),
}


def _parse(env: Mapping[str, str]) -> Settings:
    # Each variable looked up by name, once: what the service reads is exactly these names.
    names = dict.fromkeys((*SECRET_VARS, "TWEET_SOURCE", "LOG_FILE", *_TEXTS, *_NUMBERS))
    given = {name: value for name in names if (value := env.get(name, "").strip())}
    credentials = _credentials(given)
    chosen = given.get("TWEET_SOURCE")
    if chosen is not None:
        source = _choice("TWEET_SOURCE", get_args(SourceName))(chosen)
    else:
        source = "x" if credentials.present else _DEFAULTS.tweet_source
    if source == "x" and not credentials.present:
        raise ConfigError(
            "TWITTER_BEARER_TOKEN: TWEET_SOURCE=x needs X credentials "
            "(a bearer token or the four OAuth 1.0a keys)"
        )
    changed: dict[str, Any] = {
        "credentials": credentials,
        "tweet_source": source,
        "source_explicit": chosen is not None,
    }
    for name, (field_name, parse) in _TEXTS.items():
        if name in given:
            changed[field_name] = parse(given[name])
    if "LOG_FILE" in given:
        # One file per replica on a shared volume: Docker sets HOSTNAME to the container's id.
        log_file = given["LOG_FILE"]
        if "{hostname}" in log_file:
            log_file = log_file.replace("{hostname}", env.get("HOSTNAME") or socket.gethostname())
        changed["log_file"] = Path(log_file)
    for name, (field_name, _, _) in _NUMBERS.items():
        if name in given:
            changed[field_name] = _number(name, given[name])
    if source == "x":
        changed.setdefault("compliance_interval", DEFAULT_COMPLIANCE_INTERVAL)
    elif changed.get("compliance_interval", 0):
        # Compliance asks X about the stored ids; the sample's ids are nobody's on X.
        raise ConfigError(
            "COMPLIANCE_INTERVAL: compliance passes need the X API; "
            "with TWEET_SOURCE=sample leave it unset or 0"
        )
    return dataclasses.replace(_DEFAULTS, **changed)
