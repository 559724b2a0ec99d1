"""``pantau gateway add|list|show|revoke|rotate`` against a real Mosquitto (dynamic security,
no restart) and a real edge agent on a PTY: a new gateway speaks on its own topics only, a
revoked one is cut off, refused and forgotten, a committed rotation loses no reading, and
``list`` reads last-seen from the retained status."""

from __future__ import annotations

import shutil
import stat
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from city import DEMO_CITY, load_registry
from contract.status import GatewayState, GatewayStatus
from contract.topics import ID_PATTERN
from edge import EdgeAgent, EdgeSettings, load_settings
from pantau.broker_cli import ADMIN_PASSWORD_ENV
from pantau.gateway_cli import SECRET_ENV, gateway_app
from pantau.services import Mosquitto
from tests.broker_support import NOT_AUTHORIZED, Peer
from tests.edge_support import GW, SITE, T0, PacedSensor, Watcher, running, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_pantau_env")]

STATUS = f"pantau/v1/{SITE}/{GW}/status"
READINGS = f"pantau/v1/{SITE}/{GW}/readings"
NO_MATCHING_SUBSCRIBERS = 16
RULE = f"use {ID_PATTERN}, not starting pantau-."
SENSORS = """\
- {id: bed-test-icu, kind: bed, ward: ICU Lt. 5, bed_type: 26, beds: 4}
- {id: bed-test-hcu, kind: bed, ward: HCU, bed_type: 7, beds: 2, port: bus1}
"""


@pytest.fixture
def city_file(tmp_path: Path) -> Path:
    path = tmp_path / "city.yaml"
    shutil.copyfile(DEMO_CITY, path)
    return path


def _cli(broker: Mosquitto, city_file: Path, *args: str, **env: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        gateway_app,
        [*args, "--city", str(city_file), "--url", broker.url],
        env={ADMIN_PASSWORD_ENV: broker.users["pantau-admin"], **env},
    )
    return result.exit_code, result.stdout, result.stderr


def _add(broker: Mosquitto, city_file: Path, tmp_path: Path, *, out: bool = False) -> str:
    """Add gw-test with two sensors (its config printed, or written with --out); its broker
    password."""
    sensors = tmp_path / "sensors.yaml"
    sensors.write_text(SENSORS)
    config = tmp_path / "edge.yaml"
    args = ["add", GW, "--site", SITE, "--sensors", str(sensors)]
    code, printed, _err = _cli(broker, city_file, *args, *(["--out", str(config)] if out else []))
    assert code == 0
    if out:
        assert printed == ""
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
    else:
        config.write_text(printed)
    settings = load_settings(config)
    assert settings.mqtt_password is not None
    return settings.mqtt_password.get_secret_value()


def test_add_registers_the_gateway_and_it_may_publish_on_its_own_topics_only(
    mosquitto: Mosquitto, city_file: Path, tmp_path: Path
) -> None:
    password = _add(mosquitto, city_file, tmp_path, out=True)
    settings = load_settings(tmp_path / "edge.yaml")
    assert (settings.mode, settings.gateway_id, settings.site_id) == ("production", GW, SITE)
    assert settings.mqtt_url == mosquitto.url
    assert settings.serial_ports == {"bus0": "/dev/ttyUSB0", "bus1": "/dev/ttyUSB1"}
    assert settings.sensors == ["bed-test-icu", "bed-test-hcu"]
    registry = load_registry(city_file)
    assert registry.gateways[GW].site == SITE
    assert [s.id for s in registry.sensors_of(gateway=GW)] == ["bed-test-icu", "bed-test-hcu"]
    with Peer(mosquitto, GW, password) as gw:
        assert gw.accepted
        assert gw.publish(READINGS, b"x") == NO_MATCHING_SUBSCRIBERS
        assert gw.publish("pantau/v1/rs-kariadi/gw-kariadi/readings", b"x") == NOT_AUTHORIZED
        assert gw.publish("pantau/v1/pasar-johar/gw-test/readings", b"x") == NOT_AUTHORIZED


def test_add_refuses_a_duplicate_an_unknown_site_a_bad_id_and_bad_sensors_in_one_sentence(
    mosquitto: Mosquitto, city_file: Path, tmp_path: Path
) -> None:
    before = city_file.read_bytes()
    cases = {
        ("gw-kariadi", "rs-kariadi"): f"gw-kariadi is already registered in {city_file}.",
        ("gw-x", "rs-nowhere"): f"{city_file} has no site 'rs-nowhere'; add the site to it first.",
        ("GW X", "rs-kariadi"): f"'GW X' is not a device id: {RULE}",
        ("pantau-api", "rs-kariadi"): f"'pantau-api' is not a device id: {RULE}",
    }
    for (device, site), sentence in cases.items():
        code, out, err = _cli(mosquitto, city_file, "add", device, "--site", site)
        assert (code, out, err) == (2, "", sentence + "\n")
    bad_sensors = tmp_path / "sensors.yaml"
    bad_sensors.write_text("- {id: bed-x, kind: bed, ward: ICU, bed_type: 26, beds: 0}\n")
    code, out, err = _cli(
        mosquitto, city_file, "add", "gw-x", "--site", "rs-kariadi", "--sensors", str(bad_sensors)
    )
    assert (code, out) == (2, "")
    assert err == (
        f"refused, {city_file} left unchanged: {city_file} at sensors[30].beds: "
        "Input should be greater than 0\n"
    )
    mosquitto.add_user("gw-orphan", "orphan-pw", site="rs-kariadi")
    code, out, err = _cli(mosquitto, city_file, "add", "gw-orphan", "--site", "rs-kariadi")
    assert (code, out, err) == (
        2,
        "",
        "gw-orphan already has a broker account but no registry entry; "
        "remove it first with `pantau gateway revoke gw-orphan`.\n",
    )
    with Peer(mosquitto, "gw-orphan", "orphan-pw") as orphan:
        assert (
            orphan.publish("pantau/v1/rs-kariadi/gw-orphan/status", b"{}", retain=True)
            == NO_MATCHING_SUBSCRIBERS
        )
        code, out, _err = _cli(mosquitto, city_file, "revoke", "gw-orphan")
        assert (code, out) == (
            0,
            "gw-orphan revoked: cut off, refused from now on, status cleared "
            f"(not in {city_file}).\n",
        )
        orphan.wait_disconnected()
    with mosquitto.control() as ctl:
        _accounts, statuses = ctl.accounts_and_statuses()
    assert "pantau/v1/rs-kariadi/gw-orphan/status" not in statuses
    code, _out, err = _cli(mosquitto, city_file, "revoke", "pantau-api")
    assert (code, err) == (
        2,
        f"pantau-api is neither in {city_file} nor a device's broker account.\n",
    )
    assert city_file.read_bytes() == before
    with mosquitto.control() as ctl:
        assert "gw-x" not in ctl.list_clients()


def test_revoke_cuts_a_connected_gateway_off_refuses_it_and_clears_its_status(
    mosquitto: Mosquitto, city_file: Path, tmp_path: Path
) -> None:
    password = _add(mosquitto, city_file, tmp_path)
    online = GatewayStatus(gw=GW, state=GatewayState.ONLINE, ts=T0)
    with Peer(mosquitto, GW, password) as gw:
        assert gw.publish(STATUS, online.model_dump_json().encode(), retain=True) == 16
        code, _out, err = _cli(mosquitto, city_file, "revoke", GW)
        assert (code, err) == (
            2,
            f"{GW} still has 2 sensors in {city_file}; pass --remove-sensors to remove them "
            "with it.\n",
        )
        assert gw.accepted
        assert not gw.disconnected  # a refused revoke changed nothing
        code, out, _err = _cli(mosquitto, city_file, "revoke", GW, "--remove-sensors")
        assert (code, out) == (
            0,
            f"{GW} revoked: cut off, refused from now on, status cleared; "
            f"removed from {city_file} with 2 sensors.\n",
        )
        gw.wait_disconnected()
    with Peer(mosquitto, GW, password) as again:
        assert not again.accepted
    with mosquitto.control() as ctl:
        _accounts, statuses = ctl.accounts_and_statuses()
    assert STATUS not in statuses
    assert "pantau/v1/rs-kariadi/gw-kariadi/status" not in statuses  # nothing else touched
    registry = load_registry(city_file)
    assert GW not in registry.gateways
    assert registry.sensors_of(gateway=GW) == []
    assert city_file.read_bytes() == DEMO_CITY.read_bytes()


def test_list_and_show_read_last_seen_and_spool_from_the_retained_status(
    mosquitto: Mosquitto, city_file: Path, tmp_path: Path
) -> None:
    password = _add(mosquitto, city_file, tmp_path)
    now_ms = time.time_ns() // 1_000_000
    status = GatewayStatus(
        gw=GW,
        state=GatewayState.ONLINE,
        ts=now_ms - 150_000,  # two and a half minutes ago
        stats={"spool_depth": 17},
        sensors_last_seen={"bed-test-icu": now_ms - 7_200_000},
        sensors_silent=["bed-test-icu"],
    )
    with Peer(mosquitto, GW, password) as gw:
        assert gw.publish(STATUS, status.model_dump_json().encode(), retain=True) == 16
    code, out, _err = _cli(mosquitto, city_file, "list")
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows[GW] == [GW, SITE, "gateway", "online", "2", "min", "ago", "17", "2", "ok"]
    assert rows["gw-kariadi"] == [
        "gw-kariadi",
        "rs-kariadi",
        "gateway",
        "no",
        "status",
        "-",
        "-",
        "6",
        "missing",
    ]
    assert len(rows) == 15
    code, out, _err = _cli(mosquitto, city_file, "show", GW)
    assert code == 0
    assert out.splitlines() == [
        f"{GW} (gateway) at {SITE}: RSUP Dr. Kariadi",
        "account:   ok",
        "link:      online",
        "last seen: 2 min ago",
        "spool:     17 readings waiting",
        "sensors:   2",
        "  bed-test-icu  bed  bus0  heard 2 h ago, SILENT",
        "  bed-test-hcu  bed  bus1  never heard",
    ]


def test_rotate_issues_a_secret_and_commit_loses_no_reading_of_a_publishing_agent(
    mosquitto: Mosquitto, city_file: Path, tmp_path: Path, pty_pair: tuple[int, str]
) -> None:
    old = _add(mosquitto, city_file, tmp_path)
    code, out, err = _cli(mosquitto, city_file, "rotate", GW)
    assert code == 0
    assert "The old one keeps working until" in err
    new = out.strip().removeprefix("PANTAU_MQTT_PASSWORD_NEXT=")
    assert len(new) == 24
    code, out, _err = _cli(mosquitto, city_file, "list")
    assert "rotation pending since" in next(line for line in out.splitlines() if GW in line)
    # A commit with a secret other than the one issued is refused, and changes nothing.
    code, _out, err = _cli(mosquitto, city_file, "rotate", GW, "--commit", **{SECRET_ENV: old})
    assert code == 2
    assert err.startswith(f"that is not the secret issued for {GW} at ")

    master, port = pty_pair
    settings = EdgeSettings(
        gateway_id=GW,
        site_id=SITE,
        mqtt_url=mosquitto.url,
        mqtt_password=old,
        mqtt_password_next=new,  # installed on the gateway before the commit
        serial_ports={"bus0": port},
        spool_path=tmp_path / "edge" / "gw.spool",
        batch_max_readings=5,
        batch_max_delay_s=0.1,
        reconnect_base_s=0.05,
        reconnect_cap_s=0.5,
        status_interval_s=0.3,
    )
    agent = EdgeAgent(settings=settings)
    sensors = PacedSensor(master, ("bed-test-icu",), t0=T0)
    written = sensors.written

    with Watcher(mosquitto) as watcher, running(agent):
        wait_for(lambda: len(watcher.statuses()) > 0, "online status")
        sensors.start()
        wait_for(lambda: len(watcher.readings()) >= 30, "readings before the commit")
        code, out, _err = _cli(mosquitto, city_file, "rotate", GW, "--commit", **{SECRET_ENV: new})
        assert code == 0
        wait_for(lambda: agent.status().stats["connects"] == 2, "agent back with the new secret")
        after = len(written)
        wait_for(lambda: len(written) >= after + 30, "readings written after the commit")
        sensors.stop()
        wait_for(
            lambda: {(r.sensor, r.seq) for r in watcher.readings()} == set(written),
            "every written reading",
            timeout=20,
        )
    got = [(r.sensor, r.seq) for r in watcher.readings()]
    assert set(got) == set(written)
    assert len(set(got)) == len(written)
    with Peer(mosquitto, GW, old) as stale:
        assert not stale.accepted
    with Peer(mosquitto, GW, new) as fresh:
        assert fresh.accepted
    code, out, _err = _cli(mosquitto, city_file, "list")
    assert next(line for line in out.splitlines() if GW in line).endswith(" ok")
