"""The faults a technician adds to break a gateway on purpose: clock drift, a sensor reset,
a serial line unplugged and plugged back behind a stable name, and the CLI that lists them."""

from __future__ import annotations

import contextlib
import queue
import random
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from city import Registry
from contract import Reading, SensorKind, SerialFrame
from edge import PortReader, serial_opener
from firmware_sim import Devices, FaultType, Simulation
from firmware_sim.cli import app
from firmware_sim.faults import FaultInjector
from firmware_sim.scenario import FAULT_HELP, Fault, parse_scenario
from pantau.paths import ROOT

TS = 1_709_506_800_000
BUS1 = ["bed-kariadi-iso", "bed-kariadi-k3"]  # gw-kariadi bus1, both with clocks


def test_drift_accumulates_ppm_inside_its_window_and_the_error_stays() -> None:
    rules = [Fault(type=FaultType.DRIFT, ppm=100_000, from_step=1, steps=2)]  # 10 % fast
    injector = FaultInjector(sensor="q-mpp", rules=rules, rng=random.Random(0))
    stamps = [injector.stamp(step, TS + step * 1000) for step in range(5)]
    # Steps 1 and 2 each gain 100 ms over the second before them; then the clock keeps time.
    assert [s - (TS + i * 1000) for i, s in enumerate(stamps)] == [0, 100, 200, 200, 200]


def test_drift_adds_to_a_clock_jump_and_slow_clocks_lose_time() -> None:
    rules = [
        Fault(type=FaultType.DRIFT, ppm=-50_000),
        Fault(type=FaultType.CLOCK_JUMP, from_step=2, offset_s=-60),
    ]
    injector = FaultInjector(sensor="q-mpp", rules=rules, rng=random.Random(0))
    stamps = [injector.stamp(step, TS + step * 2000) for step in range(4)]
    assert [s - (TS + i * 2000) for i, s in enumerate(stamps)] == [0, -100, -60_200, -60_300]


def test_a_reset_restarts_the_sequence_at_0_once(city: Registry) -> None:
    scenario = parse_scenario(
        {
            "seed": 1,
            "steps": 7,
            "sensors": ["bed-kariadi-iso"],
            "faults": [{"type": "reset", "from_step": 4, "steps": 1}],
        },
        source="test",
    )
    devices = Devices(registry=city, scenario=scenario)
    seqs = [
        frame.seq
        for step in range(7)
        for _sim, emission in devices.emit(step, TS + step)
        for frame in emission.frames
    ]
    assert seqs == [0, 1, 2, 3, 0, 1, 2]


def test_unplug_loses_the_reading_and_asks_for_its_duration() -> None:
    rules = [Fault(type=FaultType.UNPLUG, from_step=2, steps=1, duration_s=1.5)]
    injector = FaultInjector(sensor="q-mpp", rules=rules, rng=random.Random(0))
    frame = SerialFrame("q-mpp", SensorKind.QUEUE, 2, TS, (10, 7, 3))
    emissions = [injector.apply(step, frame) for step in range(4)]
    assert [(e.faults, e.unplug_s, bool(e.data)) for e in emissions] == [
        ((), 0.0, True),
        ((), 0.0, True),
        ((FaultType.UNPLUG,), 1.5, False),
        ((), 0.0, True),
    ]


def _open_reader(url: str, out: queue.Queue[Reading]) -> PortReader:
    """A started reader of ``url`` with fast reopens, once it has the port open."""
    reader = PortReader(
        label="bus1",
        url=url,
        opener=serial_opener(baudrate=115200),
        out=out,
        backoff_base_s=0.05,
        backoff_cap_s=0.1,
    )
    reader.start()
    deadline = time.monotonic() + 10
    while not reader.is_open:
        if time.monotonic() >= deadline:
            reader.stop()
            raise AssertionError(f"reader never opened {url}")
        time.sleep(0.02)
    return reader


def test_an_unplugged_pty_comes_back_behind_its_link_and_a_reader_resumes(
    city: Registry, tmp_path: Path
) -> None:
    """The whole technician story: the line vanishes (the reader's port fails), a new PTY
    appears under the same name, the reader reopens it and frames flow again; every frame is
    accounted for as written or lost to the unplug."""
    steps, unplug_at = 30, 8
    scenario = parse_scenario(
        {
            "seed": 4,
            "interval_s": 0.05,
            "steps": steps,
            "drain_timeout_s": 10,
            "sensors": BUS1,
            "faults": [
                {
                    "type": "unplug",
                    "sensors": ["bed-kariadi-k3"],
                    "from_step": unplug_at,
                    "steps": 1,
                    "duration_s": 0.4,
                }
            ],
        },
        source="test",
    )
    links = tmp_path / "lines"
    sim = Simulation(registry=city, scenario=scenario, link_dir=links, hold=True)
    ports = sim.start()
    link = links / "gw-kariadi.bus1"
    assert ports == {"gw-kariadi": {"bus1": str(link)}}
    assert str(link.readlink()).startswith("/dev/pts/")
    out: queue.Queue[Reading] = queue.Queue()
    reader = _open_reader(str(link), out)
    runner = threading.Thread(target=sim.run, name="sim", daemon=True)
    readings: list[Reading] = []
    try:
        runner.start()
        sim.begin()
        deadline = time.monotonic() + 10
        bus = sim.buses["gw-kariadi", "bus1"]
        while bus.unplugs == 0 or bus.unplugged:
            assert time.monotonic() < deadline, "the line never came back"
            time.sleep(0.02)
        # (The kernel may hand out the same /dev/pts number again: the name is not the proof,
        # the reader's second open is.)
        assert str(link.readlink()).startswith("/dev/pts/")
        runner.join(30)
        assert not runner.is_alive()
        # Closing the simulator removes the line: first wait until the reader has handed over
        # the last step's frames (written before run() returned).
        last = {(s, steps - 1) for s in BUS1}
        deadline = time.monotonic() + 10
        while not last <= {(r.sensor, r.seq) for r in readings}:
            assert time.monotonic() < deadline, "the last step's frames never reached the reader"
            with contextlib.suppress(queue.Empty):
                readings.append(out.get(timeout=0.1))
    finally:
        sim.stop()
        reader.stop()
    while not out.empty():
        readings.append(out.get_nowait())
    truth = sim.ground_truth()
    assert not link.exists()  # closing the simulator removes its names
    assert reader.opens == 2
    assert truth["faults"] == {"unplug": 1}
    assert truth["frames_unsent"] == 0
    assert truth["frames_written"] + truth["frames_unplugged"] == steps * len(BUS1)
    assert truth["frames_unplugged"] >= len(BUS1)  # at least the step that pulled the cable
    resumed = {r.sensor for r in readings if r.seq > unplug_at}
    assert resumed == set(BUS1)
    assert {(r.sensor, r.seq) for r in readings} >= {(s, steps - 1) for s in BUS1}


def test_link_dir_needs_the_pty_transport(city: Registry, tmp_path: Path) -> None:
    scenario = parse_scenario({"steps": 1}, source="test")
    with pytest.raises(ValueError, match="link_dir needs transport='pty'"):
        Simulation(registry=city, scenario=scenario, transport="socket", link_dir=tmp_path)


def test_the_cli_lists_every_fault_type_and_prints_the_stable_path(tmp_path: Path) -> None:
    listed = CliRunner().invoke(app, ["faults"])
    assert listed.exit_code == 0
    names = [line.split()[0] for line in listed.output.splitlines()[: len(FaultType)]]
    assert names == [f.value for f in FaultType]
    assert set(FAULT_HELP) == set(FaultType)
    scenario = tmp_path / "one.yaml"
    scenario.write_text("steps: 1\ndrain_timeout_s: 0\nsensors: [bed-kariadi-iso]\n")
    links = tmp_path / "lines"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--city",
            str(ROOT / "city" / "cities" / "semarang.yaml"),
            "--scenario",
            str(scenario),
            "--link",
            str(links),
        ],
    )
    assert result.exit_code == 0, result.output
    (line,) = [ln for ln in result.output.splitlines() if ln.startswith("gw-kariadi")]
    gateway, label, url, arrow, pty = line.split()
    assert (gateway, label, url, arrow) == (
        "gw-kariadi",
        "bus1",
        str(links / "gw-kariadi.bus1"),
        "->",
    )
    assert pty.startswith("/dev/pts/")


def test_an_unplugged_socket_line_comes_back_on_its_port_and_a_reader_resumes(
    city: Registry,
) -> None:
    steps, unplug_at = 30, 8
    scenario = parse_scenario(
        {
            "seed": 4,
            "interval_s": 0.05,
            "steps": steps,
            "drain_timeout_s": 10,
            "sensors": BUS1,
            "faults": [
                {"type": "unplug", "from_step": unplug_at, "steps": 1, "duration_s": 0.4},
            ],
        },
        source="test",
    )
    sim = Simulation(registry=city, scenario=scenario, transport="socket", hold=True)
    url = sim.start()["gw-kariadi"]["bus1"]
    out: queue.Queue[Reading] = queue.Queue()
    reader = _open_reader(url, out)
    runner = threading.Thread(target=sim.run, name="sim", daemon=True)
    try:
        runner.start()
        sim.begin()
        runner.join(30)
        assert not runner.is_alive()
    finally:
        sim.stop()
        reader.stop()
    readings = []
    while not out.empty():
        readings.append(out.get_nowait())
    truth = sim.ground_truth()
    bus = sim.buses["gw-kariadi", "bus1"]
    assert bus.url == url  # the same port after the replug
    assert reader.opens == 2
    assert truth["faults"] == {"unplug": 2}  # both sensors' rules fired; one unplug happened
    assert bus.unplugs == 1
    assert truth["frames_written"] + truth["frames_unplugged"] == steps * len(BUS1)
    assert {r.sensor for r in readings if r.seq > unplug_at} == set(BUS1)
