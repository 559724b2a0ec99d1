"""The readiness commands compose's healthchecks run (``pantau ingest health``, ``pantau api
health``): no settings, no secrets, exit 0 only when the part is really ready."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from city import Registry
from pantau.services import InfluxDB, Mosquitto, free_port
from tests.api_access_support import running_api
from tests.ingest_support import (
    ingester_thread,
    metric,
    now_ms,
    publish,
    publisher,
    settings_for,
    wait_for,
)
from tests.payload_support import KARIADI, batch, bed

pytestmark = pytest.mark.integration


def pantau(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``pantau ARGS`` with only ``env`` among the PANTAU_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")} | env
    return subprocess.run(
        [sys.executable, "-m", "pantau.cli", *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_ingest_health_is_ready_once_the_ingester_is_subscribed(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    port = free_port()
    settings = settings_for(mosquitto, influxdb, tmp_path, metrics_port=port)
    with ingester_thread(settings, city), publisher(mosquitto, "gw-kariadi") as pub:
        ready = pantau("ingest", "health", PANTAU_METRICS_PORT=str(port))
        influxdb.stop()
        publish(pub, KARIADI, batch("gw-kariadi", bed("bed-kariadi-icu", now_ms(), 24, 1)))
        wait_for(lambda: metric(port, "pantau_ingest_write_retrying") == 1.0, "a failing write")
        failing = pantau("ingest", "health", PANTAU_METRICS_PORT=str(port))
    assert (ready.returncode, ready.stdout) == (0, "ready\n")
    assert (failing.returncode, failing.stderr) == (
        1,
        "not ready: InfluxDB writes are failing and being retried\n",
    )
    # The same port with nothing behind it any more.
    gone = pantau("ingest", "health", PANTAU_METRICS_PORT=str(port))
    assert gone.returncode == 1
    assert gone.stderr.startswith(f"not ready: no metrics at http://127.0.0.1:{port}/metrics")


def test_api_health_is_ready_while_the_api_reaches_influxdb(
    influxdb: InfluxDB, tmp_path: Path
) -> None:
    with running_api(tmp_path, influxdb) as api:
        port = api.url.rsplit(":", 1)[1]
        ready = pantau("api", "health", PANTAU_API_PORT=port)
        influxdb.stop()
        unreachable = pantau("api", "health", "--port", port)
    assert (ready.returncode, ready.stdout) == (0, "ready\n")
    assert unreachable.returncode == 1
    assert unreachable.stderr == f"not ready: http://127.0.0.1:{port}/healthz answered 503\n"
