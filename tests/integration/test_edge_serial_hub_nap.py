"""The serial hub naps after a wake-up that read bytes (edge/serial_hub.py): sensors that are
not in step wake it about ten times a second instead of at every frame. It does not nap while
a port still holds more than one read, and a stop ends a nap at once. Real pseudo-terminals;
the nap is recorded (and held) by the test instead of slept where it says so."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from contract import encode_frame
from edge import PortReader, serial_opener
from edge.reading import EdgeReading
from edge.serial_hub import FULL_READ, NAP_S, SerialHub
from tests.edge_support import bed, wait_for

pytestmark = pytest.mark.integration


class Recorder:
    """What the hub did, in order: ("deliver", readings) and ("nap", seconds); each nap
    waits until the test opens the gate."""

    def __init__(self) -> None:
        self.events: list[tuple[str, float]] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()

    def deliver(self, readings: list[EdgeReading]) -> None:
        with self.lock:
            self.events.append(("deliver", len(readings)))

    def nap(self, seconds: float) -> None:
        with self.lock:
            self.events.append(("nap", seconds))
        self.gate.wait(30)

    def kinds(self) -> list[str]:
        with self.lock:
            return [k for k, _ in self.events]

    def readings(self) -> int:
        with self.lock:
            return int(sum(n for k, n in self.events if k == "deliver"))


@pytest.fixture
def hub(pty_pair: tuple[int, str]) -> Iterator[tuple[int, PortReader, SerialHub, Recorder]]:
    master, path = pty_pair
    rec = Recorder()
    reader = PortReader(label="bus0", url=path, opener=serial_opener(baudrate=115200))
    hub = SerialHub(readers=[reader], deliver=rec.deliver, nap=rec.nap)
    hub.start()
    try:
        wait_for(lambda: reader.is_open, "port open")
        yield master, reader, hub, rec
    finally:
        rec.gate.set()
        hub.stop()


def _frames(first: int, n: int) -> bytes:
    return b"".join(encode_frame(bed(f"bed-{i % 50}", i, None)) for i in range(first, first + n))


def test_a_wake_up_that_read_a_frame_naps_for_at_most_the_nap(
    hub: tuple[int, PortReader, SerialHub, Recorder],
) -> None:
    master, _reader, _hub, rec = hub
    os.write(master, _frames(0, 1))
    wait_for(lambda: "nap" in rec.kinds(), "a nap")
    assert rec.kinds()[:2] == ["deliver", "nap"]
    (seconds,) = [s for k, s in rec.events if k == "nap"]
    assert 0 < seconds <= NAP_S


def test_a_port_holding_more_than_a_read_is_read_again_without_a_nap(
    hub: tuple[int, PortReader, SerialHub, Recorder],
) -> None:
    """While the hub naps (held), more than two full reads' worth of frames arrive; once let
    go it reads them back to back and naps only after the read that emptied the port."""
    master, _reader, _hub, rec = hub
    rec.gate.clear()
    os.write(master, _frames(0, 1))
    wait_for(lambda: "nap" in rec.kinds(), "the first nap")
    burst = _frames(1, 1)
    n = 1
    while len(burst) < 2 * FULL_READ + 100:
        n += 1
        burst = _frames(1, n)
    os.set_blocking(master, False)  # a pty takes about 11 KB at once: all of it, or fail here
    assert os.write(master, burst) == len(burst)
    mark = len(rec.kinds())
    rec.gate.set()
    wait_for(lambda: rec.readings() == 1 + n, f"all {1 + n} readings")
    wait_for(lambda: rec.kinds()[-1] == "nap", "the nap after the burst")
    after = rec.kinds()[mark:]
    assert after.count("deliver") >= 3  # 2 full reads and the rest: one hand-over each
    assert after[-1] == "nap"
    assert after.count("nap") == 1


def test_a_stop_ends_a_nap_at_once(pty_pair: tuple[int, str]) -> None:
    """With the hub's own nap (a wait on its stop event) of 30 s, a stop during it closes
    the port within the stop's 2 s: a plain sleep would leave the thread in it."""
    master, path = pty_pair
    got = threading.Event()
    reader = PortReader(label="bus0", url=path, opener=serial_opener(baudrate=115200))
    hub = SerialHub(readers=[reader], deliver=lambda _r: got.set(), nap_s=30.0)
    hub.start()
    try:
        wait_for(lambda: reader.is_open, "port open")
        os.write(master, _frames(0, 1))
        assert got.wait(15), "no hand-over"
    finally:
        hub.stop(timeout=2.0)
    assert not reader.is_open
