"""Unit tests of airgrid.config.settings: env over the TOML config file over the shipped defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airgrid.config.settings import DATA_DIR, Settings, SettingsError, load_settings

SECRET = "s3cret-Pa55word"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AIRGRID_* variable of the calling shell leaks into a test."""
    for name in list(os.environ):
        if name.upper().startswith("AIRGRID_"):
            monkeypatch.delenv(name)


def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    path = tmp_path / "airgrid.toml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("AIRGRID_CONFIG_FILE", str(path))
    return path


def error_of(**overrides: object) -> str:
    with pytest.raises(SettingsError) as err:
        load_settings(**overrides)
    return str(err.value)


def test_shipped_defaults() -> None:
    s = load_settings()
    assert isinstance(s, Settings)
    assert (s.broker, s.bootstrap_servers) == ("kafka://127.0.0.1:9092", "127.0.0.1:9092")
    assert (s.web_port, s.store, s.app_id, s.timezone) == (6066, "rocksdb", "airgrid", "Asia/Shanghai")
    assert s.zone.key == "Asia/Shanghai"
    assert s.grid_file == DATA_DIR / "grids.json" and s.rules_file.is_file() and s.policy_file.is_file()
    assert s.broker_security_protocol == "PLAINTEXT" and s.broker_password is None


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("AIRGRID_WEB_PORT", "abc", "valid integer"),
        ("AIRGRID_WEB_PORT", "70000", "less than or equal to 65535"),
        ("AIRGRID_STORE", "redis", "'memory' or 'rocksdb'"),
        ("AIRGRID_BROKER", "localhost:9092", "must start with kafka://"),
        ("AIRGRID_BROKER", "kafka://a:1;b", "'b' is not host:port"),
        ("AIRGRID_TIMEZONE", "Mars/Base", "unknown IANA time zone 'Mars/Base'"),
        ("AIRGRID_TOPIC_PARTITIONS", "0", "greater than or equal to 1"),
        ("AIRGRID_APP_ID", "has space", "should match pattern"),
        ("AIRGRID_LOG_LEVEL", "LOUD", "'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
        ("AIRGRID_BROKER_SECURITY_PROTOCOL", "TLS", "'PLAINTEXT', 'SASL_PLAINTEXT', 'SSL' or 'SASL_SSL'"),
        ("AIRGRID_PROJECTION_ENABLED", "maybe", "valid boolean"),
        ("AIRGRID_PROJECTION_STATEMENT_TIMEOUT_SECONDS", "0", "greater than 0"),
    ],
)
def test_wrong_env_value_names_the_variable_and_what_is_allowed(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, allowed: str
) -> None:
    monkeypatch.setenv(name, value)
    message = error_of()
    assert message.startswith("invalid setting: ")
    assert f"{name}: " in message and allowed in message
    assert f"(got {value!r})" in message


def test_every_bad_variable_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRGRID_WEB_PORT", "abc")
    monkeypatch.setenv("AIRGRID_STORE", "redis")
    message = error_of()
    assert "AIRGRID_WEB_PORT" in message and "AIRGRID_STORE" in message


def test_env_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("airgrid_web_port", "7001")
    assert load_settings().web_port == 7001


def test_missing_data_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRGRID_RULES_FILE", str(tmp_path / "nope.toml"))
    message = error_of()
    assert "AIRGRID_RULES_FILE: file" in message and "nope.toml does not exist" in message


def test_config_file_is_read_and_env_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config(
        tmp_path,
        monkeypatch,
        'web_port = 7000\nstore = "memory"\ntopic_prefix = "dev."\nbroker = "kafka://k1:9092;k2:9093"\n',
    )
    s = load_settings()
    assert (s.web_port, s.store, s.topic("alarms")) == (7000, "memory", "dev.alarms")
    assert s.bootstrap_servers == "k1:9092,k2:9093"
    assert s.app_id == "airgrid"  # not in the file: the field default
    monkeypatch.setenv("AIRGRID_WEB_PORT", "7100")
    monkeypatch.setenv("AIRGRID_STORE", "rocksdb")
    s = load_settings()
    assert (s.web_port, s.store, s.topic_prefix) == (7100, "rocksdb", "dev.")


def test_explicit_overrides_win_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRGRID_WEB_PORT", "7100")
    assert load_settings(web_port=7200).web_port == 7200


def test_wrong_value_in_the_config_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Issue 15: a bad value in the file was reported as if it were the environment variable."""
    path = config(tmp_path, monkeypatch, 'store = "redis"\n')
    message = error_of()
    assert message == (
        f"invalid setting: store in {path} (AIRGRID_CONFIG_FILE): Input should be 'memory' or "
        "'rocksdb' (got 'redis')"
    )


def test_each_bad_value_is_named_where_it_was_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = config(tmp_path, monkeypatch, 'web_port = "abc"\nstore = "redis"\n')
    monkeypatch.setenv("AIRGRID_STORE", "disk")  # the variable wins over the file, and is named
    monkeypatch.setenv("AIRGRID_TOPIC_PARTITIONS", "0")
    problems = error_of().removeprefix("invalid setting: ").split("; ")
    named = {p.split(": ")[0]: p for p in problems}
    assert set(named) == {
        "AIRGRID_TOPIC_PARTITIONS",
        f"web_port in {path} (AIRGRID_CONFIG_FILE)",
        "AIRGRID_STORE",
    }
    assert named["AIRGRID_STORE"].endswith("(got 'disk')")


def test_unknown_key_in_the_config_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = config(tmp_path, monkeypatch, "web_prot = 7000\n")
    assert f"web_prot in {path} (AIRGRID_CONFIG_FILE): Extra inputs are not permitted" in error_of()


def test_env_fixes_a_wrong_file_value(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config(tmp_path, monkeypatch, 'timezone = "Mars/Base"\n')
    monkeypatch.setenv("AIRGRID_TIMEZONE", "UTC")
    assert load_settings().timezone == "UTC"


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("given", [{}, {"AIRGRID_BROKER_USERNAME": "u"}, {"AIRGRID_BROKER_PASSWORD": SECRET}])
def test_sasl_needs_user_and_password(
    monkeypatch: pytest.MonkeyPatch, protocol: str, given: dict[str, str]
) -> None:
    monkeypatch.setenv("AIRGRID_BROKER_SECURITY_PROTOCOL", protocol)
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    message = error_of()
    assert "uses SASL: set AIRGRID_BROKER_USERNAME and AIRGRID_BROKER_PASSWORD" in message
    assert SECRET not in message


def test_sasl_with_credentials_keeps_the_password_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRGRID_BROKER_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("AIRGRID_BROKER_USERNAME", "airgrid")
    monkeypatch.setenv("AIRGRID_BROKER_PASSWORD", SECRET)
    s = load_settings()
    assert s.broker_password is not None and s.broker_password.get_secret_value() == SECRET
    assert SECRET not in repr(s) and SECRET not in str(s.model_dump())


def test_password_never_appears_next_to_other_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRGRID_BROKER_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("AIRGRID_BROKER_PASSWORD", SECRET)
    monkeypatch.setenv("AIRGRID_WEB_PORT", "abc")
    message = error_of()
    assert "AIRGRID_WEB_PORT" in message and SECRET not in message


def test_password_of_a_wrong_type_is_not_echoed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = config(tmp_path, monkeypatch, "broker_password = 98765432123\n")
    message = error_of()
    assert f"broker_password in {path}" in message and "98765432123" not in message


def test_default_database_url_is_sqlite_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AIRGRID_DATA_DIR", str(tmp_path))
    s = load_settings()
    assert s.sqlalchemy_url == f"sqlite:///{(tmp_path / 'airgrid.db').resolve()}"
    monkeypatch.setenv("AIRGRID_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert load_settings().sqlalchemy_url == "postgresql+psycopg://u@h/db"


def test_missing_config_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRGRID_CONFIG_FILE", str(tmp_path / "absent.toml"))
    with pytest.raises(SettingsError, match=r"AIRGRID_CONFIG_FILE: .*absent\.toml does not exist"):
        load_settings()


def test_config_file_that_is_not_toml_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("broker = [unclosed\n")
    monkeypatch.setenv("AIRGRID_CONFIG_FILE", str(bad))
    with pytest.raises(SettingsError, match=r"AIRGRID_CONFIG_FILE: .*bad\.toml is not valid TOML"):
        load_settings()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("notaurl", "Could not parse SQLAlchemy URL"),
        ("foo://host/db", "Can't load plugin: sqlalchemy.dialects:foo"),
        ("postgresql+nodriver://u:s3cret@h/db", "Can't load plugin: sqlalchemy.dialects:postgresql.nodriver"),
    ],
)
def test_database_url_is_checked_and_never_echoed(
    monkeypatch: pytest.MonkeyPatch, url: str, why: str
) -> None:
    """Issue 15: `AIRGRID_DATABASE_URL=notaurl airgrid db status` printed a 22-line traceback."""
    monkeypatch.setenv("AIRGRID_DATABASE_URL", url)
    message = error_of()
    assert message.startswith("invalid setting: AIRGRID_DATABASE_URL: not a SQLAlchemy database URL (")
    assert why in message and "\n" not in message and "s3cret" not in message and "(got" not in message


def test_database_urls_of_known_dialects_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    for url in ("sqlite:///var/x.db", "postgresql+psycopg://u:p@h:5432/db", "postgresql://h/db"):
        monkeypatch.setenv("AIRGRID_DATABASE_URL", url)
        assert load_settings().sqlalchemy_url == url


def test_min_insync_replicas_defaults_to_two_of_three_and_may_not_exceed_the_replication() -> None:
    assert load_settings().min_insync_replicas == 1
    assert load_settings(topic_replication=2).min_insync_replicas == 1
    assert load_settings(topic_replication=3).min_insync_replicas == 2
    assert load_settings(topic_replication=5, topic_min_insync_replicas=3).min_insync_replicas == 3
    message = error_of(topic_replication=2, topic_min_insync_replicas=3)
    assert "AIRGRID_TOPIC_MIN_INSYNC_REPLICAS (3) exceeds AIRGRID_TOPIC_REPLICATION (2)" in message
