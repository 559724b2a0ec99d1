"""What ``pantau gateway`` prints (pantau.gateway_view): an edge config the agent loads as it
is, a direct device's mosquitto_pub line the contract accepts, and ages in words."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from city import Registry
from contract.payload import SingleReading
from contract.status import GatewayState as Wire
from contract.status import GatewayStatus
from edge.config import load_settings
from pantau.gateway_view import age_words, edge_config, gateway_state, publish_line

SECRET = "Zq3-vN8_xYk2LmP0aBcD4eFg"  # noqa: S105 - a made-up secret


@pytest.mark.usefixtures("no_pantau_env")
def test_the_printed_edge_config_loads_as_production_settings_of_that_gateway(
    city: Registry, tmp_path: Path
) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(
        edge_config(city, "gw-kariadi", mqtt_url="mqtts://mqtt.example:8883", password=SECRET)
    )
    settings = load_settings(path)
    assert settings.mode == "production"
    assert (settings.gateway_id, settings.site_id) == ("gw-kariadi", "rs-kariadi")
    assert settings.mqtt_url == "mqtts://mqtt.example:8883"
    assert settings.mqtt_password is not None
    assert settings.mqtt_password.get_secret_value() == SECRET
    assert settings.serial_ports == {"bus0": "/dev/ttyUSB0", "bus1": "/dev/ttyUSB1"}
    assert len(settings.sensors) == 6
    assert settings.sensors[0] == "bed-kariadi-icu"


def test_a_direct_devices_line_publishes_a_reading_the_contract_accepts(city: Registry) -> None:
    line = publish_line(city, "kiosk-candisari", mqtt_url="mqtt://10.0.0.5:1884", password=SECRET)
    args = shlex.split(line)
    assert args[:15] == [
        "mosquitto_pub",
        "-h",
        "10.0.0.5",
        "-p",
        "1884",
        "-i",
        "kiosk-candisari",
        "-u",
        "kiosk-candisari",
        "-P",
        SECRET,
        "-q",
        "1",
        "-t",
        "pantau/v1/kec-candisari/kiosk-candisari/reading",
    ]
    reading = SingleReading.model_validate_json(args[16])
    assert (reading.sensor, reading.values) == (
        "q-candisari",
        {"issued": 0, "served": 0, "counters_open": 0},
    )


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (-5, "just now"),
        (0.4, "just now"),
        (42, "42 s ago"),
        (59.9, "59 s ago"),
        (300, "5 min ago"),
        (3 * 3600 + 59, "3 h ago"),
        (86400, "1 day ago"),
        (2 * 86400 + 5, "2 days ago"),
    ],
)
def test_ages_read_in_words(seconds: float, words: str) -> None:
    assert age_words(seconds) == words


def test_state_comes_from_the_retained_status(city: Registry) -> None:
    status = GatewayStatus(
        gw="gw-johar", state=Wire.ONLINE, ts=1_000_000, stats={"spool_depth": 17}
    )
    state = gateway_state(
        city,
        "gw-johar",
        status=status.model_dump_json().encode(),
        account="ok",
        now_ms=1_000_000 + 90_000,
    )
    assert state.row() == [
        "gw-johar",
        "pasar-johar",
        "gateway",
        "online",
        "1 min ago",
        "17",
        "2",
        "ok",
    ]
    none = gateway_state(city, "gw-johar", status=None, account="missing", now_ms=0)
    assert (none.link, none.last_seen, none.spool) == ("no status", "-", "-")
    bad = gateway_state(city, "gw-johar", status=b"{", account="ok", now_ms=0)
    assert bad.link == "unreadable status"
