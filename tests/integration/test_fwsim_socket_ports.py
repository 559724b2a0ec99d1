"""Fixed TCP ports for the simulator's socket lines, as docker-compose.yml uses them: lines
take consecutive ports from the base port in sorted port-label order."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import serial

from city import Registry
from contract import FrameDecoder, SerialFrame
from firmware_sim import Simulation
from firmware_sim.scenario import parse_scenario
from pantau.services import free_port

pytestmark = pytest.mark.integration

#: gw-kariadi: bed-kariadi-icu on bus0, the other two on bus1.
SENSORS = ["bed-kariadi-icu", "bed-kariadi-iso", "q-kariadi-poli"]
STEPS = 5


def _two_free_ports() -> int:
    """A base port where base and base + 1 are both free right now."""
    for _ in range(50):
        base = free_port()
        if base >= 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base
    raise AssertionError("no two consecutive free ports in 50 tries")


def _read(url: str, out: list[SerialFrame]) -> None:
    """Decode frames from ``url`` until the simulator closes the line (bounded)."""
    port = serial.serial_for_url(url, timeout=0.05)
    decoder = FrameDecoder()
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            try:
                data = port.read(4096)
            except serial.SerialException:
                break  # the simulator closed the line: the run is over
            out.extend(decoder.feed(data))
    finally:
        port.close()


def test_socket_lines_listen_on_consecutive_ports_from_the_base(city: Registry) -> None:
    base = _two_free_ports()
    scenario = parse_scenario(
        {"seed": 4, "speedup": 900, "interval_s": 0.05, "steps": STEPS, "sensors": SENSORS},
        source="test",
    )
    sim = Simulation(
        registry=city,
        scenario=scenario,
        transport="socket",
        gateways=["gw-kariadi"],
        bind="127.0.0.1",
        base_port=base,
    )
    ports = sim.start()
    assert ports == {
        "gw-kariadi": {
            "bus0": f"socket://127.0.0.1:{base}",
            "bus1": f"socket://127.0.0.1:{base + 1}",
        }
    }
    frames: dict[str, list[SerialFrame]] = {"bus0": [], "bus1": []}
    readers = [
        threading.Thread(
            target=_read, args=(ports["gw-kariadi"][label], frames[label]), daemon=True
        )
        for label in sorted(frames)
    ]
    for reader in readers:
        reader.start()
    runner = threading.Thread(target=sim.run, daemon=True)
    runner.start()
    runner.join(30)
    assert not runner.is_alive()
    for reader in readers:
        reader.join(25)
        assert not reader.is_alive()
    assert [f.sensor for f in frames["bus0"]] == ["bed-kariadi-icu"] * STEPS
    assert sorted(f.sensor for f in frames["bus1"]) == sorted(
        ["bed-kariadi-iso", "q-kariadi-poli"] * STEPS
    )
    truth = sim.ground_truth()
    assert truth["frames_written"] == 3 * STEPS
    assert truth["frames_unsent"] == 0


def test_fixed_ports_need_the_socket_transport(city: Registry) -> None:
    scenario = parse_scenario({"steps": 1, "sensors": SENSORS}, source="test")
    with pytest.raises(ValueError, match="base_port needs transport='socket'"):
        Simulation(registry=city, scenario=scenario, transport="pty", base_port=7000)
