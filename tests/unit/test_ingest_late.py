"""ReadingHistory: the state as of a past bucket end is exactly each sensor's latest reading
observed before it, and the buckets it reports as affected by late data are all that change."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.ingest.aggregate import NO_TIME, ReadingHistory
from cloud.ingest.topology import MAX_FIELDS

BUCKET = 10
N_SENSORS = 3

readings = st.lists(
    st.tuples(st.integers(0, N_SENSORS - 1), st.integers(0, 100), st.integers(0, 9)),
    min_size=1,
    max_size=40,
)


def _cols(rows: list[tuple[int, int, int]]) -> tuple[np.ndarray, ...]:
    sensor = np.array([r[0] for r in rows], dtype=np.int32)
    ts = np.array([r[1] for r in rows], dtype=np.int64)
    seq = np.zeros(len(rows), dtype=np.int64)
    values = np.zeros((len(rows), MAX_FIELDS), dtype=np.int64)
    values[:, 0] = [r[2] for r in rows]
    return sensor, ts, seq, values


def _reference(rows: list[tuple[int, int, int]], end: int) -> dict[int, tuple[int, int]]:
    """sensor -> (ts, value) of its latest reading observed before ``end``; on equal times
    the one that arrived last."""
    out: dict[int, tuple[int, int]] = {}
    for s, t, v in rows:
        if t < end and (s not in out or t >= out[s][0]):
            out[s] = (t, v)
    return out


def _state_dict(state: object) -> dict[int, tuple[int, int]]:
    ts = state.ts  # type: ignore[attr-defined]
    vals = state.values  # type: ignore[attr-defined]
    return {s: (int(ts[s]), int(vals[s, 0])) for s in range(len(ts)) if ts[s] != NO_TIME}


@settings(max_examples=300, deadline=None)
@given(first=readings, late=readings, capacity=st.integers(4, 100))
def test_states_at_past_bucket_ends_match_a_reference(
    first: list[tuple[int, int, int]], late: list[tuple[int, int, int]], capacity: int
) -> None:
    history = ReadingHistory(n_sensors=N_SENSORS, capacity=capacity, horizon_ms=10**9)
    history.add(*_cols(first), now_ms=100)
    before = {
        start: _state_dict(state)
        for start, state in history.states_at(np.arange(0, 110, BUCKET), bucket_ms=BUCKET)
    }
    history.add(*_cols(late), now_ms=100)
    everything = first + late
    sensor, ts, _, _ = _cols(late)
    affected = set(history.affected_buckets(sensor, ts, bucket_ms=BUCKET, before=110).tolist())
    for start, state in history.states_at(np.arange(0, 110, BUCKET), bucket_ms=BUCKET):
        end = start + BUCKET
        if end <= history.cut:
            continue  # folded into the floor: not recomputable, and never reported affected
        got = _state_dict(state)
        assert got == _reference(everything, end), (start, history.cut)
        if start not in affected:
            assert got == before[start], start
    assert all(start + BUCKET > history.cut for start in affected)


def test_a_backlog_only_touches_buckets_up_to_each_sensors_next_reading() -> None:
    history = ReadingHistory(n_sensors=2, capacity=1000, horizon_ms=10**9)
    history.add(*_cols([(0, 95, 1), (1, 95, 1)]), now_ms=100)
    # sensor 0: readings at 12 and 47 arrive late; its next one after 47 is at 95
    history.add(*_cols([(0, 12, 2), (0, 47, 3)]), now_ms=100)
    sensor, ts, _, _ = _cols([(0, 12, 2), (0, 47, 3)])
    starts = history.affected_buckets(sensor, ts, bucket_ms=10, before=90)
    assert starts.tolist() == [10, 20, 30, 40, 50, 60, 70, 80]
    states = {s: _state_dict(st) for s, st in history.states_at(starts, bucket_ms=10)}
    assert states[10] == {0: (12, 2)}
    assert states[40] == {0: (47, 3)}
    assert states[80] == {0: (47, 3)}


def test_memory_is_bounded_and_what_is_folded_is_not_recomputed() -> None:
    history = ReadingHistory(n_sensors=1, capacity=10, horizon_ms=50)
    rows = [(0, t, t % 7) for t in range(1000, 1030)]
    history.add(*_cols(rows), now_ms=1030)
    assert len(history) <= 10
    assert history.cut > 1000
    # a reading older than the cut lands in the floor; no bucket ending before the cut
    history.add(*_cols([(0, 1001, 9)]), now_ms=1030)
    sensor, ts, _, _ = _cols([(0, 1001, 9)])
    starts = history.affected_buckets(sensor, ts, bucket_ms=BUCKET, before=1030)
    assert all(s + BUCKET > history.cut for s in starts.tolist())
    # the horizon folds everything older than now - 50
    history.add(*_cols([]), now_ms=2000)
    assert len(history) == 0
    assert history.cut == 1950


def test_a_rate_its_memory_cannot_span_pauses_the_history_until_resumed() -> None:
    """10 readings that span less than one bucket: keeping them could never rewrite a past
    bucket, so the history drops them and takes nothing; resume() restarts it from a state."""
    history = ReadingHistory(n_sensors=1, capacity=10, horizon_ms=10**9, min_span_ms=BUCKET)
    history.add(*_cols([(0, 1000 + i % 3, i) for i in range(11)]), now_ms=1003)
    assert not history.active
    assert len(history) == 0
    history.add(*_cols([(0, 1004, 1)]), now_ms=1004)
    assert len(history) == 0
    sensor, ts, _, _ = _cols([(0, 990, 1)])
    assert history.affected_buckets(sensor, ts, bucket_ms=BUCKET, before=1000).tolist() == []
    live = ReadingHistory(n_sensors=1, capacity=100, horizon_ms=10**9).floor
    live.update(*_cols([(0, 1004, 7)]))
    history.resume(live)
    assert history.active
    assert history.cut == 1005
    history.add(*_cols([(0, 1020, 8)]), now_ms=1030)
    assert len(history) == 1
    states = {s: _state_dict(st) for s, st in history.states_at(np.array([1010]), bucket_ms=10)}
    assert states == {1010: {0: (1004, 7)}}


def _arrays(state: object) -> list[list[object]]:
    return [
        getattr(state, name).tolist() for name in ("ts", "seq", "values", "prev_ts", "prev_values")
    ]


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            readings,
            st.lists(st.integers(0, 10), max_size=3),  # buckets asked for after the add
            st.integers(0, 40),  # how far the clock moved
        ),
        min_size=1,
        max_size=8,
    ),
    capacity=st.integers(4, 60),
)
def test_kept_states_as_of_past_ends_equal_a_recomputation(
    steps: list[tuple[list[tuple[int, int, int]], list[int], int]], capacity: int
) -> None:
    """The states kept between calls, brought up to date as readings (late or not, kept or
    folded) arrive, are exactly what a history that never kept any recomputes, every field."""
    kept = ReadingHistory(n_sensors=N_SENSORS, capacity=capacity, horizon_ms=60)
    now = 100
    added: list[tuple[list[tuple[int, int, int]], int]] = []
    for rows, asked, moved in steps:
        now += moved
        seq = [(s, t + now - 100, v) for s, t, v in rows]
        kept.add(*_cols(seq), now_ms=now)
        added.append((seq, now))
        fresh = ReadingHistory(n_sensors=N_SENSORS, capacity=capacity, horizon_ms=60)
        for part, at in added:
            fresh.add(*_cols(part), now_ms=at)
        assert fresh.cut == kept.cut
        starts = np.array(sorted({b * BUCKET + now - now % BUCKET - 100 for b in asked}))
        starts = starts[starts + BUCKET > kept.cut]
        got = [(s, _arrays(x)) for s, x in kept.states_at(starts, bucket_ms=BUCKET)]
        want = [(s, _arrays(x)) for s, x in fresh.states_at(starts, bucket_ms=BUCKET)]
        assert got == want
