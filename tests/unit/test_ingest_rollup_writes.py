"""Rollup writes coalesced: one in flight, folds meanwhile only mark the rollups due, and the
next write carries every cell changed since, against what InfluxDB accepted
(cloud/ingest/rollup_writes.py, docs/adr/0038-coalesced-rollup-writes.md)."""

from __future__ import annotations

import re
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.ingest.aggregate import SensorState
from cloud.ingest.decode import Message
from cloud.ingest.pipeline import StoringWindow
from cloud.ingest.rollup_points import RollupPoints
from cloud.ingest.rollup_writes import RollupWrites
from cloud.ingest.topology import MAX_FIELDS
from cloud.ingest.writer import PendingWrite, Refused, WriteAbortedError
from tests.payload_support import GW, KARIADI, batch, bed
from tests.pipeline_support import INDEX, aggregates_pipeline

N = INDEX.n_sensors
T0 = 1_800_000_000_000
BUCKET = 60_000
STAMP = T0 - T0 % BUCKET


def _state() -> SensorState:
    """Every sensor of the demo city reporting twice (so queues have a service rate)."""
    rng = np.random.default_rng(1)
    state = SensorState(n_sensors=N)
    every = np.arange(N, dtype=np.int32)
    for k in range(2):
        ts = np.full(N, T0 - 20_000 + 10_000 * k, np.int64) + rng.integers(0, 999, N)
        values = rng.integers(0, 60, (N, MAX_FIELDS)).astype(np.int64)
        values[:, 1] += 10 * k
        state.update(every, ts, np.full(N, k, np.int64), values)
    return state


class _HeldWriter:
    """Records each submitted write and holds it until the test settles its future."""

    def __init__(self) -> None:
        self.lines: list[list[str]] = []
        self.futures: list[Future[list[Refused]]] = []

    def submit(self, lines: list[str]) -> PendingWrite:
        self.lines.append(list(lines))
        self.futures.append(Future())
        return PendingWrite(self.futures[-1:])


def _writes(state: SensorState) -> tuple[RollupWrites, _HeldWriter]:
    writer = _HeldWriter()
    writes = RollupWrites(
        rollups=RollupPoints(index=INDEX),
        state=state,
        writer=writer,  # type: ignore[arg-type]
        bucket_ms=BUCKET,
    )
    return writes, writer


def _change(state: SensorState, sensors: list[int], at: int, occupied: int) -> None:
    values = np.zeros((len(sensors), MAX_FIELDS), np.int64)
    values[:, 0], values[:, 1] = 60, occupied
    state.update(
        np.array(sensors, np.int32),
        np.full(len(sensors), at, np.int64),
        np.full(len(sensors), 9, np.int64),
        values,
    )


def test_folds_during_a_write_start_none_and_the_next_write_carries_all_they_changed() -> None:
    """Write 1 (the bucket's whole 244 lines) is held; two folds meanwhile start no write and
    are covered by write 2. Once write 1 settles, write 2 starts and carries exactly the
    lines of the cells both folds changed, computed against write 1's state."""
    state = _state()
    writes, writer = _writes(state)
    writes.submit(T0)
    assert [len(w) for w in writer.lines] == [244]
    assert writes.covering == 1
    at_write_1 = state.copy()

    _change(state, [0, 1], T0 + 1_000, 5)
    writes.submit(T0 + 1_000)
    _change(state, [N - 1], T0 + 2_000, 7)
    writes.submit(T0 + 2_000)
    assert len(writer.lines) == 1  # nothing started while write 1 is in flight
    assert writes.covering == 2
    assert not writes.settled(1)
    assert writes.pending_stamp() == STAMP

    writer.futures[0].set_result([])
    assert writes.settled(1)
    assert not writes.settled(2)
    reference = RollupPoints(index=INDEX)
    reference.remember(reference.changed(at_write_1, STAMP)[1])
    expected, _ = reference.changed(state, STAMP)
    assert len(writer.lines) == 2
    assert writer.lines[1] == expected
    assert 0 < len(expected) < 244

    writer.futures[1].set_result([])
    assert writes.settled(2)
    assert writes.pending_stamp() is None


def test_a_failed_write_is_not_remembered_and_the_write_covering_it_is_whole() -> None:
    """Write 1 raises: settling it raises, nothing counts as written, and waiting for the
    windows it carried starts write 2 with the bucket's whole 244 lines."""
    state = _state()
    writes, writer = _writes(state)
    writes.submit(T0)
    writer.futures[0].set_exception(WriteAbortedError("stopping while InfluxDB is unavailable"))
    with pytest.raises(WriteAbortedError):
        writes.settled(1)
    assert writes.pending_stamp() == STAMP  # its cells are due again

    def settle_next(lines: list[str]) -> PendingWrite:
        writer.lines.append(list(lines))
        done: Future[list[Refused]] = Future()
        done.set_result([])
        return PendingWrite([done])

    writer.submit = settle_next  # type: ignore[method-assign]
    writes.wait(1)
    assert [len(w) for w in writer.lines] == [244, 244]
    assert writes.settled(2)


class _FirstHeldWriter:
    """Holds the first rollup write (until the test settles it); every other write settles
    at once. Records the non-empty writes."""

    def __init__(self) -> None:
        self.lines: list[list[str]] = []
        self.first: Future[list[Refused]] | None = None

    def submit(self, lines: list[str]) -> PendingWrite:
        done: Future[list[Refused]] = Future()
        if lines:
            self.lines.append(list(lines))
        if lines and self.first is None:
            self.first = done
        else:
            done.set_result([])
        return PendingWrite([done])

    def write(self, lines: list[str]) -> list[Refused]:
        if lines:
            self.lines.append(list(lines))
        return []


def test_a_new_bucket_first_writes_the_old_bucket_s_newest_state_then_its_own_whole(
    tmp_path: Path,
) -> None:
    """Windows 1 and 2 in bucket B1 (window 1's write held, so window 2's change is only
    due); window 3 in bucket B2: before it is folded, window 2's state is written stamped B1
    (B1's points hold its last window, occupied 11), then window 3's stamped B2 (12)."""
    clock = [T0]
    writer = _FirstHeldWriter()
    pipeline = aggregates_pipeline(
        dead_letter_dir=tmp_path,
        writer=writer,
        state=SensorState(n_sensors=N),
        clock_ms=lambda: clock[0],
    )
    icu = "bed-kariadi-icu"

    def window(seq: int, ts: int, occupied: int) -> StoringWindow:
        doc = batch(GW, bed(icu, ts, 24, occupied), seq=seq)
        storing = pipeline.prepare([Message(KARIADI, orjson.dumps(doc), clock[0])])
        pipeline.submit(storing)
        pipeline.finish(storing)
        return storing

    w1 = window(1, T0 - 5_000, 10)
    w2 = window(2, T0 - 4_000, 11)
    assert len(writer.lines) == 1  # window 1's whole set, held; window 2's change is due
    assert (w1.rollups, w2.rollups) == (1, 2)
    assert writer.first is not None
    writer.first.set_result([])

    clock[0] = STAMP + BUCKET  # bucket B2
    w3 = window(3, STAMP + BUCKET - 1_000, 12)
    b1_us, b2_us = f" {STAMP * 1000}", f" {(STAMP + BUCKET) * 1000}"
    # one sensor: each write carries its 20 cells (site, rw ... provinsi x bed types)
    assert [len(w) for w in writer.lines] == [20, 20, 20]
    assert all(line.endswith(b1_us) for line in writer.lines[1])
    assert sum("occupied=11i" in line for line in writer.lines[1]) == 20
    assert all(line.endswith(b2_us) for line in writer.lines[2])
    assert sum("occupied=12i" in line for line in writer.lines[2]) == 20
    assert w3.rollups == 3
    pipeline.settle(w3)


_SPACE = re.compile(r"(?<!\\) ")


def _store(db: dict[tuple[str, str], str], lines: list[str]) -> None:
    """InfluxDB's view: the last fields written per series and timestamp."""
    for line in lines:
        series, fields, ts = _SPACE.split(line)
        db[series, ts] = fields


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.lists(st.integers(0, N - 1), min_size=1, max_size=4),  # sensors changed
            st.integers(0, 50),  # their occupied value
            st.booleans(),  # the write in flight settles before this fold
            st.booleans(),  # this fold opens a new bucket
        ),
        min_size=1,
        max_size=12,
    )
)
def test_coalesced_writes_leave_influxdb_the_same_as_one_write_per_fold(
    steps: list[tuple[list[int], int, bool, bool]],
) -> None:
    """Whatever folds happen while a write is in flight, once everything settled InfluxDB
    holds exactly the points a write after every fold would have left (differential against
    RollupPoints.changed per fold, the ADR 0027 path)."""
    state, reference_state = _state(), _state()
    writes, writer = _writes(state)
    reference = RollupPoints(index=INDEX)
    want: dict[tuple[str, str], str] = {}
    got: dict[tuple[str, str], str] = {}
    settled = 0  # writer.lines[:settled] are in ``got``
    now = T0
    for i, (sensors, occupied, settle, new_bucket) in enumerate(steps):
        if settle and settled < len(writer.futures):
            writer.futures[settled].set_result([])
            _store(got, writer.lines[settled])
            settled += 1
        if new_bucket:
            now += BUCKET
            # WindowPipeline.finish: a new bucket settles every write first
            while writes.pending_stamp() not in (None, writes.stamp(now)):
                if settled < len(writer.futures):
                    writer.futures[settled].set_result([])
                    _store(got, writer.lines[settled])
                    settled += 1
                writes.poll()
        now += 1
        for s in (state, reference_state):
            _change(s, sensors, now - 500 + i, occupied)
        writes.submit(now)
        lines, written = reference.changed(reference_state, now - now % BUCKET)
        _store(want, lines)
        reference.remember(written)
    while writes.pending_stamp() is not None:
        if settled < len(writer.futures):
            writer.futures[settled].set_result([])
            _store(got, writer.lines[settled])
            settled += 1
        writes.poll()
    assert got == want
