"""The ingester-process helper of the tests survives the port race it cannot avoid: a metrics
port that ``free_port()`` found free may be taken before the ingester binds it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pantau.services import InfluxDB, Mosquitto
from tests.ingest_process_support import IngestProcess, ingest_env

pytestmark = pytest.mark.integration


def test_a_metrics_port_taken_before_the_ingester_binds_it_is_replaced(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = ingest_env(mosquitto, influxdb, tmp_path, PANTAU_METRICS_PORT=str(port))
        proc = IngestProcess(env, tmp_path / "ingest.log")
        proc.start()
        try:
            assert proc.port != port
            assert proc.metric("pantau_ingest_subscribed") == 1.0
            assert "Address already in use" in (tmp_path / "ingest.log").read_text()
        finally:
            proc.stop()
