"""Outbox rules, for the in-memory and the SQLite implementation alike: a reading leaves only
when acknowledged or as a counted drop, a batch keeps its seq until then, seqs only increase,
bed batches are handed out before queue before crowd, and the bounds drop exactly what the
policy says."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.payload import SensorKind
from edge.reading import encode_readings
from edge.spool import (
    FullPolicy,
    MemoryOutbox,
    Outbox,
    PendingBatch,
    SpoolLimits,
    SqliteOutbox,
    split_lanes,
)
from tests.spool_support import T0, FakeClock, held, nonzero, of, reading

BED, QUEUE, CROWD = SensorKind.BED, SensorKind.QUEUE, SensorKind.CROWD

OutboxFactory = Callable[..., Outbox]


@pytest.fixture(params=["memory", "sqlite"])
def make_box(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OutboxFactory]:
    """Builds an open outbox of the parametrised kind: ``make_box(clock, limits)``."""
    opened: list[Outbox] = []

    def make(clock: FakeClock, limits: SpoolLimits | None = None) -> Outbox:
        box: Outbox
        if request.param == "memory":
            box = MemoryOutbox(clock=clock, limits=limits).open()
        else:
            path = tmp_path / "spool" / f"gw{len(opened)}.spool"
            box = SqliteOutbox(path=path, clock=clock, limits=limits).open()
        opened.append(box)
        return box

    yield make
    for box in opened:
        box.close()


@pytest.fixture
def clock_and_outbox(make_box: OutboxFactory) -> tuple[FakeClock, Outbox]:
    clock = FakeClock()
    return clock, make_box(clock)


def test_batches_keep_their_seq_until_every_reading_is_acked(
    clock_and_outbox: tuple[FakeClock, Outbox],
) -> None:
    clock, box = clock_and_outbox
    first = box.put([reading(0), reading(1)])
    clock.now += 2500
    second = box.put([reading(2)])
    assert first == T0
    assert second == first + 1
    assert box.depth() == 3
    assert box.oldest_age_s() == 2.5
    pending = box.take(limit=10)
    assert [(b.seq, b.readings) for b in pending] == [
        (first, (reading(0), reading(1))),
        (second, (reading(2),)),
    ]
    assert box.take(limit=10, skip={first})[0].seq == second
    assert box.take(limit=1) == pending[:1]
    assert box.take(limit=10, skip={first, second}) == []
    # A batch acked in part (only its first reading) is re-sent with only what is missing.
    first_part = PendingBatch(first, pending[0].ids[:1], encode_readings([reading(0)]), T0)
    assert box.mark_acked(first_part) == 1
    again = box.take(limit=10)
    assert [(b.seq, b.readings) for b in again] == [(first, (reading(1),)), (second, (reading(2),))]
    assert box.mark_acked(pending[0]) == 1
    assert box.mark_acked(pending[0]) == 0  # a duplicate PUBACK removes nothing
    assert box.mark_acked(pending[1]) == 1
    assert box.depth() == 0
    assert box.oldest_age_s() is None
    assert box.take(limit=10) == []
    assert box.put([reading(3)]) == second + 1


def test_split_lanes_groups_by_kind_beds_first_keeping_arrival_order() -> None:
    mixed = [of(CROWD, 0)[0], of(BED, 0)[0], of(QUEUE, 0)[0], of(CROWD, 1)[0], of(BED, 1)[0]]
    assert split_lanes(mixed) == [of(BED, 0, 1), of(QUEUE, 0), of(CROWD, 0, 1)]
    assert split_lanes(of(CROWD, 4)) == [of(CROWD, 4)]
    assert split_lanes([]) == []


def test_take_hands_out_bed_batches_then_queue_then_crowd_each_in_seq_order(
    clock_and_outbox: tuple[FakeClock, Outbox],
) -> None:
    _clock, box = clock_and_outbox
    c1 = box.put(of(CROWD, 0, 1))
    q1 = box.put(of(QUEUE, 0))
    b1 = box.put(of(BED, 0, 1))
    c2 = box.put(of(CROWD, 2))
    b2 = box.put(of(BED, 2))
    q2 = box.put(of(QUEUE, 1, 2))
    assert [b.seq for b in box.take(limit=10)] == [b1, b2, q1, q2, c1, c2]
    assert [b.seq for b in box.take(limit=3)] == [b1, b2, q1]
    # In-flight batches are skipped; the next ones come in the same lane order.
    assert [b.seq for b in box.take(limit=3, skip={b1, b2, q1})] == [q2, c1, c2]
    assert held(box) == [
        ("bed", 0),
        ("bed", 1),
        ("bed", 2),
        ("queue", 0),
        ("queue", 1),
        ("queue", 2),
        ("crowd", 0),
        ("crowd", 1),
        ("crowd", 2),
    ]
    # A bed batch stored mid-drain jumps ahead of the crowd backlog.
    b3 = box.put(of(BED, 3))
    assert [b.seq for b in box.take(limit=2, skip={b1, b2, q1, q2})] == [b3, c1]
    assert box.stats()["spool_depth_bed"] == 4
    assert box.stats()["spool_depth_queue"] == 3
    assert box.stats()["spool_depth_crowd"] == 3


def test_a_full_spool_drops_the_oldest_crowd_readings_first_then_queue_never_beds_first(
    make_box: OutboxFactory,
) -> None:
    box = make_box(FakeClock(), SpoolLimits(max_readings=6))
    box.put(of(CROWD, 0, 1, 2))
    box.put(of(QUEUE, 0, 1))
    box.put(of(CROWD, 3))
    assert box.depth() == 6
    assert nonzero(box.stats()) == {"spool_high_water": 6}
    box.put(of(BED, 0, 1))  # 8 > 6: the two oldest crowd readings go (part of a batch)
    assert held(box) == [
        ("bed", 0),
        ("bed", 1),
        ("queue", 0),
        ("queue", 1),
        ("crowd", 2),
        ("crowd", 3),
    ]
    box.put(of(BED, 2, 3, 4))  # 9 > 6: the last two crowd, then the oldest queue reading
    assert held(box) == [("bed", n) for n in range(5)] + [("queue", 1)]
    box.put(of(CROWD, 4))  # crowd is now the lowest non-empty lane: the new reading itself
    assert held(box) == [("bed", n) for n in range(5)] + [("queue", 1)]
    box.put(of(BED, 5, 6))  # only beds left to drop after the last queue reading
    assert held(box) == [("bed", n) for n in range(1, 7)]
    assert box.depth() == 6
    assert nonzero(box.stats()) == {
        "spool_high_water": 6,
        "spool_dropped_full_bed": 1,
        "spool_dropped_full_queue": 2,
        "spool_dropped_full_crowd": 5,
        "spool_dropped_full": 8,
        "spool_dropped_bed": 1,
        "spool_dropped_queue": 2,
        "spool_dropped_crowd": 5,
        "spool_dropped_total": 8,
    }


def test_a_refuse_new_spool_keeps_what_it_holds_and_drops_the_new_readings(
    make_box: OutboxFactory,
) -> None:
    box = make_box(FakeClock(), SpoolLimits(max_readings=5, policy=FullPolicy.REFUSE_NEW))
    box.put(of(CROWD, 0, 1, 2))
    box.put(of(BED, 0, 1, 2))  # two fit, the third is refused
    box.put(of(QUEUE, 0))  # nothing fits
    assert held(box) == [("bed", 0), ("bed", 1), ("crowd", 0), ("crowd", 1), ("crowd", 2)]
    (bed_batch, _crowd) = box.take(limit=2)
    box.mark_acked(bed_batch)
    box.put(of(BED, 3, 4, 5))  # room for two again
    assert held(box) == [("bed", 3), ("bed", 4), ("crowd", 0), ("crowd", 1), ("crowd", 2)]
    assert nonzero(box.stats()) == {
        "spool_high_water": 5,
        "spool_dropped_full_bed": 2,
        "spool_dropped_full_queue": 1,
        "spool_dropped_full": 3,
        "spool_dropped_bed": 2,
        "spool_dropped_queue": 1,
        "spool_dropped_total": 3,
    }


def test_batches_older_than_the_age_bound_expire_counted_by_lane(make_box: OutboxFactory) -> None:
    clock = FakeClock()
    box = make_box(clock, SpoolLimits(max_age_ms=60_000))
    box.put(of(CROWD, 0, 1))
    clock.now += 30_000
    box.put(of(BED, 0))
    clock.now += 30_000
    assert box.expire() == 0  # exactly the bound is not older than it
    clock.now += 1
    assert box.expire() == 2
    assert held(box) == [("bed", 0)]
    clock.now += 30_000
    box.put(of(QUEUE, 0))  # a put expires too: the bed batch is now 60.001 s old
    assert held(box) == [("queue", 0)]
    clock.now += 60_001
    assert box.take(limit=10) == []  # and so does take: nothing expired is handed out
    assert box.depth() == 0
    assert box.oldest_age_s() is None
    assert nonzero(box.stats()) == {
        "spool_high_water": 3,
        "spool_dropped_expired_bed": 1,
        "spool_dropped_expired_queue": 1,
        "spool_dropped_expired_crowd": 2,
        "spool_dropped_expired": 4,
        "spool_dropped_bed": 1,
        "spool_dropped_queue": 1,
        "spool_dropped_crowd": 2,
        "spool_dropped_total": 4,
    }


def test_the_high_water_mark_is_the_deepest_the_spool_has_been(make_box: OutboxFactory) -> None:
    box = make_box(FakeClock())
    batches = [box.put(of(BED, 3 * i, 3 * i + 1, 3 * i + 2)) for i in range(4)]
    for pending in box.take(limit=3):
        box.mark_acked(pending)
    assert batches
    box.put(of(CROWD, 0))
    assert box.depth() == 4
    assert box.stats()["spool_high_water"] == 12


@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("put"), st.sampled_from(list(SensorKind)), st.integers(1, 4)),
            st.tuples(st.just("ack"), st.integers(0, 3), st.just(0)),
            st.tuples(st.just("tick"), st.integers(0, 40_000), st.just(0)),
        ),
        max_size=40,
    ),
    max_readings=st.integers(1, 12),
    refuse=st.booleans(),
)
def test_memory_and_sqlite_outboxes_agree_on_any_sequence_of_operations(
    ops: list[tuple[str, object, int]],
    max_readings: int,
    refuse: bool,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    limits = SpoolLimits(
        max_readings=max_readings,
        max_age_ms=60_000,
        policy=FullPolicy.REFUSE_NEW if refuse else FullPolicy.DROP_OLDEST_LOWEST_LANE,
    )
    clock = FakeClock()
    path = tmp_path_factory.mktemp("agree") / "gw.spool"
    memory = MemoryOutbox(clock=clock, limits=limits).open()
    sqlite = SqliteOutbox(path=path, clock=clock, limits=limits).open()
    next_seq = dict.fromkeys(SensorKind, 0)
    try:
        for op, arg, n in ops:
            if op == "put":
                assert isinstance(arg, SensorKind)
                seqs = range(next_seq[arg], next_seq[arg] + n)
                next_seq[arg] += n
                assert memory.put(of(arg, *seqs)) == sqlite.put(of(arg, *seqs))
            elif op == "ack":
                assert isinstance(arg, int)
                taken = memory.take(limit=arg + 1)
                assert sqlite.take(limit=arg + 1) == taken
                if len(taken) > arg:
                    assert memory.mark_acked(taken[arg]) == sqlite.mark_acked(taken[arg])
            else:
                assert isinstance(arg, int)
                clock.now += arg
                assert memory.expire() == sqlite.expire()
            assert held(memory) == held(sqlite)
            assert memory.stats() == sqlite.stats()
            assert memory.depth() == sqlite.depth() <= max_readings
    finally:
        sqlite.close()
