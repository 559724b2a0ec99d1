"""The one MQTT URL type (contract/mqtturl.py) every deployable's settings use: schemes, default
ports, refusals in one sentence without the password, and the same answer in every settings
class."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from cloud.api.config import ApiSettings
from cloud.ingest.settings import IngestSettings
from contract.errors import ConfigError
from contract.mqtttls import MqttTlsSettings, tls_context
from contract.mqtturl import BrokerUrl, MqttUrl
from edge.config import EdgeSettings

SECRET = "k8#Qz-unique-0f3a9c"  # noqa: S105 - a test value that must never be echoed


class _Holder(BaseModel):
    url: MqttUrl


@pytest.mark.parametrize(
    ("text", "normal", "host", "port", "tls"),
    [
        ("mqtt://broker", "mqtt://broker:1883", "broker", 1883, False),
        (
            "mqtts://broker.example.go.id",
            "mqtts://broker.example.go.id:8883",
            "broker.example.go.id",
            8883,
            True,
        ),
        ("mqtts://10.0.0.5:18883", "mqtts://10.0.0.5:18883", "10.0.0.5", 18883, True),
        ("MQTT://Broker:1884/", "mqtt://broker:1884", "broker", 1884, False),
        ("mqtt://[::1]:1883", "mqtt://[::1]:1883", "::1", 1883, False),
    ],
)
def test_a_broker_url_parses_with_default_ports_1883_and_8883(
    text: str, normal: str, host: str, port: int, tls: bool
) -> None:
    url = _Holder(url=text).url
    assert (url, url.host, url.port, url.tls) == (normal, host, port, tls)
    assert isinstance(url, str)
    assert _Holder.model_validate_json(_Holder(url=text).model_dump_json()).url == normal
    assert pickle.loads(pickle.dumps(url)).port == port  # noqa: S301 - our own bytes


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            f"http://reader:{SECRET}@broker:1883",
            "must be mqtt://host[:port] or mqtts://host[:port] (TLS), not 'http://***@broker:1883'",
        ),
        (
            "ws://broker",
            "must be mqtt://host[:port] or mqtts://host[:port] (TLS), not 'ws://broker'",
        ),
        (
            f"mqtts://gw:{SECRET}@broker",
            "must not hold credentials ('mqtts://***@broker'); set the username and password"
            " settings instead",
        ),
        ("mqtt://broker:port", "has a port that is not a number 0-65535: 'mqtt://broker:port'"),
        ("mqtt://broker/pantau", "must be only scheme://host[:port], not 'mqtt://broker/pantau'"),
    ],
)
def test_other_schemes_and_credentials_are_refused_in_one_sentence_without_the_password(
    text: str, message: str
) -> None:
    with pytest.raises(ValueError, match=r"^(must|has) ") as caught:
        BrokerUrl.parse(text)
    assert str(caught.value) == message
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("settings_class", [EdgeSettings, IngestSettings, ApiSettings])
def test_every_deployable_reads_the_url_and_tls_files_from_the_same_env_names(
    settings_class: type[MqttTlsSettings],
    monkeypatch: pytest.MonkeyPatch,
    no_pantau_env: None,
    tmp_path: Path,
) -> None:
    for name, value in {
        "PANTAU_GATEWAY_ID": "gw-kariadi",
        "PANTAU_SITE_ID": "rs-kariadi",
        "PANTAU_SERIAL_PORTS": '{"bus0": "/dev/ttyUSB0"}',
        "PANTAU_MQTT_URL": "mqtts://broker.example.go.id",
        "PANTAU_MQTT_CA_FILE": str(tmp_path / "ca.crt"),
        "PANTAU_MQTT_CERT_FILE": str(tmp_path / "gw.crt"),
        "PANTAU_MQTT_KEY_FILE": str(tmp_path / "gw.key"),
    }.items():
        monkeypatch.setenv(name, value)
    settings = settings_class()
    url = settings.mqtt_url  # type: ignore[attr-defined]
    assert (url.host, url.port, url.tls) == ("broker.example.go.id", 8883, True)
    assert (settings.mqtt_ca_file, settings.mqtt_cert_file, settings.mqtt_key_file) == (
        tmp_path / "ca.crt",
        tmp_path / "gw.crt",
        tmp_path / "gw.key",
    )


def test_a_client_certificate_needs_its_key() -> None:
    with pytest.raises(ValidationError) as caught:
        MqttTlsSettings(mqtt_cert_file=Path("gw.crt"))
    assert "PANTAU_MQTT_CERT_FILE and PANTAU_MQTT_KEY_FILE go together" in str(caught.value)


def test_an_unreadable_ca_file_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.crt"
    with pytest.raises(ConfigError) as caught:
        tls_context(ca_file=missing)
    assert str(caught.value) == f"PANTAU_MQTT_CA_FILE {missing}: No such file or directory"
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate")
    with pytest.raises(ConfigError) as caught:
        tls_context(ca_file=garbage)
    assert str(caught.value).startswith(f"PANTAU_MQTT_CA_FILE {garbage}: ")
