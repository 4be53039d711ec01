"""Settings.from_env: defaults, validation that names the variable, the twitter_keys file, secrets.

Every call passes `keys_file` (or TWITTER_KEYS_FILE) explicitly: a `twitter_keys` file in the
directory the tests run from must not leak into them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import ConfigError, Secret, Settings
from tests.service_process import run_cli

OAUTH1 = {
    "TWITTER_CONSUMER_KEY": "consumer-key-value",
    "TWITTER_CONSUMER_SECRET": "consumer-secret-value",
    "TWITTER_APP_ACCESS_TOKEN": "access-token-value",
    "TWITTER_ACCESS_SECRET": "access-secret-value",
}


@pytest.fixture
def no_file(tmp_path: Path) -> Path:
    return tmp_path / "absent_twitter_keys"


def load(env: dict[str, str], keys_file: Path) -> Settings:
    return Settings.from_env(env, keys_file=keys_file)


def config_error(env: dict[str, str], keys_file: Path) -> str:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env, keys_file=keys_file)
    return str(info.value)


# --- defaults ----------------------------------------------------------------------------------


def test_from_env_with_no_variable_or_blank_ones_gives_the_defaults(no_file: Path) -> None:
    assert load({}, no_file) == Settings()
    names = "TAGS TWEETS_PER_TAG PORT TWEET_SOURCE LOG_FORMAT LOG_LEVEL DATABASE_URL X_TIMEOUT"
    blank = dict.fromkeys([*names.split(), "TWITTER_BEARER_TOKEN", "API_TOKEN"], "  ")
    assert load(blank, no_file) == Settings()


def test_from_env_reads_os_environ_when_no_mapping_is_given(
    monkeypatch: pytest.MonkeyPatch, no_file: Path
) -> None:
    monkeypatch.setenv("PORT", "9123")
    monkeypatch.setenv("TAGS", "#ops")

    settings = Settings.from_env(keys_file=no_file)

    assert (settings.port, settings.tags) == (9123, ("#ops",))


# --- TAGS --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("devops, #SRE #oauth,,#DevOps  sre", ("#devops", "#sre", "#oauth")),
        ("#openbanking", ("#openbanking",)),
        ("  #a1\t#b_2\n", ("#a1", "#b_2")),
        ("##twice", ("#twice",)),
        ("#café", ("#café",)),  # X hashtags may hold any letter
        ("#x" + "y" * 99, ("#x" + "y" * 99,)),  # 100 characters after the #
    ],
)
def test_from_env_tags_are_normalized_and_deduplicated(
    raw: str, expected: tuple[str, ...], no_file: Path
) -> None:
    assert load({"TAGS": raw}, no_file).tags == expected


@pytest.mark.parametrize(
    "raw",
    [
        "#dev-ops",  # '-' ends a hashtag on X
        "#123",  # digits only are not a hashtag
        "#",
        "#_",
        "#a.b",
        "#devops #ok!",
        "#" + "y" * 101,
        ", ,",
    ],
)
def test_from_env_invalid_tags_name_tags(raw: str, no_file: Path) -> None:
    message = config_error({"TAGS": raw}, no_file)

    assert message.startswith("TAGS:")


# --- numbers -----------------------------------------------------------------------------------

# (variable, field, a valid value, its parsed form typed as the field (int or float), values
# outside the allowed range)
NUMBERS = [
    ("TWEETS_PER_TAG", "tweets_per_tag", "150", 150, ["0", "-1", "10001"]),
    ("PORT", "port", "0", 0, ["-1", "65536", "100000"]),
    ("LOG_FILE_MAX_BYTES", "log_file_max_bytes", "4096", 4096, ["100", "4095"]),
    ("LOG_FILE_BACKUPS", "log_file_backups", "1", 1, ["0", "101"]),
    ("X_RATE_LIMIT_MAX_WAIT", "x_rate_limit_max_wait", "0", 0.0, ["-0.5", "901", "inf"]),
    ("X_CONCURRENCY", "x_concurrency", "10", 10, ["0", "11"]),
    ("X_TIMEOUT", "x_timeout", "0.1", 0.1, ["0", "0.05", "301", "nan"]),
    ("X_MAX_RETRIES", "x_max_retries", "0", 0, ["-1", "11"]),
    ("X_RETRY_BACKOFF", "x_retry_backoff", "2.5", 2.5, ["-1", "61", "-inf"]),
    ("HEALTH_CACHE_TTL", "health_cache_ttl", "30", 30.0, ["-1", "31"]),
    ("DB_TIMEOUT", "db_timeout", "300", 300.0, ["0", "301"]),
    ("DB_WRITE_TIMEOUT", "db_write_timeout", "1", 1.0, ["0.5", "86401"]),
    ("DB_POOL_SIZE", "db_pool_size", "100", 100, ["0", "101"]),
    ("COMPLIANCE_TIMEOUT", "compliance_timeout", "60", 60.0, ["59", "604801"]),
    ("COMPLIANCE_POLL", "compliance_poll", "0.5", 0.5, ["0", "601"]),
    ("COMPLIANCE_JOB_MAX_IDS", "compliance_job_max_ids", "1", 1, ["0", "100000001"]),
    ("RAW_RETENTION_DAYS", "raw_retention_days", "0", 0, ["-1", "3651"]),
]


@pytest.mark.parametrize(("name", "field", "raw", "value", "outside"), NUMBERS)
def test_from_env_numbers_parse_within_range_and_reject_bad_values_naming_themselves(
    name: str, field: str, raw: str, value: float, outside: list[str], no_file: Path
) -> None:
    parsed = getattr(load({name: f" {raw} "}, no_file), field)
    assert (parsed, type(parsed)) == (value, type(value))
    integer = type(value) is int
    kind = "an integer" if integer else "a number"
    garbage = ["abc", "12abc", "0x10", "1,5", "--1"] + (["1.5", "1e3"] if integer else [])
    for bad, says in [
        *((b, "outside") for b in outside),
        *((b, f"is not {kind}") for b in garbage),
    ]:
        message = config_error({name: bad}, no_file)
        assert message.startswith(f"{name}:"), (bad, message)
        assert says in message, (bad, message)


def test_from_env_only_the_invalid_variable_is_named(no_file: Path) -> None:
    message = config_error({"PORT": "8080", "X_CONCURRENCY": "99"}, no_file)

    assert message.startswith("X_CONCURRENCY:")
    assert "PORT" not in message


# --- other variables -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://127.0.0.1:8081", "http://127.0.0.1:8081"),
        ("https://api.twitter.com/", "https://api.twitter.com"),
        ("http://proxy.internal:3128/x-api/", "http://proxy.internal:3128/x-api"),
        (" https://api.x.com ", "https://api.x.com"),
    ],
)
def test_from_env_x_api_base_url_is_normalized(raw: str, expected: str, no_file: Path) -> None:
    assert load({"X_API_BASE_URL": raw}, no_file).x_api_base_url == expected


@pytest.mark.parametrize(
    "raw", ["ftp://api.x.com", "api.x.com", "http://", "https:///2/tweets", "not a url", "//h"]
)
def test_from_env_x_api_base_url_rejects_non_http_urls(raw: str, no_file: Path) -> None:
    message = config_error({"X_API_BASE_URL": raw}, no_file)

    assert message.startswith("X_API_BASE_URL:")


def test_from_env_database_url_is_a_secret(no_file: Path) -> None:
    for scheme in ("postgresql", "postgres"):
        url = f"{scheme}://app:hunter2-pw@db.internal:5432/tweets"

        settings = load({"DATABASE_URL": f" {url} "}, no_file)

        assert isinstance(settings.database_url, Secret)
        assert settings.database_url.reveal() == url
        assert "hunter2" not in repr(settings)


@pytest.mark.parametrize(
    "raw",
    [
        "mysql://app:hunter2-pw@db.internal/tweets",
        "postgresql+psycopg2://app:hunter2-pw@db/tweets",
        "app:hunter2-pw@db.internal/tweets",
        "host=db password=hunter2-pw",
    ],
)
def test_from_env_database_url_error_never_echoes_the_value(raw: str, no_file: Path) -> None:
    message = config_error({"DATABASE_URL": raw}, no_file)

    assert message.startswith("DATABASE_URL:")
    assert "hunter2" not in message
    assert "db.internal" not in message


@pytest.mark.parametrize(
    ("name", "field", "value", "parsed", "wrong"),
    [
        ("TWEET_SOURCE", "tweet_source", "Sample", "sample", "twitter"),
        ("LOG_FORMAT", "log_format", "TEXT", "text", "xml"),
        ("LOG_LEVEL", "log_level", "debug", "DEBUG", "verbose"),
    ],
)
def test_from_env_enumerations_ignore_case_and_name_the_variable(
    name: str, field: str, value: str, parsed: str, wrong: str, no_file: Path
) -> None:
    assert getattr(load({name: value}, no_file), field) == parsed
    message = config_error({name: wrong}, no_file)
    assert message.startswith(f"{name}:")
    assert repr(wrong) in message.lower()


def test_from_env_api_token_must_be_long_enough_and_is_not_echoed(no_file: Path) -> None:
    message = config_error({"API_TOKEN": "pw-1234"}, no_file)

    assert message.startswith("API_TOKEN:")
    assert "pw-1234" not in message
    settings = load({"API_TOKEN": "long-enough-token"}, no_file)
    assert settings.api_token is not None
    assert settings.api_token.reveal() == "long-enough-token"


def test_from_env_paths_and_the_log_file_named_by_hostname(tmp_path: Path, no_file: Path) -> None:
    paths = {"DATA_DIR": tmp_path / "data", "SAMPLE_DIR": tmp_path / "sample"}
    log_file = tmp_path / "logs" / "api-{hostname}.ndjson"
    env = {"LOG_FILE": str(log_file), "HOSTNAME": "3f2a9c1be0d4"}

    settings = load({**env, **{name: str(path) for name, path in paths.items()}}, no_file)

    assert [settings.data_dir, settings.sample_dir] == list(paths.values())
    assert settings.log_file == tmp_path / "logs" / "api-3f2a9c1be0d4.ndjson"


# --- the twitter_keys file -----------------------------------------------------------------------


def write_keys(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def revealed(secret: Secret | None) -> str | None:
    return None if secret is None else secret.reveal()


def test_from_env_reads_the_twitter_keys_file(tmp_path: Path) -> None:
    keys = write_keys(
        tmp_path / "twitter_keys",
        "# OAuth 1.0a keys of the original deployment\n"
        "\n"
        'TWITTER_CONSUMER_KEY="consumer-key-value"\n'
        "export TWITTER_CONSUMER_SECRET='consumer-secret-value'\n"
        "  TWITTER_APP_ACCESS_TOKEN = access-token-value  \n"
        "   # indented comment\n"
        "export   TWITTER_ACCESS_SECRET=access-secret-value\n"
        "TAGS=#one #two\n",
    )

    settings = load({}, keys)

    creds = settings.credentials
    fields = (creds.consumer_key, creds.consumer_secret, creds.access_token, creds.access_secret)
    assert [revealed(secret) for secret in fields] == list(OAUTH1.values())
    assert creds.bearer_token is None
    assert creds.user_auth is True
    assert settings.tweet_source == "x"
    assert settings.tags == ("#one", "#two")


@pytest.mark.parametrize(
    ("text", "env", "found_by", "bearer"),
    [
        # Bearer tokens are URL-encoded and often end in %3D, but may carry a literal '='.
        ("TWITTER_BEARER_TOKEN=AAAA%2Fbb=cc==\n", {}, "keys_file", "AAAA%2Fbb=cc=="),
        # Compose passes `${VAR:-}` as an empty string; empty means unset everywhere else here.
        (
            "TWITTER_BEARER_TOKEN=from-the-file\n",
            {"TWITTER_BEARER_TOKEN": ""},
            "keys_file",
            "from-the-file",
        ),
        ("TWITTER_BEARER_TOKEN=named-file\n", {}, "TWITTER_KEYS_FILE", "named-file"),
        ("TWITTER_BEARER_TOKEN=token-from-cwd\n", {}, "working directory", "token-from-cwd"),
    ],
)
def test_from_env_finds_the_keys_file_and_keeps_its_values(
    text: str,
    env: dict[str, str],
    found_by: str,
    bearer: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = write_keys(
        tmp_path / ("keys.env" if found_by == "TWITTER_KEYS_FILE" else "twitter_keys"), text
    )
    if found_by == "keys_file":
        settings = load(env, keys)
    elif found_by == "TWITTER_KEYS_FILE":
        settings = Settings.from_env({**env, "TWITTER_KEYS_FILE": str(keys)})
    else:
        monkeypatch.chdir(tmp_path)
        settings = Settings.from_env(env)

    assert revealed(settings.credentials.bearer_token) == bearer
    assert settings.tweet_source == "x"


def test_from_env_environment_wins_over_the_file(tmp_path: Path) -> None:
    keys = write_keys(
        tmp_path / "twitter_keys",
        "TWITTER_BEARER_TOKEN=from-the-file\nPORT=1111\nTWEETS_PER_TAG=20\n",
    )

    settings = load({"TWITTER_BEARER_TOKEN": "from-the-environment", "PORT": "2222"}, keys)

    assert revealed(settings.credentials.bearer_token) == "from-the-environment"
    assert settings.port == 2222
    assert settings.tweets_per_tag == 20  # only in the file


@pytest.mark.parametrize("line", ["TWITTER_BEARER_TOKEN", "=value", "just some words"])
def test_from_env_malformed_keys_file_line_names_file_and_line(line: str, tmp_path: Path) -> None:
    keys = write_keys(tmp_path / "twitter_keys", f"# comment\n{line}\n")

    message = config_error({}, keys)

    assert str(keys) in message
    assert "line 2" in message


def test_from_env_keys_file_values_are_validated_like_the_environment(tmp_path: Path) -> None:
    keys = write_keys(tmp_path / "twitter_keys", "X_MAX_RETRIES=many\n")

    assert config_error({}, keys).startswith("X_MAX_RETRIES:")


# --- credentials and the source ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "source", "explicit", "user_auth"),
    [
        ({"TWITTER_BEARER_TOKEN": "a-bearer-token"}, "x", False, False),
        (OAUTH1, "x", False, True),
        # The bearer token is preferred over the OAuth keys.
        ({**OAUTH1, "TWITTER_BEARER_TOKEN": "a-bearer-token"}, "x", False, False),
        # An explicit sample source wins over credentials.
        ({"TWEET_SOURCE": "sample", "TWITTER_BEARER_TOKEN": "a-bearer"}, "sample", True, False),
        ({"TWEET_SOURCE": " X ", **OAUTH1}, "x", True, True),
    ],
)
def test_from_env_credentials_select_the_source(
    env: dict[str, str], source: str, explicit: bool, user_auth: bool, no_file: Path
) -> None:
    settings = load(env, no_file)

    assert (settings.tweet_source, settings.source_explicit) == (source, explicit)
    assert settings.credentials.present is True
    assert settings.credentials.user_auth is user_auth
    given = [v for k, v in env.items() if k.startswith("TWITTER_")]
    assert sorted(settings.credentials.secrets()) == sorted(given)


def test_from_env_compliance_is_scheduled_daily_with_x_and_never_with_the_sample(
    no_file: Path,
) -> None:
    bearer = {"TWITTER_BEARER_TOKEN": "a-bearer-token"}
    assert load(bearer, no_file).compliance_interval == 86_400.0
    assert load({**bearer, "COMPLIANCE_INTERVAL": "3600"}, no_file).compliance_interval == 3600.0
    assert load({**bearer, "COMPLIANCE_INTERVAL": "0"}, no_file).compliance_interval == 0.0
    assert load({}, no_file).compliance_interval == 0.0
    message = config_error({"COMPLIANCE_INTERVAL": "3600"}, no_file)
    assert message.startswith("COMPLIANCE_INTERVAL:")
    assert "X API" in message


@pytest.mark.parametrize(
    "given",
    [
        ["TWITTER_CONSUMER_KEY"],
        ["TWITTER_CONSUMER_KEY", "TWITTER_CONSUMER_SECRET"],
        ["TWITTER_APP_ACCESS_TOKEN", "TWITTER_ACCESS_SECRET", "TWITTER_CONSUMER_SECRET"],
        ["TWITTER_ACCESS_SECRET"],
    ],
)
@pytest.mark.parametrize("bearer", [{}, {"TWITTER_BEARER_TOKEN": "a-bearer-token"}])
def test_from_env_partial_oauth_keys_name_the_missing_ones(
    given: list[str], bearer: dict[str, str], no_file: Path
) -> None:
    # Even with a bearer token, which would be preferred: a partial set is a mistake.
    env = {name: OAUTH1[name] for name in given}

    message = config_error({**bearer, **env}, no_file)

    missing = [name for name in OAUTH1 if name not in given]
    named = message.split(":", 1)[0]
    assert named == ", ".join(missing)
    for value in env.values():
        assert value not in message


def test_from_env_source_x_without_credentials_names_the_bearer_token(no_file: Path) -> None:
    message = config_error({"TWEET_SOURCE": "x"}, no_file)

    assert message.startswith("TWITTER_BEARER_TOKEN:")


# --- secrets -----------------------------------------------------------------------------------


def test_secret_hides_its_value() -> None:
    secret = Secret("s3cret-value")

    assert secret.reveal() == "s3cret-value"
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s" % (secret,)):  # noqa: UP031 - the %-format path too
        assert "s3cret" not in shown
        assert "*" in shown
    assert "s3cret" not in repr([secret, {"k": secret}])


def test_settings_repr_hides_every_secret(tmp_path: Path) -> None:
    keys = write_keys(tmp_path / "twitter_keys", "TWITTER_BEARER_TOKEN=bearer-from-file-xyz\n")
    env = {
        **OAUTH1,
        "API_TOKEN": "api-token-value",
        "DATABASE_URL": "postgresql://app:db-password-value@db:5432/tweets",
    }

    settings = load(env, keys)

    shown = repr(settings) + str(settings) + repr(settings.credentials)
    for value in [*OAUTH1.values(), "api-token-value", "db-password-value", "bearer-from-file"]:
        assert value not in shown
    assert "Secret(" in shown  # the fields are there, their values are not


# --- through the command line ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "env", "variable"),
    [
        (["serve"], {"PORT": "abc"}, "PORT"),
        (["serve"], {"TAGS": "#dev-ops"}, "TAGS"),
        (["serve"], {"TWEET_SOURCE": "x"}, "TWITTER_BEARER_TOKEN"),
        (["serve"], {"TWITTER_CONSUMER_KEY": "k"}, "TWITTER_CONSUMER_SECRET"),
        (["migrate"], {"DATABASE_URL": "mysql://u:hunter2-pw@h/db"}, "DATABASE_URL"),
        (["populate"], {"X_TIMEOUT": "-1"}, "X_TIMEOUT"),
    ],
)
def test_cli_invalid_config_exits_2_with_one_line(
    command: list[str], env: dict[str, str], variable: str, tmp_path: Path
) -> None:
    result = run_cli(command, env, tmp_path)

    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("configuration error: ")
    assert variable in lines[0]
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr
    assert not (tmp_path / ".data").exists()  # nothing was started
