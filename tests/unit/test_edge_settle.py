"""One spool write per wake-up of the publisher loop (ADR 0036): ``settle`` deletes the
acknowledged batches and stores the closed windows in one SQLite transaction, with exactly the
result of ``mark_acked`` for each then ``put`` for each."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.payload import SensorKind
from edge.agent import EdgeAgent
from edge.config import EdgeSettings
from edge.mqtt import paho_client
from edge.spool import FullPolicy, PendingBatch, SpoolLimits, SqliteOutbox
from edge.uplink import UplinkEvent
from tests.spool_support import FakeClock, held, of

# A settle step: which taken batches are acknowledged (index, and how many of its readings
# from the front, 0 = all), then the windows closed in the same wake-up (kind, size).
_ACK = st.tuples(st.integers(0, 5), st.integers(0, 3))
_WINDOW = st.tuples(st.sampled_from(list(SensorKind)), st.integers(0, 4))
_STEP = st.tuples(st.lists(_ACK, max_size=3), st.lists(_WINDOW, max_size=3), st.integers(0, 40_000))


def _acked(taken: list[PendingBatch], picks: list[tuple[int, int]]) -> list[PendingBatch]:
    out = []
    for index, front in picks:
        if index < len(taken):
            b = taken[index]
            out.append(b if front == 0 else PendingBatch(b.seq, b.ids[:front], b.body, 0))
    return out


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(_STEP, max_size=12), max_readings=st.integers(1, 12), refuse=st.booleans())
def test_settle_equals_mark_acked_for_each_then_put_for_each(
    steps: list[tuple[list[tuple[int, int]], list[tuple[SensorKind, int]], int]],
    max_readings: int,
    refuse: bool,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """On random wake-ups (acks of whole or partly sent batches, possibly twice, windows of
    any lane, some empty, time passing past the age bound, a spool bound that drops): the
    same seqs, readings held in the same order, counters and depth as the two-write path."""
    limits = SpoolLimits(
        max_readings=max_readings,
        max_age_ms=60_000,
        policy=FullPolicy.REFUSE_NEW if refuse else FullPolicy.DROP_OLDEST_LOWEST_LANE,
    )
    clock = FakeClock()
    where = tmp_path_factory.mktemp("settle")
    one = SqliteOutbox(path=where / "one.spool", clock=clock, limits=limits).open()
    two = SqliteOutbox(path=where / "two.spool", clock=clock, limits=limits).open()
    next_seq = dict.fromkeys(SensorKind, 0)
    try:
        for picks, windows, later in steps:
            taken = one.take(limit=6)
            assert two.take(limit=6) == taken
            acked = _acked(taken, picks)
            batches = []
            for kind, n in windows:
                batches.append(of(kind, *range(next_seq[kind], next_seq[kind] + n)))
                next_seq[kind] += n
            seqs = one.settle(acked=acked, batches=batches)
            for batch in acked:
                two.mark_acked(batch)
            assert seqs == [two.put(b) for b in batches]
            assert held(one) == held(two)
            assert one.stats() == two.stats()
            assert one.depth() == two.depth() <= max_readings
            clock.now += later
    finally:
        one.close()
        two.close()


def test_a_wake_up_with_a_puback_and_a_full_window_writes_the_spool_once(
    tmp_path: Path,
) -> None:
    """Batch 1 in flight, its PUBACK waiting; a full window of 2 readings handed over. One
    wake-up of the loop: one BEGIN IMMEDIATE on the spool file (the two-write path took two),
    batch 1 deleted and the window stored (2 readings held, 1 batch acked)."""
    settings = EdgeSettings(
        gateway_id="gw-01",
        site_id="rs-01",
        spool_path=tmp_path / "gw.spool",
        serial_ports={"bus0": "/dev/null"},
        batch_max_readings=2,
    )
    spool = SqliteOutbox(path=settings.spool_path).open()
    try:
        agent = EdgeAgent(settings=settings, outbox=spool)
        up = agent._uplink
        client = paho_client(settings, b"")  # built, never connected: no I/O
        up._client, up.connected = client, True
        spool.put(of(SensorKind.BED, 0, 1))
        (pending,) = spool.take(limit=1)
        up.in_flight[7] = pending
        up._acks.append(UplinkEvent("puback", client, mid=7))
        window = of(SensorKind.BED, 10, 11)
        agent._bursts.append((time.monotonic(), window))  # type: ignore[arg-type]
        statements: list[str] = []
        assert spool._db is not None
        spool._db.set_trace_callback(statements.append)
        agent._collect(0.0)
        spool._db.set_trace_callback(None)
        assert statements.count("BEGIN IMMEDIATE") == 1
        assert held(spool) == [("bed", 10), ("bed", 11)]
        assert up.counters["batches_acked"] == 1
    finally:
        spool.close()
