"""The one secret policy (contract/secrets.py), table-driven, and the same table through each
deployable's settings: production refuses empty, short (< 16), well-known or default secrets
compared case- and whitespace-insensitively, and a secret equal to its username or id; the
refusal names the setting and never the value."""

from __future__ import annotations

import os
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from cloud.api.config import ApiSettings
from cloud.ingest.settings import IngestSettings
from contract.errors import ConfigError
from contract.secrets import (
    MIN_SECRET_LENGTH,
    SecretProblem,
    bounded_echo,
    describe_settings_error,
    redact_url,
    refuse_url_credentials,
    secret_problem,
)
from edge.config import load_settings

GOOD = "q7R-vX2m_Lp9wT4z"

#: (secret, identities, expected problem)
TABLE: list[tuple[str | None, tuple[str, ...], SecretProblem | None]] = [
    (None, (), SecretProblem.MISSING),
    ("", (), SecretProblem.MISSING),
    (" ", (), SecretProblem.MISSING),
    ("\t\n", (), SecretProblem.MISSING),
    ("changeme", (), SecretProblem.WELL_KNOWN),
    ("Changeme", (), SecretProblem.WELL_KNOWN),
    ("changeme ", (), SecretProblem.WELL_KNOWN),
    (" CHANGE ME ", (), SecretProblem.WELL_KNOWN),
    ("password", (), SecretProblem.WELL_KNOWN),
    ("admin", ("admin",), SecretProblem.WELL_KNOWN),
    ("1", (), SecretProblem.WELL_KNOWN),
    ("pantau-ingest-secret", (), SecretProblem.WELL_KNOWN),
    ("PANTAU-API-SECRET", (), SecretProblem.WELL_KNOWN),
    ("gw-kariadi", ("gw-kariadi",), SecretProblem.IS_IDENTITY),
    (" GW-Kariadi ", ("gw-kariadi",), SecretProblem.IS_IDENTITY),
    ("pantau-gw-gw-kariadi", ("gw-kariadi", "pantau-gw-gw-kariadi"), SecretProblem.IS_IDENTITY),
    ("k8#Qz-unique", (), SecretProblem.SHORT),
    (GOOD[:-1], (), SecretProblem.SHORT),
    (f"  {GOOD[:-1]}  ", (), SecretProblem.SHORT),
    (GOOD, ("gw-kariadi",), None),
    ("correct horse battery staple", ("reader",), None),
]


@pytest.mark.parametrize(("secret", "identities", "problem"), TABLE)
def test_secret_policy_table(
    secret: str | None, identities: tuple[str, ...], problem: SecretProblem | None
) -> None:
    assert secret_problem(secret, identities=identities) is problem
    wrapped = None if secret is None else SecretStr(secret)
    assert secret_problem(wrapped, identities=identities) is problem


def test_the_minimum_length_is_16() -> None:
    assert MIN_SECRET_LENGTH == 16
    assert len(GOOD) == 16


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("PANTAU_"):
            monkeypatch.delenv(name)


def _edge(password: str | None) -> None:
    env = {
        "PANTAU_MODE": "production",
        "PANTAU_GATEWAY_ID": "gw-kariadi",
        "PANTAU_SITE_ID": "rs-kariadi",
        "PANTAU_SERIAL_PORTS": '{"bus0": "/dev/ttyUSB0"}',
    }
    if password is not None:
        env["PANTAU_MQTT_PASSWORD"] = password
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        load_settings()


def _ingest(password: str | None) -> None:
    IngestSettings.model_validate(
        {
            "mode": "production",
            "mqtt_password": password,
            "influx_username": "writer",
            "influx_password": GOOD + "-influx",
        }
    )


def _ingest_influx(password: str | None) -> None:
    IngestSettings.model_validate(
        {
            "mode": "production",
            "mqtt_password": GOOD,
            "influx_username": "admin",
            "influx_password": password,
        }
    )


def _api(password: str | None) -> None:
    ApiSettings.model_validate(
        {"mode": "production", "influx_username": "reader", "influx_password": password}
    )


def _api_token(token: str | None) -> None:
    ApiSettings.model_validate({"mode": "production", "influx_token": token})


DEPLOYABLES: dict[str, tuple[Any, str, tuple[type[Exception], ...]]] = {
    "edge": (_edge, "PANTAU_MQTT_PASSWORD", (ConfigError,)),
    "ingest-mqtt": (_ingest, "PANTAU_MQTT_PASSWORD", (ValidationError,)),
    "ingest-influx": (_ingest_influx, "PANTAU_INFLUX_PASSWORD", (ValidationError,)),
    "api-influx": (_api, "PANTAU_INFLUX_PASSWORD", (ValidationError,)),
    "api-token": (_api_token, "PANTAU_INFLUX_TOKEN", (ValidationError,)),
}
#: What today's three lists let through somewhere, and the cases the issue names.
REFUSED = [
    " ",
    "changeme",
    "Changeme",
    "changeme ",
    "password",
    "admin",
    "1",
    "pantau-ingest-secret",
    "k8#Qz-unique",
]


def _refusal(build: Any, secret: str, errors: tuple[type[Exception], ...]) -> str:
    with pytest.raises(errors) as caught:
        build(secret)
    if isinstance(caught.value, ValidationError):
        return describe_settings_error(caught.value, what="settings", source="environment")
    return str(caught.value)


@pytest.mark.parametrize("secret", REFUSED)
@pytest.mark.parametrize("deployable", sorted(DEPLOYABLES))
def test_every_deployable_refuses_the_same_weak_secrets_without_printing_them(
    deployable: str, secret: str
) -> None:
    build, setting, errors = DEPLOYABLES[deployable]
    text = _refusal(build, secret, errors)
    assert f"production mode: {setting} " in text
    if len(secret.strip()) >= 4:
        assert secret.strip() not in text


@pytest.mark.parametrize(
    ("deployable", "identity"),
    [
        ("edge", " GW-Kariadi "),
        ("edge", "RS-KARIADI"),
        ("ingest-mqtt", "pantau-ingest"),
        ("ingest-mqtt", "Pantau-Ingest-1"),
        ("ingest-influx", "ADMIN "),
        ("api-influx", "reader"),
    ],
)
def test_a_secret_equal_to_its_username_or_id_is_refused(deployable: str, identity: str) -> None:
    build, setting, errors = DEPLOYABLES[deployable]
    problem = "is a well-known" if identity.strip().lower() == "admin" else "equals its username"
    assert f"production mode: {setting} {problem}" in _refusal(build, identity, errors)


@pytest.mark.parametrize("deployable", sorted(DEPLOYABLES))
def test_every_deployable_accepts_a_strong_secret(deployable: str) -> None:
    build, _, _ = DEPLOYABLES[deployable]
    build(GOOD)


def test_the_ingester_refuses_admin_admin_for_influxdb() -> None:
    with pytest.raises(ValidationError, match="PANTAU_INFLUX_PASSWORD is a well-known"):
        _ingest_influx("admin")


def test_settings_are_secret_str_and_hidden_in_repr() -> None:
    ingest = IngestSettings(mqtt_password=GOOD, influx_password=GOOD, influx_token=GOOD)  # type: ignore[arg-type]
    api = ApiSettings(influx_password=GOOD, influx_token=GOOD, mqtt_password=GOOD)  # type: ignore[arg-type]
    for settings in (ingest, api):
        assert GOOD not in repr(settings)
        assert GOOD not in str(settings.model_dump())


def test_describe_settings_error_is_one_line_without_the_input() -> None:
    with pytest.raises(ValidationError) as caught:
        IngestSettings.model_validate(
            {"mqtt_url": f"http://u:{GOOD}@host", "window_max_messages": GOOD}
        )
    assert GOOD in str(caught.value)  # pydantic's own text quotes the input...
    line = describe_settings_error(caught.value, what="ingest settings", source="environment")
    assert line == (  # ...ours does not
        "invalid ingest settings (environment): mqtt_url (PANTAU_MQTT_URL): must be"
        " mqtt://host[:port] or mqtts://host[:port] (TLS), not 'http://***@host';"
        " window_max_messages (PANTAU_WINDOW_MAX_MESSAGES): Input should be a valid integer,"
        " unable to parse string as an integer"
    )


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("http://reader:pw@influx:8086/x", "http://***@influx:8086/x"),
        ("mqtts://gw:p@ss@broker", "mqtts://***@broker"),
        # "#", "/" and "?" end the authority for urlsplit, not for a password
        ("mqtt://gw:a#b/c?d@broker:1883", "mqtt://***@broker:1883"),
        (
            "'mqtt://gw:p#w@broker' and 'http://influx:8086'",
            "'mqtt://***@broker' and 'http://influx:8086'",
        ),
        ("at http://influx:8086 and mqtt://a:b@c:1", "at http://influx:8086 and mqtt://***@c:1"),
        ("no url here", "no url here"),
    ],
)
def test_redact_url_removes_credentials(text: str, redacted: str) -> None:
    assert redact_url(text) == redacted


def test_bounded_echo_cuts_long_input_and_says_how_long() -> None:
    assert bounded_echo("short") == "'short'"
    assert bounded_echo("y" * 1000) == "'" + "y" * 63 + "... (1000 characters)"


def test_an_mqtt_url_with_credentials_is_refused_without_echoing_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The MQTT URL is logged on every reconnect, so it may not carry the password."""
    url = f"mqtt://pantau-ingest:{GOOD}@broker:1883"
    with pytest.raises(ValidationError) as caught:
        IngestSettings(mqtt_url=url)
    assert describe_settings_error(caught.value, what="ingest settings", source="env") == (
        "invalid ingest settings (env): mqtt_url (PANTAU_MQTT_URL): must not hold credentials"
        " ('mqtt://***@broker:1883'); set the username and password settings instead"
    )
    for name, value in {
        "PANTAU_GATEWAY_ID": "gw-kariadi",
        "PANTAU_SITE_ID": "rs-kariadi",
        "PANTAU_SERIAL_PORTS": '{"bus0": "/dev/ttyUSB0"}',
        "PANTAU_MQTT_URL": url,
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as edge_error:
        load_settings()
    assert str(edge_error.value) == (
        "invalid edge settings (environment): mqtt_url (PANTAU_MQTT_URL): must not hold"
        " credentials ('mqtt://***@broker:1883'); set the username and password settings"
        " instead"
    )


@pytest.mark.parametrize("url", ["mqtt://gw:a#b@broker", "http://u:p/q@influx:8086", "mqtt://u@h"])
def test_credentials_are_refused_even_where_urlsplit_sees_none(url: str) -> None:
    with pytest.raises(ValueError, match="must not hold credentials") as caught:
        refuse_url_credentials(url, setting="PANTAU_X_URL")
    assert "a#b" not in str(caught.value)
    assert "p/q" not in str(caught.value)
