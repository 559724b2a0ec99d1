"""The (d) limit's request plan (bench/ingest_throughput/influx_limit.py): InfluxDB alone
writes as many rollup lines as the drain did, each window's beside the next window's raw
bodies, and the raw-only limit none; and influxd's CPU is read, for the limit and the drain
alike, once it has gone quiet."""

from __future__ import annotations

import numpy as np

from bench.ingest_throughput.influx_limit import (
    Recorded,
    _split_first,
    bodies_in_order,
    rollup_windows,
    series_seed,
)
from bench.ingest_throughput.procstat import settled_cpu
from bench.ingest_throughput.replay import Window


def test_every_window_is_sent_when_the_drain_wrote_a_rollup_write_per_window() -> None:
    assert rollup_windows([918, 918, 918, 900], 3_654) == [1, 1, 1, 1]


def test_windows_are_spread_evenly_down_to_the_drains_rollup_lines() -> None:
    picked = rollup_windows([918] * 10, 4_590)  # the drain coalesced to half its windows
    assert sorted(set(picked)) == [0, 1]
    assert picked.count(1) == 5
    assert picked[-1]  # a drain always ends with the write of its last window
    # never two skipped in a row, at half: evenly spread, not the first half only
    assert all(picked[i] or picked[i + 1] for i in range(len(picked) - 1))


def test_a_drain_that_rewrote_past_buckets_has_windows_sent_more_than_once() -> None:
    """A drain across a rollup bucket's end rewrote the past bucket beside most windows'
    own rollups (about 1.5 sets a window): the limit sends as many lines, spread evenly."""
    picked = rollup_windows([918] * 10, 13_770)
    assert sum(picked) == 15
    assert set(picked) == {1, 2}
    assert picked[-1] >= 1


def test_no_rollups_are_sent_for_a_drain_that_wrote_none() -> None:
    assert rollup_windows([918, 918], 0) == [0, 0]


def _recorded() -> Recorded:
    return Recorded(
        first=[b"first"],
        raw=[[b"r0a", b"r0b\nr0b"], [b"r1a"], [b"r2a"]],
        raw_counts=[[1, 2], [1], [1]],
        rollups=[[b"u0"], [b"u1"], [b"u2a", b"u2b"]],
        rollup_lines=[10, 10, 12],
    )


def test_a_windows_rollups_follow_the_next_windows_raw_bodies() -> None:
    plan = bodies_in_order(_recorded(), 32)
    assert plan.bodies == [b"r0a", b"r0b\nr0b", b"r1a", b"u0", b"r2a", b"u1", b"u2a", b"u2b"]
    assert plan.raw_lines == [1, 2, 1, 0, 1, 0, 0, 0]
    assert plan.rollup_lines == 32


def test_a_windows_rollups_are_repeated_when_the_drain_wrote_more() -> None:
    plan = bodies_in_order(_recorded(), 64)
    rest = [b"u2a", b"u2b"] * 2
    assert plan.bodies == [b"r0a", b"r0b\nr0b", b"r1a", b"u0", b"u0", b"r2a", b"u1", b"u1", *rest]
    assert plan.raw_lines == [1, 2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert plan.rollup_lines == 64


def test_the_raw_only_limit_sends_no_rollups() -> None:
    plan = bodies_in_order(_recorded(), None)
    assert plan.bodies == [b"r0a", b"r0b\nr0b", b"r1a", b"r2a"]
    assert plan.raw_lines == [1, 2, 1, 1]
    assert _recorded().raw_points == 5  # derived from the bodies' counts
    assert plan.rollup_lines == 0


def test_each_series_first_line_is_split_off_the_first_window() -> None:
    w = Window()
    w.raw = [b"a1", b"a2", b"b1", b"c1", b"c2", b"c3"]
    w.sensors = np.array([4, 4, 7, 9, 9, 9])
    assert _split_first(w) == ([b"a1", b"b1", b"c1"], [b"a2", b"c2", b"c3"])


def test_the_drains_series_are_created_by_each_series_first_line_a_minute_earlier() -> None:
    """The drain's database gets the series the limit's gets before its clock, each at a time
    before every point of the backlog: nothing the drain stores is overwritten."""
    rec = _recorded()
    rec.first = [b'bed,sensor=b-1 occupied=1i,total=2i 1700000000000000\nqueue,sensor=q\\ 2 '
                 b'waiting=3i,note="a b" 1700000000000007']  # fmt: skip
    assert series_seed(rec) == [
        b"bed,sensor=b-1 occupied=1i,total=2i 1699999940000000\n"
        b'queue,sensor=q\\ 2 waiting=3i,note="a b" 1699999940000007'
    ]
    assert series_seed(rec, earlier_us=1) == [
        b"bed,sensor=b-1 occupied=1i,total=2i 1699999999999999\n"
        b'queue,sensor=q\\ 2 waiting=3i,note="a b" 1700000000000006'
    ]


def test_influxds_cpu_is_read_once_it_has_gone_quiet() -> None:
    """Busy (0.05 s a step) for 6 steps, then 0.0005 s a step: the reading is taken after the
    first 4 quiet steps, with the busy work counted and nothing after it waited for."""
    steps = [0.05] * 6 + [0.0005] * 20
    total = iter([sum(steps[:i]) for i in range(len(steps) + 1)])
    reads: list[float] = []

    def read() -> float:
        reads.append(next(total))
        return reads[-1]

    got = settled_cpu(read, step_s=0.05, quiet_steps=4, idle_share=0.02, sleep=lambda _: None)
    assert len(reads) == 1 + 6 + 4
    assert got == sum(steps[:10])


def test_a_process_that_never_goes_quiet_is_read_at_the_limit() -> None:
    clock = iter(range(1000))
    got = settled_cpu(lambda: float(next(clock)), step_s=0.05, limit_s=1.0, sleep=lambda _: None)
    assert got == 20.0  # 1 s in steps of 0.05: the first read, then 20 more
