"""The compose file's example gateway (the simulator and one edge agent): a profile that
production leaves out, wired to the simulator's sockets and to a gateway of the city it runs
with. The rest of the compose file is checked by test_compose.py."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import yaml

from city import load_registry
from pantau.deploy import MQTT_ACCOUNTS
from pantau.paths import COMPOSE_FILE, ROOT

SERVICES: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))[
    "services"
]


def test_the_example_gateway_is_a_profile_production_leaves_out() -> None:
    profiles = {name: svc.get("profiles") for name, svc in SERVICES.items()}
    assert {n for n, p in profiles.items() if p} == {"fwsim", "edge"}
    assert profiles["fwsim"] == profiles["edge"] == ["example"]


def test_the_example_gateway_reads_the_simulators_sockets() -> None:
    edge = SERVICES["edge"]["environment"]
    ports = json.loads(edge["PANTAU_SERIAL_PORTS"])
    assert ports == {"bus0": "socket://fwsim:7000", "bus1": "socket://fwsim:7001"}
    assert SERVICES["fwsim"]["expose"] == ["7000", "7001"]
    fwsim = SERVICES["fwsim"]["command"]
    assert fwsim[fwsim.index("--transport") + 1] == "socket"
    assert fwsim[fwsim.index("--gateway") + 1] == edge["PANTAU_GATEWAY_ID"] == "gw-kariadi"
    # fwsim listens on every interface (the edge is another container) and gives out ports
    # consecutively from --base-port in sorted port-label order: that is what the edge reads.
    assert ipaddress.ip_address(fwsim[fwsim.index("--bind") + 1]).is_unspecified
    base = int(fwsim[fwsim.index("--base-port") + 1])
    expected = {label: f"socket://fwsim:{base + i}" for i, label in enumerate(sorted(ports))}
    assert ports == expected
    assert SERVICES["fwsim"]["expose"] == [str(base + i) for i in range(len(ports))]


def test_the_example_gateway_is_in_the_city_it_runs_with() -> None:
    edge = SERVICES["edge"]["environment"]
    city_file = (
        ROOT / "city" / "cities" / Path(SERVICES["ingest"]["environment"]["PANTAU_CITY_FILE"]).name
    )
    registry = load_registry(city_file)
    assert registry.gateways[edge["PANTAU_GATEWAY_ID"]].site == edge["PANTAU_SITE_ID"]
    ports = {s.port for s in registry.sensors.values() if s.gateway == edge["PANTAU_GATEWAY_ID"]}
    assert ports == set(json.loads(edge["PANTAU_SERIAL_PORTS"]))
    assert MQTT_ACCOUNTS[edge["PANTAU_GATEWAY_ID"]] == "mqtt_gw_kariadi_password"
