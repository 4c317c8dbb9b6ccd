"""Settings: defaults in one place, TOML < env < flags, and clear start-up errors."""

from __future__ import annotations

import os
import pickle
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.cli import main
from gateway.settings import Settings, SettingsError, load_settings


def test_defaults_with_no_configuration_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings(environ={})
    assert (s.host, s.port, s.workers) == ("127.0.0.1", 8080, 1)
    assert s.data_dir == tmp_path / "var"
    assert s.database_url == f"sqlite:///{tmp_path}/var/gateway.sqlite3"
    assert s.is_embedded_db
    assert s.max_body_bytes == 64 * 1024
    assert (s.clock_skew_s, s.challenge_ttl_s, s.card_session_ttl_s) == (30, 30, 300)
    assert s.nonce_ttl_s >= 2 * s.clock_skew_s
    assert s.sqlite_synchronous == "FULL"
    # "auto" is decided per database at start-up (gateway.demo); undecided it trusts nothing.
    assert s.demo_world == "auto"
    assert not s.should_load_demo_world()
    assert s.metrics_dir == tmp_path / "var" / "prometheus"


def test_toml_then_environment_then_flags(tmp_path: Path):
    config = tmp_path / "gateway.toml"
    config.write_text(
        'host = "0.0.0.0"\nport = 9000\nworkers = 3\n'
        "legacy_parallel_use_until = 2028-06-30\n"
        'db_url = "postgresql+psycopg://gw@db/gw"\n'
    )
    s = load_settings(
        config_file=config,
        environ={"GATEWAY_PORT": "9100", "GATEWAY_CLOCK_SKEW_S": "10", "HOME": "/x"},
        overrides={"workers": 2, "host": None},
    )
    assert s.host == "0.0.0.0"  # file (flag not given)
    assert s.port == 9100  # env beats file
    assert s.workers == 2  # flag beats file
    assert s.clock_skew_s == 10
    assert s.legacy_parallel_use_until == date(2028, 6, 30)
    assert not s.is_embedded_db
    assert not s.should_load_demo_world()  # auto: never into a real database


def test_environment_strings_are_parsed(tmp_path: Path):
    s = load_settings(
        environ={
            "GATEWAY_DATA_DIR": str(tmp_path / "d"),
            "GATEWAY_LEGACY_PARALLEL_USE_UNTIL": "2027-01-31",
            "GATEWAY_SQLITE_SYNCHRONOUS": "NORMAL",
            "GATEWAY_TERMINAL_CACHE_TTL_S": "2.5",
        }
    )
    assert s.data_dir == tmp_path / "d"
    assert s.legacy_parallel_use_until == date(2027, 1, 31)
    assert s.sqlite_synchronous == "NORMAL"
    assert s.terminal_cache_ttl_s == 2.5


def test_config_file_location_from_environment(tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_text("port = 8181\n")
    assert load_settings(environ={"GATEWAY_CONFIG": str(config)}).port == 8181


def test_relative_data_dir_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}, overrides={"data_dir": Path("rel")}).data_dir == (
        tmp_path / "rel"
    )


def test_invalid_toml_names_file_and_line(tmp_path: Path):
    config = tmp_path / "bad.toml"
    config.write_text('host = "a"\nport = = 3\n')
    with pytest.raises(SettingsError) as info:
        load_settings(config_file=config, environ={})
    message = str(info.value)
    assert str(config) in message
    assert "not valid TOML" in message
    assert "line 2" in message


def test_missing_config_file(tmp_path: Path):
    with pytest.raises(SettingsError, match="config file not found"):
        load_settings(config_file=tmp_path / "nope.toml", environ={})


def test_unknown_toml_key_is_an_error(tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_text("prot = 8080\n[db]\nurl = 'x'\n")
    with pytest.raises(SettingsError) as info:
        load_settings(config_file=config, environ={})
    assert "unknown setting 'prot'" in str(info.value)
    assert "unknown setting 'db'" in str(info.value)


def test_wrong_type_in_toml_names_key_and_file(tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_text('workers = "many"\n')
    with pytest.raises(SettingsError) as info:
        load_settings(config_file=config, environ={})
    assert f"workers in {config}" in str(info.value)
    assert "'many'" in str(info.value)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("GATEWAY_PORT", "eighty", "valid integer"),
        ("GATEWAY_PORT", "70000", "less than or equal to 65535"),
        ("GATEWAY_WORKERS", "0", "greater than or equal to 1"),
        ("GATEWAY_MAX_BODY_BYTES", "10", "greater than or equal to 1024"),
        ("GATEWAY_LEGACY_PARALLEL_USE_UNTIL", "next year", "valid date"),
        ("GATEWAY_SQLITE_SYNCHRONOUS", "OFF", "'FULL' or 'NORMAL'"),
        ("GATEWAY_DEMO_WORLD", "maybe", "'auto', 'on' or 'off'"),
        ("GATEWAY_DATA_DIR", " ", "must not be empty"),
    ],
)
def test_bad_environment_value_names_the_variable(name: str, value: str, expected: str):
    with pytest.raises(SettingsError) as info:
        load_settings(environ={name: value})
    message = str(info.value)
    assert f"environment variable {name}" in message
    assert expected in message


def test_unknown_gateway_variable_is_an_error():
    with pytest.raises(SettingsError) as info:
        load_settings(environ={"GATEWAY_DB_ULR": "sqlite:///x"})
    assert "GATEWAY_DB_ULR: unknown environment variable" in str(info.value)
    assert "GATEWAY_DB_URL" in str(info.value)  # the list of known names helps spot the typo


def test_every_problem_is_reported_at_once():
    with pytest.raises(SettingsError) as info:
        load_settings(environ={"GATEWAY_PORT": "x", "GATEWAY_WORKERS": "-1"})
    assert "GATEWAY_PORT" in str(info.value)
    assert "GATEWAY_WORKERS" in str(info.value)


def test_nonce_ttl_must_outlive_the_skew_window():
    with pytest.raises(
        SettingsError, match=r"nonce_ttl_s \(50\) must be at least 2 × clock_skew_s"
    ):
        load_settings(environ={"GATEWAY_NONCE_TTL_S": "50", "GATEWAY_CLOCK_SKEW_S": "30"})


def test_database_url_is_never_echoed():
    with pytest.raises(SettingsError) as info:
        load_settings(environ={"GATEWAY_DB_URL": "mysql://gw:hunter2@db/gw"})
    assert "hunter2" not in str(info.value)
    assert "sqlite:/// or postgresql" in str(info.value)


def test_settings_are_frozen_and_picklable(tmp_path: Path):
    s = load_settings(environ={}, overrides={"data_dir": tmp_path})
    with pytest.raises(ValidationError):
        s.port = 1  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(s)) == s  # handed to spawned workers as is


def test_direct_construction_validates_too():
    with pytest.raises(ValidationError):
        Settings(clock_skew_s=100, nonce_ttl_s=100)


def test_cli_reports_configuration_errors_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    for name in [n for n in os.environ if n.startswith("GATEWAY_")]:
        monkeypatch.delenv(name)
    config = tmp_path / "bad.toml"
    config.write_text("port = [\n")
    assert main(["db", "upgrade", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gateway: {config}: not valid TOML")
