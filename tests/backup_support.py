"""Running ``pantau backup``/``restore``/``migrate`` as an operator does (the real CLI, settings
from PANTAU_* variables), and reading the API's numbers that a backup must keep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from city import Registry
from cloud.api import create_app
from pantau.cli import app
from pantau.services import InfluxDB, Mosquitto
from tests.api_live_support import api_settings
from tests.ingest_support import wait_for


def backup_env(
    *, influxdb: InfluxDB, broker_dir: Path, dead_letter_dir: Path, city_file: Path
) -> dict[str, str]:
    """PANTAU_* for backup and restore of the test services' files (broker_dir is a
    :class:`Mosquitto` workdir: identity file and data/ folder)."""
    return {
        "PANTAU_INFLUX_RPC": f"{influxdb.host}:{influxdb.rpc_port}",
        "PANTAU_INFLUX_DB": "pantau",
        "PANTAU_CITY_FILE": str(city_file),
        "PANTAU_BROKER_IDENTITY_FILE": str(broker_dir / "dynamic-security.json"),
        "PANTAU_BROKER_PERSISTENCE_FILE": str(broker_dir / "data" / "mosquitto.db"),
        "PANTAU_DEAD_LETTER_DIR": str(dead_letter_dir),
    }


def pantau(args: list[str], env: dict[str, str]) -> Result:
    """``pantau ARGS`` in-process with exactly ``env`` as its PANTAU_* settings."""
    return CliRunner().invoke(app, args, env=env)


#: What the numbers are read from: the city's bed summary, its hourly history, one site's
#: wards, and a gateway's retained status.
def api_numbers(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, *, since_ms: int, until_ms: int
) -> dict[str, Any]:
    """The API's answers that a restore must reproduce (its clock-dependent fields left out)."""
    with TestClient(create_app(api_settings(mosquitto, influxdb), registry=city)) as client:
        history = {"from": str(since_ms), "to": str(until_ms), "interval": "1h"}
        out = {
            "summary": client.get("/v1/beds/summary").json(),
            "history": client.get("/v1/beds/history", params=history).json(),
            "wards": client.get("/v1/beds", params={"site": "rs-kariadi"}).json(),
        }
    kept: dict[str, Any] = _without_clock(out)
    return kept


def gateway_state(mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, gateway: str) -> Any:
    """The state of ``gateway``'s retained status, as the API reads it from the broker. The
    API says ``unknown`` until that message has reached its subscription: wait for it."""

    def state() -> Any:
        got = client.get(f"/v1/gateways/{gateway}").json().get("state")
        return None if got == "unknown" else got

    with TestClient(create_app(api_settings(mosquitto, influxdb), registry=city)) as client:
        return wait_for(state, f"{gateway}'s retained status")


def _without_clock(doc: Any) -> Any:
    """Drop fields that depend on when the request is made (ages, generated-at stamps)."""
    if isinstance(doc, dict):
        return {
            k: _without_clock(v)
            for k, v in doc.items()
            if not (k.startswith("age") or k in {"generated_at", "generated_at_ms", "now_ms"})
        }
    if isinstance(doc, list):
        return [_without_clock(v) for v in doc]
    return doc
