"""device-access.env, the one file a device maker loads to attach to the demo: a shell that
sources it gets the broker, the API, every account's password and a left-out gateway's serial
lines, exactly; a --without naming no gateway stops the demo before it starts anything."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from city import DEMO_CITY, Registry
from pantau.device_access import device_access, env_name
from pantau.stack import LocalStack, StackError

WEIRD = "pa$$ 'w\"ord`x"  # a password a naive file would break on


def test_sourcing_the_file_sets_every_documented_variable(city: Registry, tmp_path: Path) -> None:
    passwords = {gw: f"pw-{gw}" for gw in city.gateways} | {"kiosk-candisari": WEIRD}
    ports = {"gw-iso-kauman": {"bus0": "/dev/pts/7"}, "gw-kariadi": {"bus0": "/dev/pts/1"}}
    path = tmp_path / "device-access.env"
    path.write_text(
        device_access(
            path=path,
            registry=city,
            passwords=passwords,
            mqtt_host="127.0.0.1",
            mqtt_port=41883,
            api_url="http://127.0.0.1:48000",
            serial_ports=ports,
            without={"gw-iso-kauman"},
            admin_password="admin-pw",  # noqa: S106 - a made-up secret
            city_file=tmp_path / "city.yaml",
        )
    )
    names = [
        "PANTAU_MQTT_HOST",
        "PANTAU_MQTT_PORT",
        "PANTAU_MQTT_URL",
        "PANTAU_API",
        "KIOSK_CANDISARI_PASSWORD",
        "GW_KARIADI_PASSWORD",
        "GW_ISO_KAUMAN_PASSWORD",
        "GW_ISO_KAUMAN_SERIAL_PORTS",
        "GW_KARIADI_SERIAL_PORTS",
        "PANTAU_BROKER_ADMIN_PASSWORD",
        "PANTAU_CITY_FILE",
    ]
    script = f". {path} && " + " && ".join(f'printf "%s\\0" "${{{n}-unset}}"' for n in names)
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    got = dict(zip(names, done.stdout.split("\0")[:-1], strict=True))
    assert got == {
        "PANTAU_MQTT_HOST": "127.0.0.1",
        "PANTAU_MQTT_PORT": "41883",
        "PANTAU_MQTT_URL": "mqtt://127.0.0.1:41883",
        "PANTAU_API": "http://127.0.0.1:48000",
        "KIOSK_CANDISARI_PASSWORD": WEIRD,
        "GW_KARIADI_PASSWORD": "pw-gw-kariadi",
        "GW_ISO_KAUMAN_PASSWORD": "pw-gw-iso-kauman",
        "GW_ISO_KAUMAN_SERIAL_PORTS": '{"bus0": "/dev/pts/7"}',
        "GW_KARIADI_SERIAL_PORTS": "unset",  # its simulated agent has the lines
        "PANTAU_BROKER_ADMIN_PASSWORD": "admin-pw",
        "PANTAU_CITY_FILE": str(tmp_path / "city.yaml"),
    }
    assert json.loads(got["GW_ISO_KAUMAN_SERIAL_PORTS"]) == ports["gw-iso-kauman"]
    # one password per account of the city, and the broker admin's for `pantau gateway add`
    lines = path.read_text().splitlines()
    assigned = [line for line in lines if not line.startswith("#")]
    assert sum("_PASSWORD=" in line for line in assigned) == len(city.gateways) + 1


def test_env_names_are_the_ids_in_upper_case_with_underscores() -> None:
    assert env_name("kiosk-candisari", "PASSWORD") == "KIOSK_CANDISARI_PASSWORD"
    assert env_name("gw.iso-kauman", "SERIAL_PORTS") == "GW_ISO_KAUMAN_SERIAL_PORTS"


def test_without_an_unknown_gateway_refuses_before_starting_anything(tmp_path: Path) -> None:
    stack = LocalStack(
        city_file=DEMO_CITY,
        scenario_file=DEMO_CITY,  # never read: the check comes first
        workdir=tmp_path / "demo",
        without=frozenset({"gw-nope"}),
    )
    with pytest.raises(StackError, match=r"--without gw-nope: no such gateway in Kota Semarang"):
        stack.start()
    assert stack.children == []
    assert not (tmp_path / "demo").exists()
