"""The SQLite spool file: it survives reopens and restarts with its counters, refuses a second
agent, migrates the pre-lane layout, sets a corrupt file aside, and holds its byte cap by the
full policy; plus the spool settings and the reconnect backoff."""

from __future__ import annotations

import collections
import random
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from contract.backoff import backoff_delay
from contract.errors import StorageError
from contract.payload import SensorKind
from edge.config import EdgeSettings, load_settings
from edge.spool import FullPolicy, Outbox, SpoolLimits, SqliteOutbox
from tests.spool_support import T0, FakeClock, held, nonzero, of, reading

BED, QUEUE, CROWD = SensorKind.BED, SensorKind.QUEUE, SensorKind.CROWD


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
