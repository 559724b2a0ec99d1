"""Rollup points: formatted column-wise exactly as one line per point would be, and within a
bucket written only for the cells whose fields changed (cloud/ingest/rollup_points.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.influx import FieldValue, LineProtocolError, format_line, format_rows_at, series_key
from cloud.ingest.aggregate import SensorState, bed_rollups, crowd_sites, queue_sites
from cloud.ingest.rollup_points import RollupPoints
from cloud.ingest.topology import FACILITIES, MAX_FIELDS
from cloud.storage_schema import BED_ROLLUP_INTS, CROWD_SITE_INTS, QUEUE_SITE_INTS, Measurement
from contract import KIND_CODES, SensorKind
from tests.pipeline_support import INDEX, aggregates_pipeline

N = INDEX.n_sensors
T0 = 1_800_000_000_000
BUCKET = 60_000
STAMP = T0 - T0 % BUCKET


def _state(seed: int = 1) -> SensorState:
    """Every sensor of the demo city reporting twice (so queues have a service rate)."""
    rng = np.random.default_rng(seed)
    state = SensorState(n_sensors=N)
    every = np.arange(N, dtype=np.int32)
    for k in range(2):
        ts = np.full(N, T0 - 20_000 + 10_000 * k, np.int64) + rng.integers(0, 999, N)
        values = rng.integers(0, 60, (N, MAX_FIELDS)).astype(np.int64)
        values[:, 1] += 10 * k  # queues serve more tickets over time
        state.update(every, ts, np.full(N, k, np.int64), values)
    return state


def _reference(state: SensorState, stamp_ms: int) -> list[str]:
    """The rollup lines one point at a time through format_line (the pre-column-wise code)."""
    out = []
    ts_us = stamp_ms * 1000
    b = bed_rollups(state, INDEX)
    names = (*BED_ROLLUP_INTS, "oldest_ms", "newest_ms")
    for i in range(len(b.group)):
        g = INDEX.groups[int(b.group[i])]
        bt = int(b.bed_type[i])
        tags = {
            "level": g.level,
            "code": g.code,
            "name": g.name,
            "bed_type": str(bt) if bt else "all",
            "facility": FACILITIES[int(b.facility[i])],
        }
        fields: dict[str, FieldValue] = {n: int(getattr(b, n)[i]) for n in names}
        if not math.isnan(b.bor[i]):
            fields["bor"] = float(b.bor[i])
        out.append(format_line(series_key(Measurement.BED_ROLLUP, tags), fields, ts_us))
    reg = INDEX.registry
    for m, r, ints, fname in (
        (Measurement.CROWD_SITE, crowd_sites(state, INDEX), CROWD_SITE_INTS, "ratio"),
        (Measurement.QUEUE_SITE, queue_sites(state, INDEX), QUEUE_SITE_INTS, "wait_s"),
    ):
        for i, site_i in enumerate(r.site.tolist()):
            site = reg.doc.sites[site_i]
            tags = {
                "site": site.id,
                "site_name": site.name,
                "kelurahan": site.kelurahan,
                "kecamatan": reg.kecamatan_of_kelurahan[site.kelurahan].code,
                "site_kind": site.kind.value,
            }
            fields = {n: int(getattr(r, n)[i]) for n in (*ints, "oldest_ms", "newest_ms")}
            value = float(getattr(r, fname)[i])
            if not math.isnan(value):
                fields[fname] = value
            out.append(format_line(series_key(m, tags), fields, ts_us))
    return out


def test_column_wise_lines_equal_one_format_line_per_point() -> None:
    state = _state()
    lines = RollupPoints(index=INDEX).lines(state, STAMP)
    assert lines == _reference(state, STAMP)
    assert len(lines) == 237 + 4 + 3  # bed cells, crowd sites, queue sites of the demo city
    assert any(",bor=" in line for line in lines)
    assert any(",wait_s=" in line for line in lines)


def test_a_float_that_is_nan_is_left_out_and_an_infinite_one_refused() -> None:
    assert format_rows_at(["m,t=1"], ["a"], [[1]], "f", [math.nan], 5) == ["m,t=1 a=1i 5"]
    assert format_rows_at(["m,t=1"], ["a"], [[1]], "f", [0.5], 5) == ["m,t=1 a=1i,f=0.5 5"]
    with pytest.raises(LineProtocolError):
        format_rows_at(["m,t=1"], ["a"], [[1]], "f", [math.inf], 5)


def test_the_first_write_of_a_bucket_is_whole_and_an_unchanged_state_writes_nothing_more() -> None:
    points, state = RollupPoints(index=INDEX), _state()
    first, written = points.changed(state, STAMP)
    assert first == _reference(state, STAMP)
    points.remember(written)
    again, _ = points.changed(state, STAMP)
    assert again == []
    # The next bucket gets every cell again, so each bucket holds a point per cell.
    next_bucket, _ = points.changed(state, STAMP + BUCKET)
    assert next_bucket == _reference(state, STAMP + BUCKET)


def test_one_changed_bed_sensor_rewrites_only_the_cells_it_counts_in() -> None:
    points, state = RollupPoints(index=INDEX), _state()
    _, written = points.changed(state, STAMP)
    points.remember(written)
    before = set(_reference(state, STAMP))
    bed = int(np.flatnonzero(INDEX.sensor_kind == KIND_CODES[SensorKind.BED])[0])
    values = state.values[[bed]].copy()
    values[0, 1] += 1  # one more patient
    state.update(np.array([bed], np.int32), state.ts[[bed]] + 1, np.array([9]), values)
    lines, _ = points.changed(state, STAMP)
    assert lines == [line for line in _reference(state, STAMP) if line not in before]
    # the site, its kelurahan, kecamatan, kota and provinsi (a hospital has no RW), each
    # x (its bed type | all) x (hospital | all)
    assert len(lines) == 5 * 2 * 2
    assert all(line.startswith("bed_rollup,") for line in lines)


def test_after_a_forgotten_write_the_next_one_is_whole() -> None:
    points, state = RollupPoints(index=INDEX), _state()
    _, written = points.changed(state, STAMP)
    points.remember(written)
    points.forget()
    lines, _ = points.changed(state, STAMP)
    assert lines == _reference(state, STAMP)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, N - 1), st.integers(-5_000, 5_000), st.integers(0, 3)),
        min_size=1,
        max_size=30,
    )
)
def test_changed_lines_are_the_full_lines_restricted_to_cells_whose_fields_changed(
    window: list[tuple[int, int, int]],
) -> None:
    points, state = RollupPoints(index=INDEX), _state(seed=3)
    _, written = points.changed(state, STAMP)
    points.remember(written)
    before = set(_reference(state, STAMP))
    sensor = np.array([s for s, _, _ in window], np.int32)
    ts = np.array([T0 + dt for _, dt, _ in window], np.int64)
    values = np.array([[v] * MAX_FIELDS for _, _, v in window], np.int64)
    state.update(sensor, ts, np.arange(len(window), dtype=np.int64), values)
    lines, _ = points.changed(state, STAMP)
    assert lines == [line for line in _reference(state, STAMP) if line not in before]


class _Recorder:
    """Records the lines a pipeline writes (pure logic: no InfluxDB needed)."""

    def __init__(self) -> None:
        self.writes: list[list[str]] = []

    def write(self, lines: list[str]) -> list[object]:
        self.writes.append(list(lines))
        return []


def test_the_pipeline_writes_a_window_that_changed_nothing_visible_as_no_rollup_line(
    tmp_path: Path,
) -> None:
    state, recorder = _state(), _Recorder()
    pipeline = aggregates_pipeline(
        dead_letter_dir=tmp_path, writer=recorder, state=state, clock_ms=lambda: T0
    )
    pipeline.write_rollups(T0)
    pipeline.write_rollups(T0 + 1_000)  # same bucket, same state
    assert [len(w) for w in recorder.writes] == [244, 0]
