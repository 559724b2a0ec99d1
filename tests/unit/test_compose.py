"""docker-compose.yml agrees with the repository: the services exist, mounted files are the ones
the tests use, every PANTAU_* variable is a real setting, healthchecks run commands that exist,
images are pinned, and secrets are files, never environment values or command-line words."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from pydantic import SecretStr

from pantau.broker_identity import SERVICE_ACCOUNTS
from pantau.cli import app as pantau_app
from pantau.deploy import GENERATED, HEALTH_OPTIONS, MQTT_ACCOUNTS
from pantau.paths import COMPOSE_FILE, GRAFANA_DIR, MOSQUITTO_DIR, ROOT

COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
#: `pantau <part> <command>` -> the settings class that command reads.
SETTINGS = {
    ("edge", "run"): ("edge", "EdgeSettings"),
    ("ingest", "run"): ("cloud.ingest", "IngestSettings"),
    ("ingest", "init-db"): ("cloud.ingest.accounts", "InitDbSettings"),
    ("api", "run"): ("cloud.api", "ApiSettings"),
}
PYTHON_SERVICES = [name for name, svc in SERVICES.items() if svc.get("build")]
SETTINGS_SERVICES = [n for n in PYTHON_SERVICES if tuple(SERVICES[n]["command"][:2]) in SETTINGS]
#: Services that run once and exit (others wait for them to complete, not to be healthy).
ONE_SHOT = [name for name, svc in SERVICES.items() if svc.get("restart") == "no"]
LONG_RUNNING = [name for name in SERVICES if name not in ONE_SHOT]
_INTERPOLATION = re.compile(r"\$\{(\w+)(:?[?-])?([^}]*)\}")
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
#: The binaries a healthcheck may run in each upstream image, and why they are there:
#: eclipse-mosquitto ships its own clients; the influxdb 1.x images are built FROM
#: buildpack-deps:*-curl and ship the influx CLI; grafana/grafana is Alpine (busybox wget).
UPSTREAM_BINARIES = {
    "eclipse-mosquitto": {"mosquitto_sub", "mosquitto_pub"},
    "influxdb": {"curl", "influx"},
    "grafana/grafana": {"wget"},
}
#: Words that would put a secret on a command line: a password flag (mosquitto_sub's -P,
#: influx's -password), or an assignment whose value is not read from a secret file.
_SECRET_FLAG = re.compile(r"(^|\s)(-P|--pw|--password|-password)(\s|=|$)")
_ASSIGNED = re.compile(r"(PASSWORD|TOKEN|SECRET)=(\S*(?: \S+)?)", re.IGNORECASE)
_FROM_FILE = '"$$(cat /run/secrets/'


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


def _settings_class(name: str) -> Any:
    module_name, class_name = SETTINGS[tuple(SERVICES[name]["command"][:2])]
    return getattr(importlib.import_module(module_name), class_name)


def _click_command(words: list[str]) -> Any:
    """The ``pantau`` sub-command ``words`` name (the rest being its arguments), or None.
    Duck-typed: typer may bring its own copy of click, so ``isinstance`` would lie."""
    command: Any = typer.main.get_command(pantau_app)
    for word in words:
        if not hasattr(command, "commands"):
            return command
        command = command.commands.get(word)
        if command is None:
            return None
    return None if hasattr(command, "commands") else command


def _command_words(name: str) -> list[str]:
    """Every word the service runs: entrypoint, command, healthcheck."""
    svc = SERVICES[name]
    words: list[str] = []
    for key in ("entrypoint", "command"):
        value = svc.get(key) or []
        words += [value] if isinstance(value, str) else [str(w) for w in value]
    words += [str(w) for w in svc["healthcheck"].get("test", [])] if "healthcheck" in svc else []
    return words


def test_the_full_stack_is_there() -> None:
    assert set(SERVICES) == {
        "mosquitto",
        "influxdb",
        "influxdb-init",
        "ingest",
        "api",
        "grafana",
        "fwsim",
        "edge",
    }
    commands = {name: SERVICES[name]["command"][:2] for name in PYTHON_SERVICES}
    assert commands == {
        "influxdb-init": ["ingest", "init-db"],
        "ingest": ["ingest", "run"],
        "api": ["api", "run"],
        "fwsim": ["fwsim", "run"],
        "edge": ["edge", "run"],
    }
    assert ONE_SHOT == ["influxdb-init"]


def test_every_image_is_pinned_to_a_full_version() -> None:
    images = {name: svc["image"] for name, svc in SERVICES.items()}
    assert images == {
        "mosquitto": "eclipse-mosquitto:2.0.20",
        "influxdb": "influxdb:1.8.10",
        "grafana": "grafana/grafana:11.4.0",
        **dict.fromkeys(PYTHON_SERVICES, f"pantau:{VERSION}"),
    }
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    (base,) = re.findall(r"^FROM (\S+)$", dockerfile, flags=re.MULTILINE)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base


def test_python_services_build_the_one_image() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert dockerfile.startswith("#")
    assert 'ENTRYPOINT ["pantau"]' in dockerfile
    assert "USER pantau" in dockerfile
    assert {SERVICES[n]["build"] for n in PYTHON_SERVICES} == {"."}
    # Every package the image installs is copied into it.
    for folder in ("contract", "city", "edge", "cloud", "firmware-sim", "pantau", "mosquitto"):
        assert f"COPY {folder} ./{folder}" in dockerfile
    # The optional native modules are compiled into the image, and the build fails without it
    # rather than quietly shipping the slower msgspec path (ADR 0034).
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    natives = ", ".join(ext["name"] for ext in pyproject["tool"]["setuptools"]["ext-modules"])
    assert f'python -c "import {natives}"' in dockerfile
    assert "apt-get install -y --no-install-recommends gcc" in dockerfile


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_bind_mounted_host_path_exists_in_the_repo(name: str) -> None:
    for host in _binds(SERVICES[name]):
        assert host.startswith("./"), f"{name}: {host} is outside the repository"
        assert (ROOT / host).exists(), f"{name}: {host} does not exist"
    # Everything else a service keeps is a named volume declared at the top level.
    for spec in SERVICES[name].get("volumes", []):
        source = spec.split(":")[0]
        if not source.startswith("."):
            assert source in COMPOSE["volumes"], f"{name}: {source} is not a named volume"


def test_only_tls_mqtt_the_api_and_grafana_are_published() -> None:
    published = {name: _published(svc) for name, svc in SERVICES.items() if svc.get("ports")}
    assert published == {
        "mosquitto": [(8883, 8883)],
        "api": [(8000, 8000)],
        "grafana": [(3000, 3000)],
    }
    ports = {port for pairs in published.values() for pair in pairs for port in pair}
    assert 1883 not in ports  # plain MQTT
    assert 8086 not in ports  # InfluxDB


@pytest.mark.parametrize("name", SETTINGS_SERVICES)
def test_every_pantau_variable_is_a_setting_or_an_option_of_the_command(name: str) -> None:
    settings = _settings_class(name)
    prefix = settings.model_config.get("env_prefix", "")
    assert prefix == "PANTAU_"
    fields = {f"{prefix}{field}".upper(): info for field, info in settings.model_fields.items()}
    secret = {
        f"{env}_FILE"
        for env, info in fields.items()
        if info.annotation is SecretStr or SecretStr in getattr(info.annotation, "__args__", ())
    }
    command = _click_command(SERVICES[name]["command"])
    assert command is not None
    options = {p.envvar for p in command.params if isinstance(p.envvar, str)}
    used = {key for key in SERVICES[name]["environment"] if key.startswith("PANTAU_")}
    assert used - set(fields) - secret - options == set()
    assert SERVICES[name]["environment"]["PANTAU_MODE"] == "production"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_no_secret_is_in_the_environment_or_on_a_command_line(name: str) -> None:
    svc = SERVICES[name]
    mounted = set(svc.get("secrets", []))
    for key, value in (svc.get("environment") or {}).items():
        assert "${" not in str(value) or key == "PANTAU_LOG_LEVEL", f"{name}.{key}"
        if re.search(r"PASSWORD|TOKEN|SECRET", key):
            # Only a path to a mounted compose secret.
            assert key.endswith("_FILE"), f"{name}.{key} holds a secret value"
            directory, _, secret = str(value).rpartition("/")
            assert (directory, secret in mounted) == ("/run/secrets", True), f"{name}.{key}"
    for word in _command_words(name):
        assert not _SECRET_FLAG.search(word), f"{name}: {word!r}"
        for match in _ASSIGNED.finditer(word):
            assert match.group(2).startswith(_FROM_FILE), f"{name}: {word!r}"
        assert "${" not in word, f"{name}: {word!r} interpolates from .env"


def test_every_secret_is_a_file_pantau_deploy_secrets_writes_in_the_ignored_folder() -> None:
    declared = COMPOSE["secrets"]
    assert set(declared) == {*GENERATED, *MQTT_ACCOUNTS.values(), HEALTH_OPTIONS}
    assert {spec["file"] for spec in declared.values()} == {f"./secrets/{n}" for n in declared}
    used = {s for svc in SERVICES.values() for s in svc.get("secrets", [])}
    assert used == set(declared)
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "secrets/influx_admin_password"], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0


def test_env_example_lists_exactly_what_the_compose_file_interpolates_and_no_secret() -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^(\w+)=", example, flags=re.MULTILINE))
    # The parsed file, not the text: comments may mention ${...} too.
    assert {m.group(1) for m in _INTERPOLATION.finditer(json.dumps(COMPOSE))} == listed
    assert listed == {"PANTAU_LOG_LEVEL"}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_healthcheck_runs_a_command_its_image_has(name: str) -> None:
    if name in ONE_SHOT:
        assert "healthcheck" not in SERVICES[name]
        return
    kind, binary, *args = SERVICES[name]["healthcheck"]["test"]
    assert kind == "CMD", f"{name}: exec form, no shell that could hide a word"
    if name in PYTHON_SERVICES:
        if binary == "pantau":
            assert _click_command(args) is not None, f"{name}: pantau {' '.join(args)}"
        else:  # the image's interpreter (FROM python), for a socket probe only
            assert (binary, args[0]) == ("python", "-c"), name
        return
    repository = SERVICES[name]["image"].rsplit(":", 1)[0]
    assert binary in UPSTREAM_BINARIES[repository], f"{name}: {binary}"


def test_the_stacks_readiness_commands_are_the_real_ones() -> None:
    tests = {name: SERVICES[name]["healthcheck"]["test"][1:] for name in PYTHON_SERVICES[1:]}
    assert tests["ingest"] == ["pantau", "ingest", "health"]
    assert tests["api"] == ["pantau", "api", "health"]
    spool = SERVICES["edge"]["environment"]["PANTAU_SPOOL_PATH"]
    assert tests["edge"] == ["pantau", "edge", "status", f"{spool}.status.json", "--json-only"]


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_long_running_service_has_limits_rotation_restart_and_a_healthcheck(
    name: str,
) -> None:
    svc = SERVICES[name]
    assert svc["restart"] == "unless-stopped"
    assert svc["healthcheck"]["test"]
    assert set(svc["deploy"]["resources"]["limits"]) == {"cpus", "memory"}
    assert svc["logging"] == {
        "driver": "json-file",
        "options": {"max-size": "10m", "max-file": "5"},
    }


def test_services_wait_for_healthy_dependencies_and_for_the_init_job_to_finish() -> None:
    for name, svc in SERVICES.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in SERVICES, name
            wanted = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert cond == {"condition": wanted}, name
    for name in ("ingest", "api", "grafana"):
        assert "influxdb-init" in SERVICES[name]["depends_on"], name


def test_each_service_gets_its_own_least_privilege_influx_account() -> None:
    env = {name: SERVICES[name]["environment"] for name in ("influxdb-init", "ingest", "api")}
    assert env["influxdb-init"]["PANTAU_INFLUX_USERNAME"] == "pantau-admin"
    assert env["ingest"]["PANTAU_INFLUX_USERNAME"] == "pantau-writer"
    assert env["api"]["PANTAU_INFLUX_USERNAME"] == "pantau-reader"
    assert SERVICES["grafana"]["environment"]["PANTAU_INFLUX_USERNAME"] == "pantau-reader"
    assert env["influxdb-init"]["PANTAU_INFLUX_WRITER_USERNAME"] == "pantau-writer"
    assert env["influxdb-init"]["PANTAU_INFLUX_READER_USERNAME"] == "pantau-reader"
    files = {n: env[n]["PANTAU_INFLUX_PASSWORD_FILE"] for n in env}
    assert files == {
        "influxdb-init": "/run/secrets/influx_admin_password",
        "ingest": "/run/secrets/influx_writer_password",
        "api": "/run/secrets/influx_reader_password",
    }
    # The influxdb image's own init script would make accounts with passwords on its command
    # line: it gets none, and authentication is on.
    influx = SERVICES["influxdb"]["environment"]
    assert influx["INFLUXDB_HTTP_AUTH_ENABLED"] == "true"
    assert not [k for k in influx if "USER" in k or "PASSWORD" in k]


def test_grafana_gets_every_variable_its_datasource_file_expands() -> None:
    # The parsed values, not the text: comments may mention ${...} too.
    doc = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "pantau.yaml").read_text())
    text = json.dumps(doc)
    wanted = {m.group(1) for m in _INTERPOLATION.finditer(text)}
    assert wanted == {"PANTAU_INFLUX_URL", "PANTAU_INFLUX_USERNAME", "PANTAU_INFLUX_PASSWORD"}
    grafana = SERVICES["grafana"]
    # The password is exported from its secret file as Grafana starts, the rest is plain env.
    assert wanted - set(grafana["environment"]) == {"PANTAU_INFLUX_PASSWORD"}
    assert grafana["entrypoint"] == [
        "/bin/sh",
        "-c",
        'export PANTAU_INFLUX_PASSWORD="$$(cat /run/secrets/influx_reader_password)"'
        " && exec /run.sh",
    ]
    admin = grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"]
    assert admin == "/run/secrets/grafana_admin_password"


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
    # No second, file-based identity source beside the plugin.
    assert "password_file" not in conf
    assert "acl_file" not in conf
    # The generated identity state is a secret: never committed.
    ignore = (MOSQUITTO_DIR / "identity" / ".gitignore").read_text().split()
    assert ignore == ["*", "!.gitignore"]


def test_the_broker_healthcheck_reads_its_password_from_the_options_file() -> None:
    """mosquitto_sub loads ``$XDG_CONFIG_HOME/mosquitto_sub`` before its arguments."""
    svc = SERVICES["mosquitto"]
    assert svc["environment"] == {"XDG_CONFIG_HOME": "/run/secrets"}
    assert svc["secrets"] == [HEALTH_OPTIONS] == ["mosquitto_sub"]


def test_every_mqtt_client_uses_the_client_id_its_account_is_bound_to() -> None:
    """The broker refuses an account any client id but its own (docs/adr/0010)."""
    ingest = SERVICES["ingest"]["environment"]
    assert ingest["PANTAU_MQTT_USERNAME"] == "pantau-ingest"
    assert ingest["PANTAU_MQTT_CLIENT_ID"] == SERVICE_ACCOUNTS["pantau-ingest"].client_id
    edge = SERVICES["edge"]["environment"]
    assert (
        edge["PANTAU_MQTT_USERNAME"] == edge["PANTAU_MQTT_CLIENT_ID"] == edge["PANTAU_GATEWAY_ID"]
    )
    health = " ".join(SERVICES["mosquitto"]["healthcheck"]["test"])
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
