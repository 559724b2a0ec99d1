"""``pantau api run`` as a real process: serves /healthz and /openapi.json, exits 0 on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pantau.services import InfluxDB, free_port

pytestmark = pytest.mark.integration


def test_pantau_api_run_serves_and_stops_cleanly(influxdb: InfluxDB, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")}
    env |= {"PANTAU_INFLUX_URL": influxdb.url, "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pantau.cli",
                "api",
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        health = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert health is not None, log_path.read_text()
        assert (health.status_code, health.json()) == (200, {"status": "ok", "influxdb": "ok"})
        spec = httpx.get(f"{url}/openapi.json", timeout=5).json()
        assert spec["info"]["title"] == "Pantau API"
        assert {
            "/healthz",
            "/v1/beds",
            "/v1/beds/summary",
            "/v1/beds/{site_id}",
            "/v1/conditions",
            "/v1/regions",
        } <= set(spec["paths"])
        ward = spec["components"]["schemas"]["BedWard"]
        assert ward["examples"][0]["site_name"] == "Balai Warga Kel. Tegal Sari, RW 03"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
