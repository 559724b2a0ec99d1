"""The edge's per-reading shortcuts keep their promises: lanes found without a loop over the
readings, a sensor's health copied field by field, and the hub's readings handed to the
publisher loop without a wake-up per burst."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import orjson
from hypothesis import given
from hypothesis import strategies as st

from contract.payload import SensorKind
from edge.agent import LOOP_TICK_S, EdgeAgent
from edge.config import EdgeSettings
from edge.reading import EdgeReading
from edge.serial_reader import SensorHealth
from edge.spool import LANES, MemoryOutbox, lane_of, split_lanes
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


def _agent(tmp_path: Path, delay_s: float) -> EdgeAgent:
    settings = EdgeSettings(
        gateway_id="gw-01",
        site_id="rs-01",
        spool_path=tmp_path / "gw.spool",
        serial_ports={"bus0": "/dev/null"},
        batch_max_readings=200,
        batch_max_delay_s=delay_s,
    )
    # builds no threads and opens nothing; the outbox is in memory
    return EdgeAgent(settings=settings, outbox=MemoryOutbox().open())


def _bursts(n: int) -> list[list[EdgeReading]]:
    return [[_reading(25 * b + i, SensorKind.BED) for i in range(25)] for b in range(n)]


def test_full_windows_wait_for_the_loops_tick_and_go_to_the_spool_together(
    tmp_path: Path,
) -> None:
    """Bursts of 25 readings, a 200-reading window: the hub wakes the loop for none of the
    17 bursts (425 readings, two full windows); the loop's next tick takes them all, stores
    the two windows (400 readings) and keeps 25 in the open window, whose age counts from
    when its first burst arrived, not from the pickup."""
    agent = _agent(tmp_path, delay_s=3600)  # no window closes by age while the test runs
    bursts = _bursts(17)
    for burst in bursts:
        agent._hand_over(burst)
    assert agent._inbox.qsize() == 0
    arrived = agent._bursts[16][0]
    agent._collect(0.0)  # a tick
    assert (agent._spool.depth(), len(agent._batcher)) == (400, 25)
    assert agent._batcher._since == arrived
    stored = [r["seq"] for b in agent._spool.take(limit=5) for r in orjson.loads(b.body)]
    assert stored == list(range(400))


def test_a_window_due_before_the_next_tick_is_started_by_a_wake_up(tmp_path: Path) -> None:
    """With batch_max_delay_s under the loop's tick, the burst that starts a window wakes the
    loop (the window must close before the loop would look); later bursts do not."""
    agent = _agent(tmp_path, delay_s=LOOP_TICK_S / 2)
    first, second = _bursts(2)
    agent._hand_over(first)
    assert agent._inbox.qsize() == 1
    agent._inbox.get_nowait()
    agent._bursts.clear()
    agent._batcher.add(first)  # the window the wake-up started
    agent._hand_over(second)
    assert agent._inbox.qsize() == 0
