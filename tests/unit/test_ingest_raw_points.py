"""PointBuilder.raw: one line per reading, ordered by kind and then by sensor (a series' points
of a window side by side, docs/adr/0037-influxdb-inside-the-drain.md), each line carrying the
message, reading index and readings row it was formatted from."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from city import DEMO_CITY, load_registry
from cloud.influx import format_int_rows
from cloud.ingest.decode import Readings
from cloud.ingest.topology import MAX_FIELDS, CityIndex
from cloud.ingest.writer import PointBuilder
from cloud.storage_schema import BED_FIELDS, CROWD_FIELDS, QUEUE_FIELDS
from contract import KIND_CODES, SensorKind

INDEX = CityIndex.from_registry(load_registry(DEMO_CITY))
BUILDER = PointBuilder(index=INDEX)
FIELDS = {
    KIND_CODES[SensorKind.BED]: BED_FIELDS,
    KIND_CODES[SensorKind.CROWD]: CROWD_FIELDS,
    KIND_CODES[SensorKind.QUEUE]: QUEUE_FIELDS,
}
KIND_ORDER = [
    KIND_CODES[SensorKind.BED],
    KIND_CODES[SensorKind.CROWD],
    KIND_CODES[SensorKind.QUEUE],
]


@st.composite
def windows(draw: st.DrawFn) -> Readings:
    n = draw(st.integers(min_value=0, max_value=60))
    # few sensors, so most appear several times in a window, as in a drain
    sensors = draw(
        st.lists(st.integers(min_value=0, max_value=INDEX.n_sensors - 1), min_size=1, max_size=6)
    )
    sensor = np.array([draw(st.sampled_from(sensors)) for _ in range(n)], np.int32)
    message = np.array(sorted(draw(st.integers(0, 9)) for _ in range(n)), np.int32)
    return Readings(
        message=message,
        index=np.array([draw(st.integers(0, 499)) for _ in range(n)], np.int32),
        sensor=sensor,
        kind=INDEX.sensor_kind[sensor].astype(np.int8),
        ts=np.array([draw(st.integers(1.7e12, 1.8e12)) for _ in range(n)], np.int64),
        seq=np.array([draw(st.integers(0, 2**40)) for _ in range(n)], np.int64),
        values=np.array(
            [[draw(st.integers(0, 10**6)) for _ in range(MAX_FIELDS)] for _ in range(n)], np.int64
        ).reshape(n, MAX_FIELDS),
    )


@settings(max_examples=200, deadline=None)
@given(windows())
def test_raw_lines_come_by_kind_then_sensor_and_each_knows_its_reading(r: Readings) -> None:
    lines = BUILDER.raw(r)
    assert len(lines.lines) == len(r)
    assert sorted(lines.row.tolist()) == list(range(len(r)))  # every reading once
    for i, row in enumerate(lines.row.tolist()):
        names = FIELDS[int(r.kind[row])]
        want = format_int_rows(
            [BUILDER.raw_keys[int(r.sensor[row])]],
            names,
            [[*r.values[row, : len(names) - 1].tolist(), int(r.seq[row])]],
            [int(r.ts[row]) * 1000 + int(r.seq[row]) % 1000],
        )
        assert lines.lines[i] == want[0].encode()
        assert lines.owner(i) == (int(r.message[row]), int(r.index[row]))
    # by kind (bed, crowd, queue), then sensor, then the window's own order of readings
    key = [(KIND_ORDER.index(int(r.kind[row])), int(r.sensor[row]), row) for row in lines.row]
    assert key == sorted(key)


def test_a_window_in_reading_order_is_written_sensor_by_sensor() -> None:
    """Three batches of the same two bed sensors, one reading each: the six lines come as
    a, a, a, b, b, b (in their batches' order), not a, b, a, b, a, b."""
    beds = np.flatnonzero(INDEX.sensor_kind == KIND_CODES[SensorKind.BED])[:2].astype(np.int32)
    sensor = np.tile(beds, 3)
    r = Readings(
        message=np.repeat(np.arange(3, dtype=np.int32), 2),
        index=np.tile(np.arange(2, dtype=np.int32), 3),
        sensor=sensor,
        kind=INDEX.sensor_kind[sensor].astype(np.int8),
        ts=np.full(6, 1_764_000_000_000, np.int64) + np.arange(6),
        seq=np.arange(6, dtype=np.int64),
        values=np.ones((6, MAX_FIELDS), np.int64),
    )
    lines = BUILDER.raw(r)
    assert lines.row.tolist() == [0, 2, 4, 1, 3, 5]
    assert [lines.owner(i) for i in range(6)] == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
