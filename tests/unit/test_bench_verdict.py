"""The capacity bench's pass/miss verdict (bench/ingest_throughput/report.py): the issue's
goals as ratios to a limit from the same run, per process against the trivial consumer."""

from __future__ import annotations

from bench.ingest_throughput.limits import Limit
from bench.ingest_throughput.report import verdict
from bench.ingest_throughput.runner import Drain
from bench.ingest_throughput.workload import WORKLOADS, Workload


def _workload(key: str) -> Workload:
    return next(w for w in WORKLOADS if w.key == key)


def _limit(rate: float) -> Limit:
    return Limit(name="limit", rate=rate, detail="")


def test_single_readings_are_judged_per_process_against_the_trivial_consumer() -> None:
    a = _workload("a")
    one = Drain(workload=a, members=1, rate=8_000.0)
    two = Drain(workload=a, members=2, rate=12_000.0)
    assert verdict(a, one, _limit(10_000.0)) == (0.8, "pass")
    # two members at 12 000 together are 6 000 each: 0.6 of the consumer, 0.8 / 0.6 short
    assert verdict(a, two, _limit(10_000.0)) == (0.6, "MISS (x1.33 needed)")


def test_raw_storage_needs_both_the_ratio_and_twice_issue_5s_rate() -> None:
    d = _workload("d-json")
    assert d.goal_rate == 154_016
    near_ceiling = Drain(workload=d, members=1, rate=100_000.0)
    # 0.91 of InfluxDB alone, but 154 016 / 100 000 = 1.54x short of the absolute goal
    assert verdict(d, near_ceiling, _limit(110_000.0))[1] == "MISS (x1.54 needed)"
    fast = Drain(workload=d, members=1, rate=200_000.0)
    assert verdict(d, fast, _limit(220_000.0))[1] == "pass"


def test_binary_batches_have_an_absolute_goal() -> None:
    c = _workload("c")
    assert verdict(c, Drain(workload=c, members=1, rate=1_250_000.0), _limit(9e7))[1] == (
        "MISS (x2.00 needed)"
    )
    assert verdict(c, Drain(workload=c, members=1, rate=2_500_000.0), _limit(9e7))[1] == "pass"
