"""The dead-letter store and the crash-loop guard on their own (real files, no services)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from cloud.ingest.cli import app
from cloud.ingest.deadletter import DeadLetterStore, Problem, Refusal, list_segments
from cloud.ingest.decode import Message
from cloud.ingest.guard import PoisonGuard
from contract import RejectReason

T0 = 1_795_000_000_000


def refusal(i: int, size: int = 1000, *, problems: int = 1, at: int | None = None) -> Refusal:
    """A refused message ``i`` of about ``size`` bytes with ``problems`` refused readings."""
    return Refusal(
        topic="pantau/v1/rs-kariadi/gw-kariadi/readings",
        payload=b"%06d" % i + b"x" * size,
        received_at=T0 + (i if at is None else at),
        gateway="gw-kariadi",
        problems=tuple(
            Problem(RejectReason.UNKNOWN_SENSOR, f"sensor {k}", k) for k in range(problems)
        ),
    )


def test_a_refusal_with_2000_problems_stores_its_payload_once(tmp_path: Path) -> None:
    with DeadLetterStore(directory=tmp_path) as store:
        done = store.append([refusal(1, 250_000, problems=2000)])
    assert len(done.written) == 1
    assert len(done.written[0].problems) == 2000
    lines = b"".join(p.read_bytes() for _, p in list_segments(tmp_path)).splitlines()
    assert sum(1 for line in lines if line.startswith(b'{"p":')) == 1
    assert len(lines) == 2001
    assert [r.index for r in store.read()] == list(range(2000))


def test_the_same_payload_and_reason_is_not_stored_twice_even_after_a_reopen(
    tmp_path: Path,
) -> None:
    with DeadLetterStore(directory=tmp_path) as store:
        first = store.append([refusal(1, problems=3), refusal(1, problems=3)])
    with DeadLetterStore(directory=tmp_path) as store:
        again = store.append([refusal(1, problems=3)])
        other = store.append(
            [
                Refusal(
                    topic=refusal(1).topic,
                    payload=refusal(1).payload,
                    received_at=T0 + 5,
                    gateway="gw-kariadi",
                    problems=(Problem(RejectReason.NEGATIVE_COUNT, "n", 0),),
                )
            ]
        )
    # Every refusal is either stored or counted as a duplicate, even a redelivery in one window.
    assert (len(first.written[0].problems), first.duplicates) == (3, 3)
    assert (again.written, again.duplicates) == ([], 3)
    assert len(other.written) == 1  # a new reason for the same payload is news
    assert len(store.read()) == 4


def test_rotation_drops_oldest_segments_and_counts_exactly_what_it_dropped(
    tmp_path: Path,
) -> None:
    """1 MiB store (128 KiB segments); 100 refusals of ~10 KB: whatever is left is the newest
    messages in order, kept + dropped == 100, the disk stays within the bound, and the
    count survives a reopen."""
    max_bytes = 1024 * 1024
    with DeadLetterStore(directory=tmp_path, max_bytes=max_bytes) as store:
        dropped = sum(store.append([refusal(i, 10_000)]).rotated for i in range(100))
        size = store.size_bytes()
    kept = store.read()
    assert dropped == store.rotated().records
    assert len(kept) + dropped == 100
    assert [r.received_at - T0 for r in kept] == list(range(100 - len(kept), 100))
    assert size <= max_bytes
    with DeadLetterStore(directory=tmp_path, max_bytes=max_bytes) as reopened:
        assert reopened.rotated().records == dropped


def test_a_rotation_interrupted_before_the_unlink_is_finished_not_counted_twice(
    tmp_path: Path,
) -> None:
    max_bytes = 1024 * 1024
    with DeadLetterStore(directory=tmp_path, max_bytes=max_bytes) as store:
        for i in range(100):
            store.append([refusal(i, 10_000)])
        rotated = store.rotated()
    # Put back the last dropped segment, as if the crash came between commit and unlink.
    ghost = tmp_path / f"segment-{rotated.through:010d}.jsonl"
    ghost.write_bytes(b"")
    with DeadLetterStore(directory=tmp_path, max_bytes=max_bytes) as store:
        assert store.rotated() == rotated
    assert not ghost.exists()


def test_a_torn_last_line_is_cut_on_open_and_later_appends_stay_readable(tmp_path: Path) -> None:
    with DeadLetterStore(directory=tmp_path) as store:
        store.append([refusal(1)])
    ((_, path),) = list_segments(tmp_path)
    with path.open("ab") as fh:
        fh.write(b'{"r":"00","received_at":')  # power cut mid-append
    with DeadLetterStore(directory=tmp_path) as store:
        store.append([refusal(2)])
    assert [r.received_at - T0 for r in store.read()] == [1, 2]


def test_records_are_listed_oldest_received_first_across_segments(tmp_path: Path) -> None:
    with DeadLetterStore(directory=tmp_path, max_bytes=1024 * 1024) as store:
        for i, at in enumerate([50, 10, 40, 20, 30] * 20):
            store.append([refusal(i, 60_000, at=at * 1000 + i)])
    got = [r.received_at for r in store.read()]
    assert got == sorted(got)
    assert len(list_segments(tmp_path)) > 2


def msg(i: int) -> Message:
    return Message(topic="pantau/v1/s/gw/readings", payload=b"m%d" % i, received_ms=T0)


def test_guard_counts_attempts_durably_and_names_suspects_and_poison(tmp_path: Path) -> None:
    """Attempts that were never finished (the process died) survive a reopen: such a
    message is a suspect, and after max_attempts poison; finished attempts are forgotten."""
    window = [msg(i) for i in range(4)]
    seen: list[tuple[list[int], list[int]]] = []
    for _ in range(3):  # three processes that died with message 0 in flight
        guard = PoisonGuard(path=tmp_path / "g.sqlite", max_attempts=3)
        guard.open()
        plan, fps = guard.plan(window[:1])
        seen.append((plan.fresh, plan.suspects))
        guard.attempt(fps)
        guard._db = None  # died: nothing more is committed
    guard = PoisonGuard(path=tmp_path / "g.sqlite", max_attempts=3)
    guard.open()
    plan, fps = guard.plan(window)
    guard.attempt([fps[1]])
    guard.finished([fps[1]])
    guard.close()
    guard.open()
    again, _ = guard.plan(window)
    guard.close()
    assert seen == [([0], []), ([], [0]), ([], [0])]
    assert (plan.fresh, plan.suspects, plan.poison) == ([1, 2, 3], [], [(0, 3)])
    assert (again.fresh, again.suspects, again.poison) == ([1, 2, 3], [], [(0, 3)])


def test_guard_writes_one_row_per_attempt_and_a_dead_attempt_makes_each_message_a_suspect(
    tmp_path: Path,
) -> None:
    """An attempt of a window of 1 000 messages is one row (its fingerprints), gone once the
    next attempt commits; a process that dies during an attempt of 3 messages leaves all 3
    as suspects with 1 attempt each, and a message sent twice in it with 2."""
    path = tmp_path / "g.sqlite"
    window = [msg(i) for i in range(1000)]
    guard = PoisonGuard(path=path, max_attempts=3)
    guard.open()
    plan, fps = guard.plan(window)
    guard.attempt(fps)
    assert len(plan.fresh) == 1000
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*), sum(length(fps)) FROM windows").fetchone() == (1, 16_000)
    assert db.execute("SELECT count(*) FROM attempts").fetchone() == (0,)
    guard.finished(fps)
    dying = [msg(5000), msg(5001), msg(5002), msg(5001)]
    plan, fps = guard.plan(dying)
    guard.attempt(fps)
    assert db.execute("SELECT count(*), sum(length(fps)) FROM windows").fetchone() == (1, 64)
    guard._db = None  # died: nothing more is committed
    guard = PoisonGuard(path=path, max_attempts=3)
    guard.open()
    plan, _ = guard.plan([*dying[:3], msg(7)])
    assert (plan.fresh, plan.suspects, plan.poison) == ([3], [0, 1, 2], [])
    assert sorted(n for (n,) in db.execute("SELECT count FROM attempts")) == [1, 1, 2]
    assert db.execute("SELECT count(*) FROM windows").fetchone() == (0,)
    guard.close()
    db.close()


def test_dead_letters_cli_filters_by_gateway_and_time_and_lists_oldest_first(
    tmp_path: Path,
) -> None:
    """Two gateways, records stored out of time order: ``--gateway`` and ``--since``/``--until``
    (ISO 8601, UTC; until exclusive) select, and the listing is by received time."""
    with DeadLetterStore(directory=tmp_path) as store:
        for i, (gw, second) in enumerate([("gw-a", 30), ("gw-b", 10), ("gw-a", 20), ("gw-a", 40)]):
            store.append(
                [
                    Refusal(
                        topic=f"pantau/v1/s/{gw}/readings",
                        payload=b"%d" % i,
                        received_at=T0 + second * 1000,
                        gateway=gw,
                        problems=(Problem(RejectReason.INVALID_JSON, f"m{i}"),),
                    )
                ]
            )
    since = datetime.fromtimestamp((T0 + 20_000) / 1000, tz=UTC).replace(tzinfo=None).isoformat()
    until = datetime.fromtimestamp((T0 + 40_000) / 1000, tz=UTC).isoformat()
    result = CliRunner().invoke(
        app,
        [
            "dead-letters",
            "--dir",
            str(tmp_path),
            "--gateway",
            "gw-a",
            "--since",
            since,
            "--until",
            until,
        ],
    )
    assert result.exit_code == 0, result.output
    assert [line.rsplit(": ", 1)[1] for line in result.stdout.splitlines()] == ["m2", "m0"]
    assert result.stderr.startswith("2 dead letter(s) in 2 message(s), oldest first; 0 older")


def test_the_guard_commits_without_fsync_and_the_dead_letter_index_keeps_it(
    tmp_path: Path,
) -> None:
    """The guard's counts only have to outlive the process (docs/adr/0041): its connection is
    WAL with synchronous=NORMAL (1, no fsync per commit); the dead-letter index, whose
    rotation count must survive a power loss, stays at FULL (2)."""
    guard = PoisonGuard(path=tmp_path / "g.sqlite", max_attempts=3)
    guard.open()
    with DeadLetterStore(directory=tmp_path / "dead") as store:
        index = store._index.db
        assert index.execute("PRAGMA synchronous").fetchone() == (2,)
        assert index.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db = guard._require()
    assert db.execute("PRAGMA synchronous").fetchone() == (1,)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    guard.close()
