"""Bad configuration is one line: every ``pantau`` entry point, run as a real process, turns a
bad city file, config file or setting into exactly one line on stderr naming the file, the
place in it and the problem, exits 2, prints no traceback, and never prints a secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from city import DEMO_CITY
from pantau.paths import ROOT

pytestmark = pytest.mark.integration

DEMO_SCENARIO = ROOT / "firmware-sim" / "scenarios" / "demo.yaml"
#: Refused secrets that must not reach stdout or stderr.
SHORT_SECRET = "Hunter2-Xyzzy!"  # noqa: S105 - a test value
URL_SECRET = "S3cret-in-the-url-7781"  # noqa: S105 - a test value

#: name -> (file bytes, the message after "<path> at ")
BAD_FILES: dict[str, tuple[bytes, str]] = {
    "duplicate-key": (
        b'city:\n  code: "33.74"\n  name: Kota Semarang\n  code: "33.75"\n',
        "line 4, column 3: duplicate key 'code' (first given at line 2)",
    ),
    "not-utf8": (
        b"city:\n  code: '33.74'\n  name: Kel. Tegal Sari\xff\n",
        "line 3, column 24: not UTF-8 text (byte 0xff); save the file as UTF-8",
    ),
    "syntax": (
        b"city:\n  name: [Semarang\nsites: []\n",
        "line 3, column 6: not valid YAML: did not find expected ',' or ']'"
        " (while parsing a flow sequence at line 2)",
    ),
}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")}
    return env | {"PYTHONUNBUFFERED": "1", **extra}


def _pantau(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run ``pantau ARGS``; assert it failed as configuration must (status 2, nothing on
    stdout, one line on stderr, no traceback) and return that line."""
    proc = subprocess.run(
        [sys.executable, "-m", "pantau.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in proc.stderr + proc.stdout
    assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _bad_city(tmp_path: Path, kind: str) -> tuple[Path, str]:
    content, where = BAD_FILES[kind]
    path = tmp_path / f"{kind}.yaml"
    path.write_bytes(content)
    return path, f"{path} at {where}"


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
@pytest.mark.parametrize("entry", ["city check", "api run", "ingest run", "demo", "fwsim run"])
def test_a_bad_city_file_is_one_line_naming_file_line_and_problem(
    tmp_path: Path, entry: str, kind: str
) -> None:
    path, expected = _bad_city(tmp_path, kind)
    args, env = entry.split(), _env(PANTAU_CITY_FILE=str(path))
    if entry in ("demo", "fwsim run"):
        args += ["--city", str(path), "--scenario", str(DEMO_SCENARIO)]
    if entry == "demo":
        args += ["--duration", "1"]
    elif entry == "city check":
        args.append(str(path))
    prefix = {"city check": "invalid", "fwsim run": "fwsim"}.get(entry, f"pantau {args[0]}")
    assert _pantau(args, env, tmp_path) == f"{prefix}: {expected}"


def test_a_city_file_with_a_wrong_reference_is_one_line_at_api_start(tmp_path: Path) -> None:
    """Valid YAML, invalid registry: the api used to fail in its lifespan with a traceback."""
    text = DEMO_CITY.read_text(encoding="utf-8")
    path = tmp_path / "city.yaml"
    path.write_text(text.replace("gateway: gw-kariadi", "gateway: gw-nowhere", 1))
    line = _pantau(["api", "run"], _env(PANTAU_CITY_FILE=str(path)), tmp_path)
    assert line.startswith(f"pantau api: {path} at sensors[")
    assert line.endswith(".gateway: no gateway 'gw-nowhere'")


def test_an_edge_config_file_with_a_repeated_key_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(
        "gateway_id: gw-kariadi\nsite_id: rs-kariadi\nserial_ports: {bus0: /dev/null}\n"
        "batch_max_readings: 50\nbatch_max_readings: 5\n"
    )
    line = _pantau(["edge", "run", "--config", str(config)], _env(), tmp_path)
    assert line == (
        f"pantau edge: {config} at line 5, column 1: duplicate key 'batch_max_readings'"
        " (first given at line 4)"
    )


def test_unparsable_json_in_an_edge_env_setting_is_one_line(tmp_path: Path) -> None:
    env = _env(
        PANTAU_GATEWAY_ID="gw-kariadi", PANTAU_SITE_ID="rs-kariadi", PANTAU_SERIAL_PORTS="{bus0"
    )
    line = _pantau(["edge", "run"], env, tmp_path)
    assert line == (
        "pantau edge: invalid edge settings (environment): error parsing value for field"
        ' "serial_ports" from source "EnvSettingsSource"'
    )


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (
            ["ingest", "run"],
            {"PANTAU_MODE": "production", "PANTAU_MQTT_PASSWORD": SHORT_SECRET},
            "pantau ingest: invalid ingest settings (environment): production mode:"
            " PANTAU_MQTT_PASSWORD is shorter than 16 characters; refusing to start",
        ),
        (
            ["ingest", "run"],
            {"PANTAU_MQTT_URL": f"http://pantau-ingest:{URL_SECRET}@broker:1883"},
            "pantau ingest: invalid ingest settings (environment): mqtt_url (PANTAU_MQTT_URL):"
            " must be mqtt://host[:port] or mqtts://host[:port] (TLS), not"
            " 'http://***@broker:1883'",
        ),
        (
            ["api", "run"],
            {
                "PANTAU_MODE": "production",
                "PANTAU_INFLUX_USERNAME": "reader",
                "PANTAU_INFLUX_PASSWORD": SHORT_SECRET,
            },
            "pantau api: invalid API settings (environment): production mode:"
            " PANTAU_INFLUX_PASSWORD is shorter than 16 characters; refusing to start",
        ),
        (
            ["edge", "run"],
            {
                "PANTAU_MODE": "production",
                "PANTAU_GATEWAY_ID": "gw-kariadi",
                "PANTAU_SITE_ID": "rs-kariadi",
                "PANTAU_SERIAL_PORTS": '{"bus0": "/dev/null"}',
                "PANTAU_MQTT_URL": f"http://gw-kariadi:{URL_SECRET}@broker",
                "PANTAU_MQTT_PASSWORD": SHORT_SECRET,
            },
            "pantau edge: invalid edge settings (environment): mqtt_url (PANTAU_MQTT_URL):"
            " must be mqtt://host[:port] or mqtts://host[:port] (TLS), not 'http://***@broker'",
        ),
    ],
    ids=["ingest-short-password", "ingest-url-credentials", "api-short-password", "edge-url"],
)
def test_refused_settings_are_one_line_without_the_secret(
    tmp_path: Path, args: list[str], env: dict[str, str], expected: str
) -> None:
    """pydantic's own text quotes the input: a refused password used to be printed."""
    line = _pantau(args, _env(**env), tmp_path)
    assert line == expected
    assert SHORT_SECRET not in line
    assert URL_SECRET not in line
