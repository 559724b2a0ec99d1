"""Secrets as files (``PANTAU_<NAME>_FILE``, contract/secrets.py): the one way compose's
``secrets:`` reach every deployable's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.api.config import ApiSettings
from cloud.ingest.accounts import InitDbSettings
from cloud.ingest.settings import IngestSettings
from contract.secrets import secret_file_values
from edge.config import EdgeSettings


def test_a_secret_file_gives_the_setting_without_its_trailing_line_end(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret with spaces\n")
    env = {"PANTAU_INFLUX_PASSWORD_FILE": str(tmp_path / "pw")}
    assert secret_file_values(ApiSettings, environ=env) == {"influx_password": "s3cret with spaces"}


def test_only_secret_fields_are_read_from_files(tmp_path: Path) -> None:
    (tmp_path / "v").write_text("x")
    env = {"PANTAU_INFLUX_URL_FILE": str(tmp_path / "v"), "PANTAU_MODE_FILE": str(tmp_path / "v")}
    assert secret_file_values(IngestSettings, environ=env) == {}


def test_a_variable_and_its_file_together_are_refused(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("one")
    env = {"PANTAU_MQTT_PASSWORD": "two", "PANTAU_MQTT_PASSWORD_FILE": str(tmp_path / "pw")}
    with pytest.raises(ValueError, match=r"^set PANTAU_MQTT_PASSWORD or PANTAU_MQTT_PASSWORD_FILE"):
        secret_file_values(IngestSettings, environ=env)


def test_an_unreadable_file_names_the_variable_and_path_only(tmp_path: Path) -> None:
    env = {"PANTAU_INFLUX_TOKEN_FILE": str(tmp_path / "missing")}
    with pytest.raises(ValueError, match=r"^PANTAU_INFLUX_TOKEN_FILE: ") as refused:
        secret_file_values(ApiSettings, environ=env)
    assert str(refused.value) == (
        f"PANTAU_INFLUX_TOKEN_FILE: cannot read {str(tmp_path / 'missing')!r}: "
        "No such file or directory"
    )


@pytest.mark.usefixtures("no_pantau_env")
def test_every_deployables_settings_read_secret_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "mqtt": "mqtt-secret-0123456789",
        "influx": "influx-secret-0123456789",
        "writer": "writer-secret-0123456789",
    }.items():
        (tmp_path / name).write_text(value + "\n")
    monkeypatch.setenv("PANTAU_MQTT_PASSWORD_FILE", str(tmp_path / "mqtt"))
    monkeypatch.setenv("PANTAU_INFLUX_PASSWORD_FILE", str(tmp_path / "influx"))
    monkeypatch.setenv("PANTAU_INFLUX_WRITER_PASSWORD_FILE", str(tmp_path / "writer"))
    ingest = IngestSettings()
    api = ApiSettings()
    init = InitDbSettings()
    edge = EdgeSettings(gateway_id="gw-a", site_id="rs-a", serial_ports={"bus0": "/dev/null"})
    assert ingest.mqtt_password.get_secret_value() == "mqtt-secret-0123456789"
    assert ingest.influx_password is not None
    assert ingest.influx_password.get_secret_value() == "influx-secret-0123456789"
    assert api.influx_password is not None
    assert api.influx_password.get_secret_value() == "influx-secret-0123456789"
    assert init.influx_writer_password is not None
    assert init.influx_writer_password.get_secret_value() == "writer-secret-0123456789"
    assert edge.mqtt_password is not None
    assert edge.mqtt_password.get_secret_value() == "mqtt-secret-0123456789"


@pytest.mark.usefixtures("no_pantau_env")
def test_init_db_needs_no_mqtt_password_but_refuses_weak_influx_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PANTAU_MODE", "production")
    monkeypatch.setenv("PANTAU_INFLUX_USERNAME", "pantau-admin")
    monkeypatch.setenv("PANTAU_INFLUX_PASSWORD", "admin-secret-0123456789")
    monkeypatch.setenv("PANTAU_INFLUX_WRITER_PASSWORD", "writer-secret-0123456789")
    monkeypatch.setenv("PANTAU_INFLUX_READER_PASSWORD", "changeme")
    with pytest.raises(ValueError, match="PANTAU_INFLUX_READER_PASSWORD is a well-known"):
        InitDbSettings()
    monkeypatch.setenv("PANTAU_INFLUX_READER_PASSWORD", "reader-secret-0123456789")
    assert [a.name for a in InitDbSettings().accounts] == ["pantau-writer", "pantau-reader"]
