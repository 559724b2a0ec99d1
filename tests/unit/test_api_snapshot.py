"""The API's snapshot (cloud/api/state.py) reuses the bed rollups' sorted cell layout between
states: after any sequence of state changes it holds exactly what the ingester's
``bed_rollups`` computes from scratch, and ``rebuild_s`` bounds how late a snapshot may be."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from city import Registry
from cloud.api.state import LiveState
from cloud.ingest import SensorState, bed_rollups
from cloud.ingest.aggregate import BedRollups
from cloud.ingest.cluster import deltas_of
from cloud.ingest.topology import MAX_FIELDS
from contract.cluster import encode_state_delta

Window = list[tuple[int, int, list[int]]]  # sensor index, ts, values


@st.composite
def windows(draw: st.DrawFn, n_sensors: int) -> list[Window]:
    """Windows of readings of any sensors, with few distinct times (ties, late readings)."""
    out = []
    for _ in range(draw(st.integers(1, 6))):
        window = []
        for _ in range(draw(st.integers(0, 12))):
            sensor = draw(st.integers(0, n_sensors - 1))
            ts = draw(st.integers(1_000, 1_010)) * 1000
            window.append((sensor, ts, draw(st.lists(st.integers(0, 40), min_size=5, max_size=5))))
        out.append(window)
    return out


def _update(state: SensorState, window: Window) -> None:
    state.update(
        np.array([r[0] for r in window], dtype=np.int32),
        np.array([r[1] for r in window], dtype=np.int64),
        np.zeros(len(window), dtype=np.int64),
        np.array([r[2] for r in window], dtype=np.int64).reshape(-1, MAX_FIELDS),
    )


def assert_same(got: BedRollups, want: BedRollups) -> None:
    for name in want.__dataclass_fields__:
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype.kind == b.dtype.kind, name
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name


def _merge(live: LiveState, state: SensorState, sensors: list[int]) -> None:
    """``sensors``' readings in ``state``, merged into ``live`` as an ingester's deltas."""
    rows = np.array(sorted(set(sensors)), dtype=np.intp)
    live.merge_payloads([encode_state_delta(d) for d in deltas_of(state, rows, live.digest)])


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_a_snapshot_after_deltas_equals_a_full_rebuild(city: Registry, data: st.DataObject) -> None:
    """Snapshots taken between some of the deltas (not all), as requests come: each one's bed
    rollups equal ``bed_rollups`` of its state, and its state is the ingester's."""
    live = LiveState(registry=city)
    ingester = SensorState(n_sensors=live.index.n_sensors)
    for window in data.draw(windows(live.index.n_sensors)):
        _update(ingester, window)
        _merge(live, ingester, [r[0] for r in window])
        if data.draw(st.booleans()):
            snap = live.snapshot()
            assert np.array_equal(snap.state.values, ingester.values)
            assert snap.version == live.version
            assert_same(snap.beds, bed_rollups(snap.state, live.index))
    snap = live.snapshot()
    assert_same(snap.beds, bed_rollups(ingester, live.index))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The state's clock (ms), set by the test."""
    now = [1_000_000]
    monkeypatch.setattr("cloud.api.state.now_ms", lambda: now[0])
    return now


def _one_reading(live: LiveState, sensor: str, occupied: int, ts: int) -> None:
    state = SensorState(n_sensors=live.index.n_sensors)
    pos = live.index.sensor_pos[sensor]
    _update(state, [(pos, ts, [20, occupied, 0, 0, 0])])
    _merge(live, state, [pos])


def test_under_a_stream_of_changes_a_snapshot_is_rebuilt_at_most_once_per_rebuild_s(
    city: Registry, clock: list[int]
) -> None:
    live = LiveState(registry=city, rebuild_s=1.0)
    ward = live.index.sensor_pos["bed-kariadi-icu"]
    _one_reading(live, "bed-kariadi-icu", 5, 1_000)
    first = live.snapshot()  # the first change after a quiet spell: at once
    assert (first.version, int(first.state.values[ward, 1])) == (1, 5)
    clock[0] += 999
    _one_reading(live, "bed-kariadi-icu", 6, 2_000)
    assert live.snapshot() is first  # 999 ms old: still served
    clock[0] += 1
    again = live.snapshot()  # 1 000 ms old: rebuilt, with the change
    assert (again.version, int(again.state.values[ward, 1])) == (2, 6)
    assert_same(again.beds, bed_rollups(again.state, live.index))


def test_without_rebuild_s_every_change_is_in_the_next_snapshot(
    city: Registry, clock: list[int]
) -> None:
    live = LiveState(registry=city)
    for occupied in (5, 6, 7):
        _one_reading(live, "bed-kariadi-icu", occupied, 1_000 * occupied)
        snap = live.snapshot()
        assert int(snap.state.values[live.index.sensor_pos["bed-kariadi-icu"], 1]) == occupied
