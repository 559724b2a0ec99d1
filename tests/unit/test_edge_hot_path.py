"""The edge's per-reading shortcuts keep their promises: lanes found without a loop over the
readings, a sensor's health copied field by field, and the hub's readings handed to the
publisher loop without a wake-up per burst."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from contract.payload import SensorKind
from edge.agent import EdgeAgent
from edge.config import EdgeSettings
from edge.reading import EdgeReading
from edge.serial_reader import SensorHealth
from edge.spool import LANES, lane_of, split_lanes
from edge.spool.policy import batch_lane

T0 = 1_764_000_000_000


def _reading(i: int, kind: SensorKind) -> EdgeReading:
    return EdgeReading(f"s-{i}", kind, T0 + i, i, {})


@given(st.lists(st.sampled_from(list(SensorKind)), max_size=60))
def test_lanes_are_those_a_reading_by_reading_split_gives(kinds: list[SensorKind]) -> None:
    """One kind or many: one list per non-empty lane, most urgent first, arrival order kept,
    and a batch's lane is its most urgent reading's."""
    readings = [_reading(i, kind) for i, kind in enumerate(kinds)]
    by_lane: list[list[EdgeReading]] = [[] for _ in LANES]
    for r in readings:
        by_lane[lane_of(r.kind)].append(r)
    assert split_lanes(readings) == [lane for lane in by_lane if lane]
    if readings:
        assert batch_lane(readings) == min(lane_of(k) for k in kinds)


def test_sensor_health_copy_has_every_field_and_is_independent() -> None:
    """Every field (all set away from their defaults) comes across; changing the copy leaves
    the reader's own record alone."""
    health = SensorHealth(
        last_seen_ms=T0,
        last_seq=41,
        frames=42,
        gaps=3,
        resets=1,
        duplicates=2,
        skew_ms=-1500,
        clock_jumps=1,
        interval_ms=100.5,
    )
    copy = health.copy()
    assert [getattr(copy, f.name) for f in fields(SensorHealth)] == [
        T0,
        41,
        42,
        3,
        1,
        2,
        -1500,
        1,
        100.5,
    ]
    copy.observe(42, T0 + 100, T0 + 100, 60_000)
    assert (health.last_seq, health.frames) == (41, 42)


def test_the_hub_wakes_the_publisher_loop_only_to_start_or_fill_a_window(tmp_path: Path) -> None:
    """Bursts of 25 readings, a 200-reading window: the first burst wakes the loop (it starts
    the window, whose age counts from then); once the window holds readings, the next wake-up
    comes with the burst that makes a full window's worth wait. Nothing is lost: every burst
    is on the deque the loop empties."""
    settings = EdgeSettings(
        gateway_id="gw-01",
        site_id="rs-01",
        spool_path=tmp_path / "gw.spool",
        serial_ports={"bus0": "/dev/null"},
        batch_max_readings=200,
        batch_max_delay_s=3600,  # no window closes by age while the test runs
    )
    agent = EdgeAgent(settings=settings)  # builds no threads and opens nothing
    bursts = [[_reading(25 * b + i, SensorKind.BED) for i in range(25)] for b in range(9)]
    agent._hand_over(bursts[0])
    assert agent._inbox.qsize() == 1
    agent._collect(0.0)  # the loop wakes: 25 readings open the window
    assert (agent._inbox.qsize(), len(agent._batcher)) == (0, 25)
    for burst in bursts[1:8]:
        agent._hand_over(burst)
    assert agent._inbox.qsize() == 0  # 175 readings wait for the loop's next tick
    agent._hand_over(bursts[8])
    assert agent._inbox.qsize() == 1  # 200 wait: a full window's worth
    assert [r for burst in agent._bursts for r in burst] == [r for b in bursts[1:] for r in b]
