"""The fold into state finds each sensor's latest and previous row of a window by a per-sensor
maximum of a time-and-arrival key; that gives the same rows as sorting the window by sensor,
time and arrival (the reference), for any window: ties, one sensor, spans too wide for the key."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.ingest.aggregate.state import SensorState, _latest_by_sort, _window_latest
from cloud.ingest.topology import MAX_FIELDS

N_SENSORS = 12  # windows of 3 rows or more take the maximum, smaller ones the sort
times = st.one_of(
    st.integers(1_795_000_000_000, 1_795_000_000_006),  # many ties
    st.integers(0, 2**45),  # spans too wide for the key: the sort
)


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(0, N_SENSORS - 1), times), min_size=1, max_size=60))
def test_per_sensor_maximum_finds_the_rows_the_sort_finds(rows: list[tuple[int, int]]) -> None:
    """Same sensors, same latest row, same previous row (-1 where there is none)."""
    sensor = np.array([s for s, _ in rows], dtype=np.int32)
    ts = np.array([t for _, t in rows], dtype=np.int64)
    fast = _window_latest(sensor, ts, N_SENSORS)
    ref = _latest_by_sort(sensor, ts)
    assert [a.tolist() for a in fast] == [a.tolist() for a in ref]


def test_a_window_of_equal_times_keeps_the_last_arrival_and_no_previous() -> None:
    """Three rows of sensor 2 at one time: the latest is the third row (index 4); no row is
    strictly older, so the previous stays empty."""
    sensor = np.array([2, 0, 2, 0, 2], dtype=np.int32)
    ts = np.array([10, 10, 10, 9, 10], dtype=np.int64)
    values = np.arange(5 * MAX_FIELDS, dtype=np.int64).reshape(5, MAX_FIELDS)
    state = SensorState(n_sensors=3)
    assert state.update(sensor, ts, np.arange(5, dtype=np.int64), values) == 2
    assert state.seq.tolist() == [1, 0, 4]
    assert state.prev_ts.tolist() == [9, -1, -1]
    assert state.prev_values[0, 0] == 3 * MAX_FIELDS
