"""``pantau ingest run`` as a subprocess configured by PANTAU_* variables, as operators run it:
shared by the ingester tests that kill, restart or poison it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pantau.paths import ROOT
from pantau.services import InfluxDB, Mosquitto, free_port
from tests.ingest_support import metric, wait_for

#: starts tried when the metrics port was taken between free_port() and the ingester's bind
_PORT_TRIES = 3


class IngestProcess:
    """``pantau ingest run`` (the venv's console script) with its settings in the
    environment, as an operator runs it."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.port = int(env["PANTAU_METRICS_PORT"])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        for attempt in range(_PORT_TRIES):
            with self.log.open("ab") as fh:
                self.proc = subprocess.Popen(
                    [str(Path(sys.executable).with_name("pantau")), "ingest", "run"],
                    env=self.env,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                )
            try:
                wait_for(self._up_or_exited, f"ingester subscribed (log: {self.log})")
            except AssertionError:
                self.kill()  # no caller will stop a process that never came up
                raise
            if self.proc.poll() is None:
                return
            # free_port() only said the port was free then: another worker's outgoing
            # connection can take it before the ingester binds it. A new one, as an operator
            # would pick; any other failure is the test's.
            if "Address already in use" not in self.log.read_text() or attempt + 1 == _PORT_TRIES:
                raise AssertionError(f"the ingester exited at start: {self.log.read_text()}")
            self.port = free_port()
            self.env["PANTAU_METRICS_PORT"] = str(self.port)

    def _up_or_exited(self) -> bool:
        assert self.proc is not None
        return self.proc.poll() is not None or self.metric("pantau_ingest_subscribed") == 1.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def metric(self, name: str) -> float:
        return metric(self.port, name)

    def rss_bytes(self) -> int:
        """Resident memory, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc status")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(20) == 0, self.log.read_text()


def ingest_env(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path, **extra: str
) -> dict[str, str]:
    """The environment of a ``pantau ingest run`` process on the test broker and InfluxDB,
    with fast windows and a metrics port of its own; ``extra`` adds or replaces settings."""
    return {
        **os.environ,
        "PANTAU_MQTT_URL": mosquitto.url,
        "PANTAU_INFLUX_URL": influxdb.url,
        "PANTAU_DEAD_LETTER_DIR": str(tmp_path / "dead"),
        "PANTAU_FLUSH_INTERVAL_S": "0.05",
        "PANTAU_MQTT_CLIENT_ID": "pantau-ingest-1",  # the id its account is bound to
        "PANTAU_METRICS_PORT": str(free_port()),
        # the test's own CPU claims: ingesters of other tests (or on the host) claim elsewhere
        "PANTAU_CPU_CLAIMS_DIR": str(tmp_path / "cpu-claims"),
        **extra,
    }


@contextmanager
def ingest_process(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path, **extra: str
) -> Iterator[IngestProcess]:
    env = ingest_env(mosquitto, influxdb, tmp_path, **{"PANTAU_STORE_RAW": "true", **extra})
    member = env["PANTAU_MQTT_CLIENT_ID"]
    if member != "pantau-ingest-1" and "PANTAU_MQTT_USERNAME" not in extra:
        # The broker binds each account to one client id: a member account of its own.
        mosquitto.add_user(member, f"{member}-pw", role="pantau-ingest")
        env |= {"PANTAU_MQTT_USERNAME": member, "PANTAU_MQTT_PASSWORD": f"{member}-pw"}
    proc = IngestProcess(env, tmp_path / "ingest.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
