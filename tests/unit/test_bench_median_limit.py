"""The goal's InfluxDB limit is the median of several runs (bench/ingest_throughput/limits.py):
the middle run's rate and CPU, with every run's rate on record."""

from __future__ import annotations

from bench.ingest_throughput.limits import Limit, median_run


def _run(rate: float, cpu_us: float) -> Limit:
    return Limit(name="InfluxDB, every line", rate=rate, detail="d", cpu_us=cpu_us)


def test_the_middle_run_is_the_limit_whatever_order_the_runs_came_in() -> None:
    got = median_run([_run(227_468, 8.9), _run(204_000, 9.6), _run(215_283, 9.1)])
    assert (got.rate, got.cpu_us) == (215_283, 9.1)
    assert got.name == "InfluxDB, every line"
    # every run's rate stays on record, in the order they ran
    assert got.detail.startswith("median of 3 runs (227,468, 204,000, 215,283/s)")


def test_one_run_is_its_own_median() -> None:
    got = median_run([_run(300_000, 6.0)])
    assert (got.rate, got.cpu_us) == (300_000, 6.0)
