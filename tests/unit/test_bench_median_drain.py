"""A raw mode's drain is the median of several, as its InfluxDB limit is
(bench/ingest_throughput/runner.py): the middle run's figures, exact only if every run was,
the highest RSS, every run's rate on record."""

from __future__ import annotations

import math

from bench.ingest_throughput.runner import Drain, median_drain
from bench.ingest_throughput.workload import WORKLOADS

_W = next(w for w in WORKLOADS if w.store_raw)


def _run(rate: float, *, rss: float = 200.0, exact: bool = True, cpu_us: float = 1.0) -> Drain:
    return Drain(workload=_W, members=1, rate=rate, rss_mb=rss, exact=exact, cpu_us=cpu_us)


def test_the_middle_run_is_the_subject_whatever_order_the_runs_came_in() -> None:
    got = median_drain([_run(251_000, cpu_us=1.1), _run(229_000, cpu_us=1.3), _run(240_000)])
    assert (got.rate, got.cpu_us) == (240_000, 1.0)
    assert got.run_rates == [251_000, 229_000, 240_000]  # in the order they ran
    assert got.exact


def test_one_inexact_run_makes_the_median_inexact_and_counts_as_the_slowest() -> None:
    got = median_drain([_run(251_000), _run(math.nan, exact=False), _run(240_000)])
    assert got.rate == 240_000
    assert not got.exact


def test_the_highest_rss_of_the_runs_is_the_subjects() -> None:
    got = median_drain([_run(1.0, rss=210), _run(3.0, rss=290), _run(2.0, rss=220)])
    assert (got.rate, got.rss_mb) == (2.0, 290)


def test_one_run_is_its_own_median_with_no_runs_listed() -> None:
    got = median_drain([_run(300_000)])
    assert got.rate == 300_000
    assert got.run_rates == []
