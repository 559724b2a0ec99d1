"""The ingester's ingest_health point (cloud/ingest/health.py): one per period, exact counts,
nearest-rank lag percentiles, nothing between periods."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.ingest.health import IngestHealth, LagTally


def test_the_first_window_writes_a_point_then_one_per_period() -> None:
    health = IngestHealth(ingester="pantau-ingest-1", every_ms=10_000)
    health.observe(messages=2, lags_s=np.array([0.5, 1.5]))
    first = health.due_line(1_000_000, unacked=3)
    assert first == (
        "ingest_health,ingester=pantau-ingest-1 readings=2i,messages=2i,dead_letters=0i,"
        "unacked=3i,readings_per_s=0.0,lag_p50_s=0.5,lag_p99_s=1.5,lag_max_s=1.5 1000000000"
    )
    health.observe(messages=5, lags_s=np.arange(1, 101, dtype=np.float64))
    health.refused(4)
    assert health.due_line(1_009_999, unacked=0) is None
    second = health.due_line(1_010_000, unacked=1)
    assert second == (
        "ingest_health,ingester=pantau-ingest-1 readings=100i,messages=5i,dead_letters=4i,"
        "unacked=1i,readings_per_s=10.0,lag_p50_s=50.0,lag_p99_s=99.0,lag_max_s=100.0 "
        "1010000000"
    )


def test_a_period_without_readings_has_no_lag_fields() -> None:
    health = IngestHealth(ingester="a b", every_ms=10_000)
    assert health.due_line(0, unacked=0) == (
        r"ingest_health,ingester=a\ b readings=0i,messages=0i,dead_letters=0i,unacked=0i,"
        "readings_per_s=0.0 0"
    )


@settings(max_examples=300, deadline=None)
@given(
    windows=st.lists(
        st.one_of(
            st.lists(st.integers(-5_000, 3_600_000), min_size=1, max_size=40).map(
                lambda ms: np.array(ms, dtype=np.int64) / 1000.0  # as the pipeline makes them
            ),
            st.lists(st.floats(-10, 1e7, allow_nan=False), min_size=1, max_size=40).map(np.array),
            st.just(np.array([0.0, 2e6])),  # whole ms, but too wide a range to count per ms
        ),
        min_size=1,
        max_size=6,
    )
)
def test_lag_tally_gives_numpys_percentiles_and_maximum(windows: list[np.ndarray]) -> None:
    """The per-distinct-lag counts give exactly numpy's inverted_cdf p50 and p99 and the max
    of all the period's lags, whole milliseconds or not."""
    tally = LagTally()
    for w in windows:
        tally.add(w)
    lags = np.concatenate(windows)
    p50, p99 = np.percentile(lags, [50, 99], method="inverted_cdf")
    assert tally.summary() == (float(p50), float(p99), float(lags.max()))


def test_a_period_of_whole_ms_lags_keeps_one_value_per_distinct_lag() -> None:
    """200 000 lags of 3 distinct values are kept as 3 values and 3 counts."""
    tally = LagTally()
    ms = np.repeat(np.array([250, 251, 900], dtype=np.int64), [100_000, 50_000, 50_000])
    tally.add(ms / 1000.0)
    assert tally.kept == 3
    assert tally.summary() == (0.25, 0.9, 0.9)
