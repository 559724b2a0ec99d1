"""Outbox rules, for the in-memory and the SQLite implementation alike: a reading leaves only
when acknowledged, a batch keeps its seq until then, and seqs only increase."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.backoff import backoff_delay
from contract.payload import ClockSource, Reading, SensorKind
from edge.outbox import MemoryOutbox, Outbox, SqliteOutbox


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


def reading(seq: int, sensor: str = "icu-1") -> Reading:
    return Reading(
        sensor=sensor,
        kind=SensorKind.QUEUE,
        ts=1_700_000_000_000 + seq,
        seq=seq,
        values={"issued": 10 + seq, "served": seq, "counters_open": 2},
        clock=ClockSource.GATEWAY if seq % 2 else ClockSource.SENSOR,
    )


@pytest.fixture(params=["memory", "sqlite"])
def clock_and_outbox(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[FakeClock, Outbox]]:
    clock = FakeClock()
    box: Outbox
    if request.param == "memory":
        box = MemoryOutbox(clock=clock).open()
    else:
        box = SqliteOutbox(path=tmp_path / "spool" / "gw.spool", clock=clock).open()
    yield clock, box
    box.close()


def test_batches_keep_their_seq_until_every_reading_is_acked(
    clock_and_outbox: tuple[FakeClock, Outbox],
) -> None:
    clock, box = clock_and_outbox
    first = box.put([reading(0), reading(1)])
    clock.now += 2500
    second = box.put([reading(2)])
    assert first == 1_700_000_000_000
    assert second == first + 1
    assert box.depth() == 3
    assert box.oldest_age_s() == 2.5
    pending = box.take(after_seq=-1, limit=10)
    assert [(b.seq, b.readings) for b in pending] == [
        (first, (reading(0), reading(1))),
        (second, (reading(2),)),
    ]
    assert box.take(after_seq=first, limit=10)[0].seq == second
    assert box.take(after_seq=-1, limit=1) == pending[:1]
    assert box.mark_acked(pending[0].ids[:1]) == 1
    again = box.take(after_seq=-1, limit=10)
    assert [(b.seq, b.readings) for b in again] == [(first, (reading(1),)), (second, (reading(2),))]
    assert box.mark_acked(pending[0].ids + pending[1].ids) == 2
    assert box.depth() == 0
    assert box.oldest_age_s() is None
    assert box.take(after_seq=-1, limit=10) == []
    assert box.put([reading(3)]) == second + 1


def test_the_sqlite_spool_survives_a_reopen_and_never_reuses_a_seq(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "gw.spool"
    box = SqliteOutbox(path=path, clock=clock).open()
    a = box.put([reading(0), reading(1)])
    b = box.put([reading(2)])
    box.mark_acked(box.take(after_seq=a, limit=1)[0].ids)
    box.close()
    clock.now += 10_000_000  # a later start must continue the stored counter, not the clock
    reopened = SqliteOutbox(path=path, clock=clock).open()
    left = reopened.take(after_seq=-1, limit=10)
    assert [(p.seq, p.readings) for p in left] == [(a, (reading(0), reading(1)))]
    assert reopened.put([reading(3)]) == b + 1
    reopened.close()


@given(
    attempt=st.integers(min_value=0, max_value=200),
    base=st.floats(min_value=0.01, max_value=5),
    cap=st.floats(min_value=0.01, max_value=60),
)
def test_backoff_is_full_jitter_within_the_cap(attempt: int, base: float, cap: float) -> None:
    delay = backoff_delay(attempt, base=base, cap=cap)
    assert 0 <= delay <= min(cap, base * 2 ** min(attempt, 30))


def test_backoff_spreads_gateways_out() -> None:
    random.seed(7)
    delays = {round(backoff_delay(5, base=0.5, cap=30), 6) for _ in range(100)}
    assert len(delays) == 100
