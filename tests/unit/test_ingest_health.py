"""The ingester's ingest_health point (cloud/ingest/health.py): one per period, exact counts,
nearest-rank lag percentiles, nothing between periods."""

from __future__ import annotations

import numpy as np

from cloud.ingest.health import IngestHealth


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
