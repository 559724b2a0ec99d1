"""Edge settings: env over file over defaults, and a production gateway refuses to start
without its own broker password."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from contract.errors import ConfigError
from edge.cli import app
from edge.config import EdgeSettings, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("PANTAU_"):
            monkeypatch.delenv(name)


def _base_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PANTAU_GATEWAY_ID", "gw-kariadi")
    monkeypatch.setenv("PANTAU_SITE_ID", "rs-kariadi")
    monkeypatch.setenv("PANTAU_SERIAL_PORTS", '{"bus0": "/dev/ttyUSB0"}')


def test_production_without_password_is_a_clear_start_up_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _base_env(monkeypatch)
    monkeypatch.setenv("PANTAU_MODE", "production")
    with pytest.raises(ConfigError, match="PANTAU_MQTT_PASSWORD is missing or empty"):
        load_settings()


def test_production_with_a_default_password_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _base_env(monkeypatch)
    monkeypatch.setenv("PANTAU_MODE", "production")
    monkeypatch.setenv("PANTAU_MQTT_PASSWORD", "changeme")
    with pytest.raises(ConfigError, match="PANTAU_MQTT_PASSWORD is a well-known or default value"):
        load_settings()


def test_production_with_a_real_password_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    _base_env(monkeypatch)
    monkeypatch.setenv("PANTAU_MODE", "production")
    monkeypatch.setenv("PANTAU_MQTT_PASSWORD", "k8#Qz-unique-0f3a9c")
    settings = load_settings()
    assert settings.mqtt_password is not None
    assert settings.mqtt_password.get_secret_value() == "k8#Qz-unique-0f3a9c"


def test_production_refuses_a_default_next_password_of_a_rotation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _base_env(monkeypatch)
    monkeypatch.setenv("PANTAU_MODE", "production")
    monkeypatch.setenv("PANTAU_MQTT_PASSWORD", "k8#Qz-unique-0f3a9c")
    monkeypatch.setenv("PANTAU_MQTT_PASSWORD_NEXT", "changeme")
    with pytest.raises(
        ConfigError, match="PANTAU_MQTT_PASSWORD_NEXT is a well-known or default value"
    ):
        load_settings()
    monkeypatch.setenv("PANTAU_MQTT_PASSWORD_NEXT", "m2$Yx-unique-7d1b4e")
    settings = load_settings()
    assert settings.mqtt_password_next is not None
    assert settings.mqtt_password_next.get_secret_value() == "m2$Yx-unique-7d1b4e"


def test_env_names_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    _base_env(monkeypatch)
    monkeypatch.setenv("PANTAU_MQTT_URL", "mqtts://broker.example.go.id")
    settings = load_settings()
    assert settings.mode == "development"
    assert settings.serial_ports == {"bus0": "/dev/ttyUSB0"}
    assert settings.username == "gw-kariadi"
    assert settings.client_id == "gw-kariadi"
    url = settings.mqtt_url
    assert (url, url.host, url.port, url.tls) == (
        "mqtts://broker.example.go.id:8883",
        "broker.example.go.id",
        8883,
        True,
    )
    assert settings.batch_max_readings == 200
    assert settings.batch_max_delay_s == 0.5
    assert settings.keepalive_s == 15
    assert settings.status_interval_s == 30.0
    assert settings.status_file == Path("pantau-edge.spool.status.json")


def test_env_overrides_the_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(
        "gateway_id: gw-file\nsite_id: rs-file\nbatch_max_readings: 50\n"
        "serial_ports:\n  bus0: socket://10.0.0.5:4001\n"
    )
    monkeypatch.setenv("PANTAU_BATCH_MAX_READINGS", "9")
    settings = load_settings(config)
    assert settings.gateway_id == "gw-file"
    assert settings.batch_max_readings == 9
    assert settings.serial_ports == {"bus0": "socket://10.0.0.5:4001"}


def test_an_unknown_file_key_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _base_env(monkeypatch)
    config = tmp_path / "edge.yaml"
    config.write_text("batch_max_reading: 50\n")
    with pytest.raises(ConfigError, match="batch_max_reading"):
        load_settings(config)


def test_bad_values_name_their_env_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    _base_env(monkeypatch)
    monkeypatch.setenv("PANTAU_MQTT_URL", "http://broker:1883")
    monkeypatch.setenv("PANTAU_BATCH_MAX_READINGS", "5000")
    with pytest.raises(ConfigError) as err:
        load_settings()
    text = str(err.value)
    assert "mqtt_url (PANTAU_MQTT_URL)" in text
    assert "batch_max_readings (PANTAU_BATCH_MAX_READINGS)" in text


def test_no_serial_port_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _base_env(monkeypatch)
    monkeypatch.setenv("PANTAU_SERIAL_PORTS", "{}")
    with pytest.raises(ConfigError, match="serial_ports"):
        load_settings()


def test_a_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read: No such file or directory"):
        load_settings(tmp_path / "nope.yaml")


def test_cli_run_exits_2_with_the_message_in_production_without_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _base_env(monkeypatch)
    monkeypatch.setenv("PANTAU_MODE", "production")
    result = CliRunner().invoke(app, ["run"])
    assert result.exit_code == 2
    assert "PANTAU_MQTT_PASSWORD is missing" in result.output


def test_cli_status_prints_the_status_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _base_env(monkeypatch)
    monkeypatch.setenv("PANTAU_SPOOL_PATH", str(tmp_path / "gw.spool"))
    settings = EdgeSettings()
    settings.status_file.write_bytes(b'{"v":1,"gw":"gw-kariadi","state":"online","ts":1}')
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 0
    assert orjson.loads(result.output)["state"] == "online"


def test_a_key_repeated_in_the_config_file_is_refused_with_its_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The YAML settings source reads through contract.yamlfile: ``yaml.safe_load`` would
    keep the second ``batch_max_readings`` silently."""
    _base_env(monkeypatch)
    config = tmp_path / "edge.yaml"
    config.write_text("batch_max_readings: 50\nbatch_max_readings: 60\n")
    with pytest.raises(
        ConfigError, match=r"duplicate key 'batch_max_readings' \(first given at line 1\)"
    ):
        load_settings(config)
