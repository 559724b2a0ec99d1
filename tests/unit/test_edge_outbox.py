"""Outbox rules, for the in-memory and the SQLite implementation alike: a reading leaves only
when acknowledged or as a counted drop, a batch keeps its seq until then, seqs only increase,
bed batches are handed out before queue before crowd, and the bounds drop exactly what the
policy says."""

from __future__ import annotations

import collections
import random
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from contract.backoff import backoff_delay
from contract.errors import StorageError
from contract.payload import ClockSource, Reading, SensorKind
from edge.config import EdgeSettings, load_settings
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

T0 = 1_700_000_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def reading(seq: int, sensor: str = "icu-1") -> Reading:
    return Reading(
        sensor=sensor,
        kind=SensorKind.QUEUE,
        ts=T0 + seq,
        seq=seq,
        values={"issued": 10 + seq, "served": seq, "counters_open": 2},
        clock=ClockSource.GATEWAY if seq % 2 else ClockSource.SENSOR,
    )


_VALUES = {
    SensorKind.BED: {"capacity": 40, "occupied": 10, "suspect": 2, "confirmed": 1, "waiting": 3},
    SensorKind.QUEUE: {"issued": 30, "served": 20, "counters_open": 2},
    SensorKind.CROWD: {"entries": 500, "exits": 400, "occupancy": 100},
}
_SENSOR = {SensorKind.BED: "icu-1", SensorKind.QUEUE: "kiosk-1", SensorKind.CROWD: "gate-a"}


def of(kind: SensorKind, *seqs: int) -> list[Reading]:
    """Readings of the one sensor of ``kind`` with these per-sensor seqs."""
    return [
        Reading(sensor=_SENSOR[kind], kind=kind, ts=T0 + s, seq=s, values=_VALUES[kind])
        for s in seqs
    ]


def held(box: Outbox) -> list[tuple[str, int]]:
    """(kind, seq) of every stored reading, in the order take() hands them out."""
    return [(r.kind.value, r.seq) for b in box.take(limit=10_000) for r in b.readings]


def nonzero(stats: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in stats.items() if v and not k.startswith("spool_depth_")}


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


def test_the_sqlite_spool_survives_a_reopen_and_never_reuses_a_seq(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "gw.spool"
    box = SqliteOutbox(path=path, clock=clock).open()
    a = box.put([reading(0), reading(1)])
    b = box.put([reading(2)])
    box.mark_acked(box.take(limit=1, skip={a})[0])
    box.close()
    clock.now += 10_000_000  # a later start must continue the stored counter, not the clock
    reopened = SqliteOutbox(path=path, clock=clock).open()
    left = reopened.take(limit=10)
    assert [(p.seq, p.readings) for p in left] == [(a, (reading(0), reading(1)))]
    assert reopened.put([reading(3)]) == b + 1
    reopened.close()


def test_drop_counts_and_the_high_water_mark_survive_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "gw.spool"
    limits = SpoolLimits(max_readings=4, max_age_ms=1000)
    box = SqliteOutbox(path=path, clock=clock, limits=limits).open()
    box.put(of(CROWD, 0, 1, 2))
    box.put(of(BED, 0, 1, 2))  # two crowd readings dropped, full
    clock.now += 1001
    box.expire()  # all four expire
    box.put(of(QUEUE, 0))
    before = box.stats()
    box.close()
    again = SqliteOutbox(path=path, clock=clock, limits=limits).open()
    assert again.stats() == before
    assert nonzero(before) == {
        "spool_high_water": 4,
        "spool_dropped_full_crowd": 2,
        "spool_dropped_expired_bed": 3,
        "spool_dropped_expired_crowd": 1,
        "spool_dropped_full": 2,
        "spool_dropped_expired": 4,
        "spool_dropped_bed": 3,
        "spool_dropped_crowd": 3,
        "spool_dropped_total": 6,
    }
    assert again.depth() == 1
    assert held(again) == [("queue", 0)]
    again.close()


def test_a_second_agent_cannot_open_a_spool_in_use(tmp_path: Path) -> None:
    path = tmp_path / "gw.spool"
    first = SqliteOutbox(path=path).open()
    try:
        with pytest.raises(StorageError, match=r"cannot open spool .*database is locked"):
            SqliteOutbox(path=path).open()
    finally:
        first.close()
    SqliteOutbox(path=path).open().close()  # free again once the first one closed


def test_a_spool_written_before_lanes_is_migrated_with_its_batches_and_seqs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gw.spool"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        CREATE TABLE readings (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            batch_seq INTEGER NOT NULL,
            created_ms INTEGER NOT NULL,
            body BLOB NOT NULL
        );
        INSERT INTO meta VALUES ('next_seq', 502);
        """
    )
    rows = [(500, r) for r in of(CROWD, 0, 1)] + [(501, r) for r in of(BED, 7)]
    old.executemany(
        "INSERT INTO readings (batch_seq, created_ms, body) VALUES (?, ?, ?)",
        [(seq, T0, orjson.dumps(r.model_dump(mode="json"))) for seq, r in rows],
    )
    old.commit()
    old.close()
    box = SqliteOutbox(path=path, clock=FakeClock()).open()
    try:
        pending = box.take(limit=10)
        assert [(p.seq, list(p.readings)) for p in pending] == [
            (501, of(BED, 7)),
            (500, of(CROWD, 0, 1)),
        ]
        assert [p.ids for p in pending] == [(3,), (1, 2)]
        assert box.depth() == 3
        assert box.put(of(QUEUE, 0)) == 502
        assert box.take(limit=1, skip={501})[0].ids == (4,)
    finally:
        box.close()


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


def test_spool_settings_become_the_outbox_limits_and_a_bad_policy_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("PANTAU_SPOOL_MAX_READINGS", "PANTAU_SPOOL_MAX_AGE_S", "PANTAU_SPOOL_FULL_POLICY"):
        monkeypatch.delenv(name, raising=False)
    base: dict[str, Any] = {
        "gateway_id": "gw-1",
        "site_id": "rs-1",
        "serial_ports": {"bus0": "/dev/ttyUSB0"},
    }
    assert EdgeSettings(**base).spool_limits == SpoolLimits(
        max_readings=1_000_000,
        max_age_ms=7 * 24 * 3600 * 1000,
        policy=FullPolicy.DROP_OLDEST_LOWEST_LANE,
    )
    monkeypatch.setenv("PANTAU_SPOOL_FULL_POLICY", "refuse_new")
    monkeypatch.setenv("PANTAU_SPOOL_MAX_AGE_S", "1.5")
    assert EdgeSettings(
        **base, spool_max_readings=50, spool_max_bytes=2 << 20
    ).spool_limits == SpoolLimits(
        max_readings=50, max_bytes=2 << 20, max_age_ms=1500, policy=FullPolicy.REFUSE_NEW
    )
    with pytest.raises(ValidationError, match="spool_max_bytes"):
        EdgeSettings(**base, spool_max_bytes=4096)
    monkeypatch.setenv("PANTAU_SPOOL_FULL_POLICY", "drop_newest")
    with pytest.raises(ValidationError, match="spool_full_policy"):
        EdgeSettings(**base)
    monkeypatch.delenv("PANTAU_SPOOL_FULL_POLICY")
    with pytest.raises(ValidationError, match="spool_max_readings"):
        EdgeSettings(**base, spool_max_readings=0)


def test_the_sample_config_sets_the_spool_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PANTAU_MQTT_PASSWORD", "k8#Qz-unique-0f3a9c")
    for name in ("PANTAU_SPOOL_MAX_READINGS", "PANTAU_SPOOL_MAX_AGE_S", "PANTAU_SPOOL_FULL_POLICY"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(Path(__file__).parents[2] / "edge" / "sample-config.yaml")
    assert settings.spool_limits == SpoolLimits(
        max_readings=1_000_000,
        max_age_ms=604_800_000,
        policy=FullPolicy.DROP_OLDEST_LOWEST_LANE,
    )


@pytest.mark.parametrize("damage", ["not_a_database", "zeroed_page"])
def test_a_corrupt_spool_is_moved_aside_and_an_empty_one_started(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    path = tmp_path / "gw.spool"
    if damage == "not_a_database":
        path.write_bytes(b"\x00garbage from a failing card\xff" * 500)
    else:
        box = SqliteOutbox(path=path, clock=clock).open()
        for i in range(50):
            box.put(of(BED, *range(10 * i, 10 * i + 10)))
        box.close()  # the last close checkpoints the WAL into the main file
        raw = bytearray(path.read_bytes())
        raw[4096 : 2 * 4096] = bytes(4096)  # page 2 (a b-tree page) wiped
        path.write_bytes(bytes(raw))
    damaged = path.read_bytes()
    clock.now += 5
    box = SqliteOutbox(path=path, clock=clock).open()
    try:
        assert (tmp_path / f"gw.spool.corrupt-{T0 + 5}").read_bytes() == damaged
        assert box.depth() == 0
        assert nonzero(box.stats()) == {"spool_quarantined": 1}
        box.put(of(BED, 0))
        assert held(box) == [("bed", 0)]
    finally:
        box.close()
    assert "is corrupt" in caplog.text


def kept_and_dropped(box: Outbox) -> tuple[collections.Counter[str], dict[str, int]]:
    kept = collections.Counter(kind for kind, _seq in held(box))
    return kept, nonzero(box.stats())


def test_a_spool_file_at_its_byte_cap_drops_the_oldest_crowd_readings_for_new_beds(
    tmp_path: Path,
) -> None:
    box = SqliteOutbox(
        path=tmp_path / "gw.spool", clock=FakeClock(), limits=SpoolLimits(max_bytes=96 * 1024)
    ).open()
    try:
        crowd_put = 0
        # Crowd readings until the file is full: SQLite says SQLITE_FULL, the policy drops the
        # oldest crowd readings to make room for the new ones.
        while box.stats()["spool_dropped_full_crowd"] == 0:
            box.put(of(CROWD, *range(crowd_put, crowd_put + 50)))
            crowd_put += 50
            assert crowd_put < 10_000, "the byte cap never bit"
        for i in range(5):
            box.put(of(BED, *range(50 * i, 50 * i + 50)))
        kept, stats = kept_and_dropped(box)
        # Not one bed reading lost while there were crowd readings to drop; every crowd reading
        # is either still held or counted as dropped.
        assert kept["bed"] == 250
        assert kept["crowd"] > 0
        assert kept["crowd"] + stats["spool_dropped_full_crowd"] == crowd_put
        assert stats["spool_dropped_total"] == stats["spool_dropped_full_crowd"]
        assert [r.seq for b in box.take(limit=1000) for r in b.readings if r.kind is CROWD] == (
            list(range(crowd_put - kept["crowd"], crowd_put))  # the newest crowd readings stay
        )
        assert (tmp_path / "gw.spool").stat().st_size <= 96 * 1024
    finally:
        box.close()


def test_a_refuse_new_spool_at_its_byte_cap_drops_and_counts_the_new_batch(
    tmp_path: Path,
) -> None:
    limits = SpoolLimits(max_bytes=96 * 1024, policy=FullPolicy.REFUSE_NEW)
    path = tmp_path / "gw.spool"
    box = SqliteOutbox(path=path, clock=FakeClock(), limits=limits).open()
    try:
        put = 0
        while box.stats()["spool_dropped_total"] == 0:
            box.put(of(CROWD, *range(put, put + 50)))
            put += 50
            assert put < 10_000, "the byte cap never bit"
        held_before = box.depth()
        assert held_before == put - 50  # the last batch did not fit and was dropped whole
        box.put(of(BED, *range(50)))
        assert box.depth() == held_before
        assert nonzero(box.stats()) == {
            "spool_high_water": held_before,
            "spool_dropped_full_bed": 50,
            "spool_dropped_full_crowd": 50,
            "spool_dropped_full": 100,
            "spool_dropped_bed": 50,
            "spool_dropped_crowd": 50,
            "spool_dropped_total": 100,
        }
        stats = box.stats()
    finally:
        box.close()
    reopened = SqliteOutbox(path=path, clock=FakeClock(), limits=limits).open()
    try:
        assert reopened.stats() == stats
    finally:
        reopened.close()
