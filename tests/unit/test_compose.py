"""docker-compose.yml agrees with the repository: the services exist, mounted files are the ones
the tests use, every PANTAU_* variable is a real setting, and no secret has a default."""

from __future__ import annotations

import importlib
import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from city import load_registry
from pantau.broker_identity import SERVICE_ACCOUNTS
from pantau.paths import COMPOSE_FILE, GRAFANA_DIR, MOSQUITTO_DIR, ROOT

COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
#: `pantau <part> run` -> the settings class of that deployable (agreed names, COMMON.md).
SETTINGS = {
    "edge": ("edge", "EdgeSettings"),
    "ingest": ("cloud.ingest", "IngestSettings"),
    "api": ("cloud.api", "ApiSettings"),
}
PYTHON_SERVICES = [name for name, svc in SERVICES.items() if svc.get("build")]
SETTINGS_SERVICES = [n for n in PYTHON_SERVICES if SERVICES[n]["command"][0] in SETTINGS]
_INTERPOLATION = re.compile(r"\$\{(\w+)(:?[?-])?([^}]*)\}")


def _binds(service: dict[str, Any]) -> dict[str, str]:
    """Host path -> container path of the service's bind mounts (named volumes left out)."""
    out: dict[str, str] = {}
    for spec in service.get("volumes", []):
        host, container, *_ = spec.split(":")
        if host.startswith((".", "/")):
            out[host] = container
    return out


def _published(service: dict[str, Any]) -> list[tuple[int, int]]:
    pairs = []
    for spec in service.get("ports", []):
        *_, host, container = str(spec).split(":")
        pairs.append((int(host), int(container)))
    return pairs


def test_the_full_stack_is_there() -> None:
    assert set(SERVICES) == {"mosquitto", "influxdb", "ingest", "api", "grafana", "fwsim", "edge"}
    assert SERVICES["mosquitto"]["image"] == "eclipse-mosquitto:2"
    assert SERVICES["influxdb"]["image"] == "influxdb:1.8"
    assert SERVICES["grafana"]["image"].startswith("grafana/grafana-oss:")
    commands = {name: SERVICES[name]["command"][:2] for name in PYTHON_SERVICES}
    assert commands == {
        "ingest": ["ingest", "run"],
        "api": ["api", "run"],
        "fwsim": ["fwsim", "run"],
        "edge": ["edge", "run"],
    }


def test_python_services_build_the_one_image() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert dockerfile.startswith("#")
    assert "FROM python:3.11-slim" in dockerfile
    assert 'ENTRYPOINT ["pantau"]' in dockerfile
    assert {SERVICES[n]["build"] for n in PYTHON_SERVICES} == {"."}
    assert {SERVICES[n]["image"] for n in PYTHON_SERVICES} == {"pantau:latest"}
    # Every package the image installs is copied into it.
    for folder in ("contract", "city", "edge", "cloud", "firmware-sim", "pantau", "mosquitto"):
        assert f"COPY {folder} ./{folder}" in dockerfile


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_bind_mounted_host_path_exists_in_the_repo(name: str) -> None:
    for host in _binds(SERVICES[name]):
        assert host.startswith("./"), f"{name}: {host} is outside the repository"
        assert (ROOT / host).exists(), f"{name}: {host} does not exist"


def test_published_ports_are_the_well_known_ones_and_do_not_clash() -> None:
    published = {name: _published(svc) for name, svc in SERVICES.items() if svc.get("ports")}
    assert published == {
        "mosquitto": [(1883, 1883)],
        "influxdb": [(8086, 8086)],
        "api": [(8000, 8000)],
        "grafana": [(3000, 3000)],
    }
    hosts = [host for pairs in published.values() for host, _ in pairs]
    assert len(hosts) == len(set(hosts))


@pytest.mark.parametrize("name", SETTINGS_SERVICES)
def test_every_pantau_variable_is_a_field_of_the_deployables_settings(name: str) -> None:
    module_name, class_name = SETTINGS[SERVICES[name]["command"][0]]
    settings = getattr(importlib.import_module(module_name), class_name)
    prefix = settings.model_config.get("env_prefix", "")
    assert prefix == "PANTAU_"
    known = {f"{prefix}{field}".upper() for field in settings.model_fields}
    used = {key for key in SERVICES[name]["environment"] if key.startswith("PANTAU_")}
    assert used - known == set()
    assert SERVICES[name]["environment"]["PANTAU_MODE"] == "production"


def test_grafana_gets_every_variable_its_datasource_file_expands() -> None:
    # The parsed values, not the text: comments may mention ${...} too.
    doc = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "pantau.yaml").read_text())
    text = json.dumps(doc)
    wanted = {m.group(1) for m in _INTERPOLATION.finditer(text)}
    assert wanted == {"PANTAU_INFLUX_URL", "PANTAU_INFLUX_USERNAME", "PANTAU_INFLUX_PASSWORD"}
    assert wanted <= set(SERVICES["grafana"]["environment"])


def test_every_secret_is_required_from_env_and_listed_in_env_example() -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^(\w+)=", example, flags=re.MULTILINE))
    for name, svc in SERVICES.items():
        for key, value in (svc.get("environment") or {}).items():
            if "PASSWORD" not in key:
                continue
            match = _INTERPOLATION.fullmatch(str(value))
            assert match is not None, f"{name}.{key} is not taken from .env"
            assert match.group(2) == ":?", f"{name}.{key} must be required (${{VAR:?...}})"
            assert match.group(1) in listed, f"{match.group(1)} missing from .env.example"
    # .env.example lists exactly what the compose file reads: nothing missing, nothing stale.
    assert {m.group(1) for m in _INTERPOLATION.finditer(COMPOSE_FILE.read_text())} == listed


def test_the_broker_mounts_the_policy_folder_the_tests_use() -> None:
    binds = _binds(SERVICES["mosquitto"])
    assert binds == {
        "./mosquitto": "/mosquitto/config",
        "./mosquitto/identity": "/mosquitto/identity",
    }
    assert (ROOT / "mosquitto").resolve() == MOSQUITTO_DIR.resolve()
    # Policy read-only; the identity folder writable (the plugin saves every change there).
    assert "./mosquitto:/mosquitto/config:ro" in SERVICES["mosquitto"]["volumes"]
    assert "./mosquitto/identity:/mosquitto/identity" in SERVICES["mosquitto"]["volumes"]
    conf = (MOSQUITTO_DIR / "mosquitto.conf").read_text()
    assert "plugin /usr/lib/mosquitto_dynamic_security.so" in conf  # the eclipse image's path
    assert "plugin_opt_config_file /mosquitto/identity/dynamic-security.json" in conf
    assert "include_dir /mosquitto/config/conf.d" in conf
    assert "listener 1883" in conf
    # No second, file-based identity source beside the plugin.
    assert "password_file" not in conf
    assert "acl_file" not in conf
    # The generated identity state is a secret: never committed.
    ignore = (MOSQUITTO_DIR / "identity" / ".gitignore").read_text().split()
    assert ignore == ["*", "!.gitignore"]


def test_every_mqtt_client_uses_the_client_id_its_account_is_bound_to() -> None:
    """The broker refuses an account any client id but its own (docs/adr/0010)."""
    ingest = SERVICES["ingest"]["environment"]
    assert ingest["PANTAU_MQTT_USERNAME"] == "pantau-ingest"
    assert ingest["PANTAU_MQTT_CLIENT_ID"] == SERVICE_ACCOUNTS["pantau-ingest"].client_id
    edge = SERVICES["edge"]["environment"]
    assert (
        edge["PANTAU_MQTT_USERNAME"] == edge["PANTAU_MQTT_CLIENT_ID"] == edge["PANTAU_GATEWAY_ID"]
    )
    health = SERVICES["mosquitto"]["healthcheck"]["test"][1]
    account = SERVICE_ACCOUNTS["pantau-health"]
    assert f"-u {account.username} -i {account.client_id} " in health


def test_grafana_mounts_the_tested_provisioning_folders() -> None:
    binds = _binds(SERVICES["grafana"])
    assert binds == {
        "./grafana/provisioning": "/etc/grafana/provisioning",
        "./grafana/dashboards": "/var/lib/grafana/dashboards",
    }
    assert (ROOT / "grafana").resolve() == GRAFANA_DIR.resolve()
    provider = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "pantau.yaml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (GRAFANA_DIR / "dashboards" / Path(home).name).exists()


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


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_healthcheck_and_restarts(name: str) -> None:
    assert SERVICES[name]["healthcheck"]["test"]
    assert SERVICES[name]["restart"] == "unless-stopped"


def test_services_wait_for_healthy_dependencies() -> None:
    for name, svc in SERVICES.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in SERVICES, name
            assert cond == {"condition": "service_healthy"}, name
