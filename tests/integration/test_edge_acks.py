"""PUBACKs reach the publisher loop without a wake-up each: they wait on the uplink's deque
for the loop's next wake-up, and wake it only when the in-flight window is full (ADR 0033)."""

from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any

from contract.clock import now_ms
from contract.payload import SensorKind
from edge.mqtt import LinkState, paho_client
from edge.reading import EdgeReading
from edge.spool import MemoryOutbox
from edge.uplink import MAX_IN_FLIGHT, Uplink, UplinkEvent
from pantau.services import Mosquitto
from tests.edge_support import make_settings, wait_for

T0 = 1_764_000_000_000


def _batch(b: int) -> list[EdgeReading]:
    return [EdgeReading(f"s-{i}", SensorKind.BED, T0 + i, 100 * b + i, {}) for i in range(3)]


def test_pubacks_wait_for_the_loop_and_wake_it_only_when_the_window_is_full(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """3 batches acknowledged: 3 PUBACKs wait on the deque and nothing is on the loop's queue;
    the loop's calls account all 3 and settle them, emptying the spool. Then a full window
    of 64 in flight: its PUBACKs free slots, so the loop is woken (by each PUBACK that found
    the window full, or by send_pending for those that came in while it filled), with
    nothing but wake-ups on its queue."""
    settings = make_settings(mosquitto, tmp_path, {"bus0": "/dev/null"})
    events: queue.Queue[UplinkEvent | None] = queue.Queue()
    spool = MemoryOutbox().open()
    up = Uplink(
        settings=settings,
        client_factory=paho_client,
        clock=now_ms,
        link=LinkState(),
        on_change=lambda: None,
        on_up=lambda: None,
        events=events,
    )

    def no_command(_payload: bytes) -> None:
        raise AssertionError("no command was sent")

    up.check(time.monotonic(), lambda: b"{}")
    connack = events.get(timeout=10)
    assert connack is not None
    assert connack.kind == "connect"
    up.handle(connack, no_command)
    assert up.connected
    try:
        for b in range(3):
            spool.put(_batch(b))
        up.send_pending(spool, None)
        assert len(up.in_flight) == 3
        wait_for(lambda: len(up._acks) == 3, "3 PUBACKs on the deque")
        assert events.qsize() == 0
        up.handle_acks()
        up.settle(spool)
        assert (up.counters["batches_acked"], up.counters["readings_acked"]) == (3, 9)
        assert (len(up.in_flight), spool.depth(), len(up._acks)) == (0, 0, 0)

        for b in range(MAX_IN_FLIGHT):
            spool.put(_batch(b))
        up.maybe_pending = True
        up.send_pending(spool, None)
        assert len(up.in_flight) == MAX_IN_FLIGHT
        # A PUBACK that finds the window full wakes the loop; one that came in while the
        # window was still filling wakes it through send_pending: at least one wake-up, only
        # wake-ups, and never more than the window's PUBACKs.
        wait_for(
            lambda: len(up._acks) == MAX_IN_FLIGHT and events.qsize() >= 1,
            "a full window's PUBACKs and a wake-up",
        )
        woken: list[Any] = []
        while not events.empty():
            woken.append(events.get_nowait())
        assert 1 <= len(woken) <= MAX_IN_FLIGHT
        assert set(woken) == {None}
        up.handle_acks()
        up.settle(spool)
        assert up.counters["batches_acked"] == 3 + MAX_IN_FLIGHT
        assert spool.depth() == 0
    finally:
        up.close(None)
