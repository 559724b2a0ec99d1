"""``pantau fwsim`` as a process: port map when ready, ground truth at the end, exit 0 on a
finite run and on SIGTERM; direct devices publish single readings to a real broker."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import serial
from paho.mqtt.enums import CallbackAPIVersion

from city import DEMO_CITY, Registry
from contract import FrameDecoder, SerialFrame, load_json
from firmware_sim import Simulation
from firmware_sim.scenario import parse_scenario
from pantau.services import Mosquitto

pytestmark = pytest.mark.integration


def _fwsim(tmp_path: Path, scenario: str, *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    path = tmp_path / "scenario.yaml"
    path.write_text(scenario)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pantau.cli", "fwsim", "run", "--city", str(DEMO_CITY),
         "--scenario", str(path), "--gateway", "gw-johar", "--port-map",
         str(tmp_path / "ports.json"), "--truth", str(tmp_path / "truth.json"), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    return proc, tmp_path / "ports.json"


def _wait_for(path: Path, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[0].decode()
        assert time.monotonic() < deadline, "no port map"
        time.sleep(0.05)
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _read_all(url: str, frames: list[SerialFrame]) -> None:
    port, decoder = serial.serial_for_url(url, timeout=0.05), FrameDecoder()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            frames += decoder.feed(port.read(4096))
        except serial.SerialException:
            break
    port.close()


SCRIPT = """
mode: scripted
interval_s: 0.05
script:
  crowd-johar-utara: [{enter: 40, leave: 10}, {enter: 5}, {leave: 20}]
  crowd-johar-selatan: [{enter: 7}]
"""


def test_a_finite_run_publishes_ports_writes_truth_and_exits_0(tmp_path: Path) -> None:
    proc, ports_path = _fwsim(tmp_path, SCRIPT)
    ports = _wait_for(ports_path, proc)
    assert list(ports) == ["gw-johar"]
    frames: list[SerialFrame] = []
    _read_all(ports["gw-johar"]["bus0"], frames)
    out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, out
    assert ports["gw-johar"]["bus0"] in out  # the technician sees where to attach
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["finished"] is True
    assert truth["frames_written"] == 4 == len(frames)
    assert truth["sensors"]["crowd-johar-utara"]["values"] == {
        "entries": 45, "exits": 30, "occupancy": 15,
    }  # fmt: skip
    assert truth["sensors"]["crowd-johar-selatan"]["values"] == {
        "entries": 7, "exits": 0, "occupancy": 7,
    }  # fmt: skip
    last = {f.sensor: f for f in frames}
    assert {k: v["seq"] for k, v in truth["sensors"].items()} == {k: f.seq for k, f in last.items()}


def test_sigterm_stops_an_endless_run_with_exit_0_and_a_truth_file(tmp_path: Path) -> None:
    proc, ports_path = _fwsim(tmp_path, "seed: 4\ninterval_s: 0.05\nspeedup: 60\n")
    ports = _wait_for(ports_path, proc)
    frames: list[SerialFrame] = []
    reader = threading.Thread(
        target=_read_all, args=(ports["gw-johar"]["bus0"], frames), daemon=True
    )
    reader.start()
    deadline = time.monotonic() + 20
    while len(frames) < 10:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=20)[0].decode()
    reader.join(25)
    assert proc.returncode == 0, out
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["finished"] is False
    assert sorted(truth["sensors"]) == ["crowd-johar-selatan", "crowd-johar-utara"]
    seen = {f.sensor: f.seq for f in frames}
    for sid, doc in truth["sensors"].items():
        assert doc["seq"] >= seen[sid]


def test_a_bad_scenario_is_refused_with_exit_2(tmp_path: Path) -> None:
    proc, _ = _fwsim(tmp_path, "speedup: -1\n")
    out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 2
    assert "speedup" in out


def test_models_lists_one_model_per_kind() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pantau.cli", "fwsim", "models"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["bed", "BedWard"], ["crowd", "GateCounter"], ["queue", "Kiosk"],
    ]  # fmt: skip


def test_a_direct_kiosk_publishes_single_readings(mosquitto: Mosquitto, city: Registry) -> None:
    mosquitto.add_user("kiosk-candisari", "kiosk-pw")
    received: list[dict[str, Any]] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pantau-ops")
    sub.username_pw_set("pantau-ops", "pantau-ops-secret")
    sub.on_message = lambda c, u, m: received.append(load_json(bytes(m.payload)))
    subscribed = threading.Event()
    sub.on_subscribe = lambda *_args: subscribed.set()
    host, port = mosquitto.url.removeprefix("mqtt://").split(":")
    sub.connect(host, int(port))
    sub.subscribe("pantau/v1/kec-candisari/kiosk-candisari/reading", qos=1)
    sub.loop_start()
    try:
        # The SUBACK: from here on the broker delivers the kiosk's readings to us.
        assert subscribed.wait(10), "no SUBACK"
        scenario = parse_scenario(
            {"seed": 1, "interval_s": 0.05, "steps": 5, "sensors": ["q-candisari"]}, source="t"
        )
        sim = Simulation(
            registry=city,
            scenario=scenario,
            mqtt_url=mosquitto.url,
            mqtt_passwords={"kiosk-candisari": "kiosk-pw"},
        )
        assert sim.start() == {}  # no serial lines for a direct device
        sim.run()
        deadline = time.monotonic() + 10
        while len(received) < 5:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        sub.loop_stop()
        sub.disconnect()
    truth = sim.ground_truth()
    assert truth["frames_written"] == 5
    assert [r["seq"] for r in received] == [0, 1, 2, 3, 4]
    assert received[-1]["values"] == truth["sensors"]["q-candisari"]["values"]
    assert received[-1]["ts"] == truth["sensors"]["q-candisari"]["ts"]
