"""The outbox: readings wait here from the serial port until the broker has acknowledged them.

A closed batch is stored as a unit with its batch ``seq``, so a batch re-sent after a
reconnect carries the seq it was first sent with and the ingester can drop the duplicate.
Readings leave the outbox through :meth:`Outbox.mark_acked` (called on the PUBACK), or as a
counted drop when the spool is full or a batch has waited longer than the age bound.

**Lanes.** Every batch holds readings of one kind (the agent splits a batch window with
:func:`split_lanes`), and the batch's lane is its kind's priority: beds first, then queues,
then crowds (:data:`LANES`). :meth:`Outbox.take` hands out pending batches lane by lane, each
lane in seq order, so a backlog drains bed readings first while a sensor's readings (one sensor,
one kind, one lane) keep their order.

**Bounds.** :class:`SpoolLimits` caps the readings held and their age. When a new batch does
not fit, :attr:`FullPolicy.DROP_OLDEST_LOWEST_LANE` drops the oldest readings of the
lowest-priority non-empty lane (crowd, then queue, beds last), and
:attr:`FullPolicy.REFUSE_NEW` keeps what is stored and drops the new readings that do not fit.
Each drop is counted by reason and lane, and those counts and the high-water mark (the greatest
depth ever held) are kept with the spool, so they survive restarts.

Two implementations share the :class:`Outbox` protocol and behave identically:
:class:`MemoryOutbox` (survives broker outages, not a gateway reboot) and
:class:`SqliteOutbox` (a durable spool file; docs/adr/0005-edge-spool.md says why its layout is
one row per batch).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from array import array
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol, Self

from pydantic import TypeAdapter, ValidationError

from contract.errors import StorageError
from contract.payload import Reading, SensorKind

#: Drain order: a lane's index is its priority (0 goes first). A new kind not listed here
#: would go in the last lane, never lost.
LANES: tuple[SensorKind, ...] = (SensorKind.BED, SensorKind.QUEUE, SensorKind.CROWD)
_LANE_OF = {kind: i for i, kind in enumerate(LANES)}
_LOWEST = len(LANES) - 1

_READINGS = TypeAdapter(list[Reading])

log = logging.getLogger(__name__)


def wall_ms() -> int:
    """Now, integer ms since the epoch (UTC)."""
    return time.time_ns() // 1_000_000


def lane_of(kind: SensorKind) -> int:
    """The lane (0 = drained first) of readings of ``kind``."""
    return _LANE_OF.get(kind, _LOWEST)


def split_lanes(readings: Sequence[Reading]) -> list[list[Reading]]:
    """``readings`` as one list per lane, most urgent lane first, empty lanes left out; the
    order of readings within a lane is their order in ``readings``."""
    lanes: list[list[Reading]] = [[] for _ in LANES]
    for reading in readings:
        lanes[lane_of(reading.kind)].append(reading)
    return [lane for lane in lanes if lane]


class FullPolicy(StrEnum):
    """What a full spool does with a new batch."""

    #: Store the new readings, then drop the oldest readings of the lowest-priority non-empty
    #: lane (crowd, then queue, beds last) until the spool fits again.
    DROP_OLDEST_LOWEST_LANE = "drop_oldest_lowest_lane"
    #: Keep what is stored; store the new batch's first readings that fit, drop the rest.
    REFUSE_NEW = "refuse_new"


class DropReason(StrEnum):
    """Why readings left the spool without a PUBACK."""

    FULL = "full"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class SpoolLimits:
    """The spool's bounds; ``None`` means unbounded (tests, benchmarks)."""

    max_readings: int | None = None
    #: Cap on the spool file (SQLite ``max_page_count``; the WAL adds up to about 4 MB). A
    #: write that finds the file - or the disk - full gets the same policy as a spool over
    #: ``max_readings``. Only :class:`SqliteOutbox` has a file; the memory outbox ignores it.
    max_bytes: int | None = None
    #: A batch older than this (since it was stored) is dropped as expired.
    max_age_ms: int | None = None
    policy: FullPolicy = FullPolicy.DROP_OLDEST_LOWEST_LANE


@dataclass(frozen=True, slots=True)
class PendingBatch:
    """A closed batch waiting for its PUBACK: its seq, the ids of its readings, the readings."""

    seq: int
    ids: tuple[int, ...]
    readings: tuple[Reading, ...]
    created_ms: int


class Outbox(Protocol):
    """Where closed batches wait until acknowledged. Not thread-safe by contract: the agent
    changes it from its publisher loop only (the getters may be called from anywhere)."""

    def put(self, readings: Sequence[Reading]) -> int:
        """Store ``readings`` as one closed batch, applying the bounds; return its batch seq."""
        ...

    def take(self, *, limit: int, skip: Collection[int] = ()) -> list[PendingBatch]:
        """Up to ``limit`` pending batches whose seq is not in ``skip``: lane by lane (beds
        first), each lane in seq order."""
        ...

    def mark_acked(self, batch: PendingBatch) -> int:
        """Remove the readings of ``batch`` (as it was taken) that are still stored: the
        broker has them. Returns how many went."""
        ...

    def expire(self) -> int:
        """Drop (and count) batches older than the age bound; return how many readings went."""
        ...

    def depth(self) -> int:
        """Readings still waiting for a PUBACK."""
        ...

    def oldest_age_s(self) -> float | None:
        """Age in seconds of the oldest waiting reading's batch, None when empty."""
        ...

    def stats(self) -> dict[str, int]:
        """Depth per lane, drops by reason and lane (with totals) and the high-water mark, as
        status stats named ``spool_*``."""
        ...

    def close(self) -> None:
        """Release files/handles."""
        ...


@dataclass(slots=True)
class _Tally:
    """Counters both outboxes keep. The SQLite spool changes a copy inside a transaction and
    keeps it only once the transaction commits, so memory never runs ahead of the file."""

    next_seq: int = 0
    next_id: int = 0
    high_water: int = 0
    #: 1 when this spool file replaced a corrupt one (moved aside at open).
    quarantined: int = 0
    lane_depth: list[int] = field(default_factory=lambda: [0] * len(LANES))
    dropped: dict[tuple[DropReason, int], int] = field(default_factory=dict)

    def copy(self) -> _Tally:
        return _Tally(
            self.next_seq,
            self.next_id,
            self.high_water,
            self.quarantined,
            list(self.lane_depth),
            dict(self.dropped),
        )

    @property
    def depth(self) -> int:
        return sum(self.lane_depth)

    def drop(self, reason: DropReason, lane: int, n: int) -> None:
        if n > 0:
            self.dropped[reason, lane] = self.dropped.get((reason, lane), 0) + n
            self.lane_depth[lane] -= n

    def note_depth(self) -> None:
        self.high_water = max(self.high_water, self.depth)

    def admit(self, limits: SpoolLimits, lane: int, n: int) -> tuple[int, int]:
        """Count ``n`` new readings of ``lane`` in (ids are used even for readings a
        REFUSE_NEW spool drops); returns how many are kept and the first id."""
        keep = _fits(limits, self, n)
        self.lane_depth[lane] += n
        self.drop(DropReason.FULL, lane, n - keep)
        first = self.next_id
        self.next_id += n
        return keep, first

    def persisted(self) -> dict[str, int]:
        """The counters stored with a durable spool, by meta key."""
        out = {"next_seq": self.next_seq, "next_id": self.next_id, "high_water": self.high_water}
        for reason in DropReason:
            for lane, kind in enumerate(LANES):
                out[f"dropped_{reason.value}_{kind.value}"] = self.dropped.get((reason, lane), 0)
        return out

    def load(self, meta: dict[str, int]) -> None:
        self.next_seq = meta.get("next_seq", self.next_seq)
        self.next_id = meta.get("next_id", self.next_id)
        self.high_water = meta.get("high_water", 0)
        self.quarantined = meta.get("quarantined", 0)
        for reason in DropReason:
            for lane, kind in enumerate(LANES):
                n = meta.get(f"dropped_{reason.value}_{kind.value}", 0)
                if n:
                    self.dropped[reason, lane] = n

    def stats(self) -> dict[str, int]:
        out = {"spool_high_water": self.high_water, "spool_quarantined": self.quarantined}
        for lane, kind in enumerate(LANES):
            out[f"spool_depth_{kind.value}"] = self.lane_depth[lane]
        total = 0
        for reason in DropReason:
            by_reason = 0
            for lane, kind in enumerate(LANES):
                n = self.dropped.get((reason, lane), 0)
                out[f"spool_dropped_{reason.value}_{kind.value}"] = n
                by_reason += n
            out[f"spool_dropped_{reason.value}"] = by_reason
            total += by_reason
        for lane, kind in enumerate(LANES):
            out[f"spool_dropped_{kind.value}"] = sum(
                self.dropped.get((reason, lane), 0) for reason in DropReason
            )
        out["spool_dropped_total"] = total
        return out


def _batch_lane(readings: Sequence[Reading]) -> int:
    # A batch mixing kinds (only if a caller skips split_lanes) goes in its most urgent lane.
    return min(lane_of(r.kind) for r in readings)


def _fits(limits: SpoolLimits, tally: _Tally, n: int) -> int:
    """How many of ``n`` new readings a REFUSE_NEW spool takes."""
    if limits.max_readings is None or limits.policy is not FullPolicy.REFUSE_NEW:
        return n
    return max(0, min(n, limits.max_readings - tally.depth))


def _overflow(limits: SpoolLimits, tally: _Tally) -> int:
    return 0 if limits.max_readings is None else max(0, tally.depth - limits.max_readings)


def _lowest_nonempty_lane(tally: _Tally) -> int:
    for lane in range(_LOWEST, -1, -1):
        if tally.lane_depth[lane] > 0:
            return lane
    raise StorageError("spool counters say it is over its bound but empty", retryable=False)


class MemoryOutbox:
    """An in-process outbox. Batch seqs start at the wall clock in ms at :meth:`open`, so they
    keep increasing across agent restarts without storing a counter."""

    def __init__(
        self, *, clock: Callable[[], int] = wall_ms, limits: SpoolLimits | None = None
    ) -> None:
        self._clock = clock
        self._limits = limits or SpoolLimits()
        # One dict per lane, seq -> batch; dicts keep insertion order and seqs are inserted
        # increasing, so each is in seq order.
        self._lanes: list[dict[int, PendingBatch]] = [{} for _ in LANES]
        self._lane_of_seq: dict[int, int] = {}
        self._tally = _Tally()
        self._opened = False

    def open(self) -> Self:
        """Start the sequence; returns self."""
        self._tally.next_seq = self._clock()
        self._opened = True
        return self

    def put(self, readings: Sequence[Reading]) -> int:
        """Store a closed batch within the bounds; return its seq."""
        t = self._tally
        now = self._clock()
        if not self._opened:
            self.open()
        seq = t.next_seq
        t.next_seq += 1
        self._expire(now)
        if not readings:
            return seq
        lane = _batch_lane(readings)
        keep, first = t.admit(self._limits, lane, len(readings))
        ids = tuple(range(first, first + keep))
        if keep:
            self._lanes[lane][seq] = PendingBatch(seq, ids, tuple(readings[:keep]), now)
            self._lane_of_seq[seq] = lane
        self._shed(_overflow(self._limits, t))
        t.note_depth()
        return seq

    def _remove(self, seq: int) -> PendingBatch:
        lane = self._lane_of_seq.pop(seq)
        return self._lanes[lane].pop(seq)

    def _shed(self, over: int) -> None:
        while over > 0:
            lane = _lowest_nonempty_lane(self._tally)
            oldest = next(iter(self._lanes[lane].values()))
            n = min(over, len(oldest.ids))
            if n == len(oldest.ids):
                self._remove(oldest.seq)
            else:
                self._lanes[lane][oldest.seq] = PendingBatch(
                    oldest.seq, oldest.ids[n:], oldest.readings[n:], oldest.created_ms
                )
            self._tally.drop(DropReason.FULL, lane, n)
            over -= n

    def _expire(self, now: int) -> int:
        if self._limits.max_age_ms is None:
            return 0
        cutoff = now - self._limits.max_age_ms
        gone = 0
        for lane, batches in enumerate(self._lanes):
            for batch in [b for b in batches.values() if b.created_ms < cutoff]:
                self._remove(batch.seq)
                self._tally.drop(DropReason.EXPIRED, lane, len(batch.ids))
                gone += len(batch.ids)
        return gone

    def expire(self) -> int:
        """Drop batches older than the age bound."""
        return self._expire(self._clock())

    def take(self, *, limit: int, skip: Collection[int] = ()) -> list[PendingBatch]:
        """Pending batches not in ``skip``, beds first, each lane in seq order."""
        self._expire(self._clock())
        out: list[PendingBatch] = []
        for batches in self._lanes:
            for seq, batch in batches.items():
                if len(out) >= limit:
                    return out
                if seq not in skip:
                    out.append(batch)
        return out

    def mark_acked(self, batch: PendingBatch) -> int:
        """Drop acknowledged readings; the batch goes when its last reading goes."""
        lane = self._lane_of_seq.get(batch.seq)
        if lane is None:
            return 0
        stored = self._lanes[lane][batch.seq]
        sent = set(batch.ids)
        keep = [i for i, rid in enumerate(stored.ids) if rid not in sent]
        removed = len(stored.ids) - len(keep)
        if not keep:
            self._remove(batch.seq)
        elif removed:  # a partly acked batch is re-sent with only what is still missing
            self._lanes[lane][batch.seq] = PendingBatch(
                batch.seq,
                tuple(stored.ids[i] for i in keep),
                tuple(stored.readings[i] for i in keep),
                stored.created_ms,
            )
        self._tally.lane_depth[lane] -= removed
        return removed

    def depth(self) -> int:
        """Readings waiting for a PUBACK."""
        return self._tally.depth

    def oldest_age_s(self) -> float | None:
        """Age of the oldest waiting batch."""
        created = [b.created_ms for batches in self._lanes for b in batches.values()]
        return None if not created else max(0.0, (self._clock() - min(created)) / 1000)

    def stats(self) -> dict[str, int]:
        """Spool counters as status stats."""
        return self._tally.stats()

    def close(self) -> None:
        """Nothing to release."""


#: Bumped when the file layout changes; :meth:`SqliteOutbox.open` migrates older spools.
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    lane INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    n INTEGER NOT NULL,
    ids BLOB NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_lane ON batches (lane, seq);
CREATE INDEX IF NOT EXISTS batches_created ON batches (created_ms);
"""

#: How many times a put that finds the file full frees room by the policy and tries again.
_FREE_ROUNDS = 8

#: How long open() waits for another process's lock on the spool (a second agent holds it for
#: good; a killed one's lock is released by the kernel at once).
_BUSY_TIMEOUT_S = 1.0

_UPSERT_META = (
    "INSERT INTO meta (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


class _DiskFullError(StorageError):
    """SQLite could not grow the spool: ``max_bytes`` reached or the disk is full."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, retryable=True)


class _CorruptSpoolError(StorageError):
    """SQLite says the spool file is damaged or not a database."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, retryable=False)


def _check_integrity(db: sqlite3.Connection) -> None:
    # About 0.1 s for a million spooled readings: cheap next to a gateway that crashes on a
    # damaged page at every start.
    (check,) = db.execute("PRAGMA quick_check(1)").fetchone()
    if check != "ok":
        raise _CorruptSpoolError(f"quick_check: {check}")


def _pack_ids(ids: Sequence[int]) -> bytes:
    return array("q", ids).tobytes()


def _unpack_ids(blob: bytes) -> tuple[int, ...]:
    ids = array("q")
    ids.frombytes(blob)
    return tuple(ids)


class SqliteOutbox:
    """A durable spool in one SQLite file, one row per batch (its readings as one JSON array).

    WAL with synchronous=NORMAL: a committed batch survives a process kill, and a power cut
    loses at most the last commits since a checkpoint, never the file's integrity; the sensors'
    own sequence numbers reveal such a gap. The file is opened in exclusive locking mode, so a
    second agent on the same spool fails at start instead of sending every batch twice."""

    def __init__(
        self,
        *,
        path: Path,
        clock: Callable[[], int] = wall_ms,
        limits: SpoolLimits | None = None,
    ) -> None:
        self._path = path
        self._clock = clock
        self._limits = limits or SpoolLimits()
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._tally = _Tally()
        # Counters changed while the disk was too full to store them; the next write stores
        # them all.
        self._unsaved = False

    def open(self) -> Self:
        """Open (creating or migrating if needed) the spool file; returns self.

        A file SQLite finds corrupt (a failing SD card, a foreign file) is moved aside as
        ``<name>.corrupt-<ms>`` and an empty spool started, logged as an error and reported as
        ``spool_quarantined`` = 1: an unattended gateway keeps sending new readings instead of
        failing at every start."""
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot open spool {self._path}: {exc}", retryable=False) from exc
        corrupt: str | None = None
        try:
            db, tally = self._prepare(quarantined=0)
        except _CorruptSpoolError as exc:
            corrupt = str(exc)
        if corrupt is not None:
            moved = self._quarantine()
            log.error(
                "spool %s is corrupt (%s); moved to %s, starting empty", self._path, corrupt, moved
            )
            db, tally = self._prepare(quarantined=1)
        self._db = db
        self._tally = tally
        return self

    def _prepare(self, *, quarantined: int) -> tuple[sqlite3.Connection, _Tally]:
        try:
            db = sqlite3.connect(
                self._path,
                check_same_thread=False,
                isolation_level=None,
                timeout=_BUSY_TIMEOUT_S,
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open spool {self._path}: {exc}", retryable=False) from exc
        try:
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            _check_integrity(db)
            if self._limits.max_bytes is not None:
                (page_size,) = db.execute("PRAGMA page_size").fetchone()
                pages = max(1, self._limits.max_bytes // page_size)
                db.execute(f"PRAGMA max_page_count = {pages}")
            db.execute("BEGIN IMMEDIATE")
            # executescript() would commit the transaction; the statements run inside it.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            # A fresh spool starts its seqs at the wall clock so that a replaced spool file
            # does not restart at 0 behind seqs the ingester has already seen.
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', ?)", (self._clock(),)
            )
            if quarantined:
                db.execute(_UPSERT_META, ("quarantined", quarantined))
            self._migrate_v1(db)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
            tally = _Tally()
            tally.load(dict(db.execute("SELECT key, value FROM meta").fetchall()))
            for lane, n in db.execute("SELECT lane, SUM(n) FROM batches GROUP BY lane"):
                tally.lane_depth[min(lane, _LOWEST)] += n
        except _CorruptSpoolError:
            db.close()
            raise
        except (sqlite3.Error, ValidationError) as exc:
            db.close()
            corrupt = isinstance(exc, ValidationError) or (
                isinstance(exc, sqlite3.DatabaseError)
                and not isinstance(exc, sqlite3.OperationalError)
                and exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
            )
            if corrupt:
                raise _CorruptSpoolError(str(exc)) from exc
            raise StorageError(f"cannot open spool {self._path}: {exc}", retryable=False) from exc
        return db, tally

    def _quarantine(self) -> Path:
        """Move the spool file and its WAL/SHM companions aside; returns the new name."""
        moved = self._path.with_name(f"{self._path.name}.corrupt-{self._clock()}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self._path}{suffix}")
            if src.exists():
                try:
                    src.replace(Path(f"{moved}{suffix}"))
                except OSError as exc:
                    raise StorageError(
                        f"spool {self._path} is corrupt and cannot be moved aside: {exc}",
                        retryable=False,
                    ) from exc
        return moved

    def _migrate_v1(self, db: sqlite3.Connection) -> None:
        """Spools written before lanes (one row per reading) become one row per batch."""
        if not db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'readings'"
        ).fetchone():
            return
        groups: dict[int, list[tuple[int, int, bytes]]] = {}
        for rid, seq, created, body in db.execute(
            "SELECT id, batch_seq, created_ms, body FROM readings ORDER BY batch_seq, id"
        ):
            groups.setdefault(seq, []).append((rid, created, body))
        top = 0
        for seq, rows in groups.items():
            readings = _READINGS.validate_json(b"[" + b",".join(r[2] for r in rows) + b"]")
            db.execute(
                "INSERT INTO batches (seq, lane, created_ms, n, ids, body) VALUES (?,?,?,?,?,?)",
                (
                    seq,
                    _batch_lane(readings),
                    rows[0][1],
                    len(rows),
                    _pack_ids([r[0] for r in rows]),
                    _READINGS.dump_json(readings, exclude_none=True),
                ),
            )
            top = max(top, rows[-1][0] + 1)
        (max_id,) = db.execute("SELECT COALESCE(MAX(id), -1) FROM readings").fetchone()
        db.execute(_UPSERT_META, ("next_id", max(top, max_id + 1)))
        db.execute("DROP TABLE readings")

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StorageError(f"spool {self._path} is not open", retryable=False)
        return self._db

    def _write(self, change: Callable[[sqlite3.Connection, _Tally], int]) -> int:
        """Run ``change`` on a copy of the counters in one transaction, store the counters that
        changed with it, and keep the copy only once it has committed."""
        db = self._conn()
        with self._lock:
            before = self._tally
            tally = before.copy()
            try:
                db.execute("BEGIN IMMEDIATE")
                result = change(db, tally)
                old = {} if self._unsaved else before.persisted()
                changed = [(k, v) for k, v in tally.persisted().items() if old.get(k) != v]
                if changed:
                    db.executemany(_UPSERT_META, changed)
                db.execute("COMMIT")
            except (sqlite3.Error, ValidationError) as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if (
                    isinstance(exc, sqlite3.Error)
                    and getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL
                ):
                    raise _DiskFullError(f"spool {self._path} is full: {exc}") from exc
                raise StorageError(f"spool write failed: {exc}", retryable=True) from exc
            self._tally = tally
            self._unsaved = False
            return result

    def put(self, readings: Sequence[Reading]) -> int:
        """Store a closed batch in one transaction, within the bounds; return its seq."""
        now = self._clock()

        def change(db: sqlite3.Connection, t: _Tally) -> int:
            seq = t.next_seq
            t.next_seq += 1
            self._expire_in(db, t, now)
            if not readings:
                return seq
            lane = _batch_lane(readings)
            keep, first = t.admit(self._limits, lane, len(readings))
            if keep:
                db.execute(
                    "INSERT INTO batches (seq, lane, created_ms, n, ids, body) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        seq,
                        lane,
                        now,
                        keep,
                        _pack_ids(range(first, first + keep)),
                        _READINGS.dump_json(list(readings[:keep]), exclude_none=True),
                    ),
                )
            self._shed_in(db, t, _overflow(self._limits, t))
            t.note_depth()
            return seq

        for _round in range(_FREE_ROUNDS):
            try:
                return self._write(change)
            except _DiskFullError:
                if not self._make_room(len(readings)):
                    break
        log.warning("spool %s full: %d new reading(s) dropped", self._path, len(readings))
        return self._refuse(readings)

    def _make_room(self, n: int) -> bool:
        """Under DROP_OLDEST_LOWEST_LANE, drop up to ``n`` readings by the policy so that a new
        batch of ``n`` can reuse their pages; False if the policy or the spool has nothing to
        give."""
        n = min(n, self._tally.depth)
        if self._limits.policy is not FullPolicy.DROP_OLDEST_LOWEST_LANE or n == 0:
            return False

        def shed(db: sqlite3.Connection, t: _Tally) -> int:
            self._shed_in(db, t, n)
            return n

        try:
            self._write(shed)
        except _DiskFullError:
            return False
        return True

    def _refuse(self, readings: Sequence[Reading]) -> int:
        """Count a batch that could not be stored at all as dropped (full); return its seq."""

        def count(_db: sqlite3.Connection | None, t: _Tally) -> int:
            seq = t.next_seq
            t.next_seq += 1
            if readings:
                lane = _batch_lane(readings)
                t.lane_depth[lane] += len(readings)
                t.drop(DropReason.FULL, lane, len(readings))
                t.next_id += len(readings)
            return seq

        try:
            return self._write(count)
        except _DiskFullError:
            # Not even the counters fit: keep them in memory until a write succeeds.
            with self._lock:
                tally = self._tally.copy()
                seq = count(None, tally)
                self._tally = tally
                self._unsaved = True
            return seq

    def _shed_in(self, db: sqlite3.Connection, t: _Tally, over: int) -> None:
        while over > 0:
            lane = _lowest_nonempty_lane(t)
            seq, n = db.execute(
                "SELECT seq, n FROM batches WHERE lane = ? ORDER BY seq LIMIT 1", (lane,)
            ).fetchone()
            cut = min(over, n)
            if cut == n:
                db.execute("DELETE FROM batches WHERE seq = ?", (seq,))
            else:
                ids, body = db.execute(
                    "SELECT ids, body FROM batches WHERE seq = ?", (seq,)
                ).fetchone()
                left = _READINGS.validate_json(body)[cut:]
                db.execute(
                    "UPDATE batches SET n = ?, ids = ?, body = ? WHERE seq = ?",
                    (
                        n - cut,
                        _pack_ids(_unpack_ids(ids)[cut:]),
                        _READINGS.dump_json(left, exclude_none=True),
                        seq,
                    ),
                )
            t.drop(DropReason.FULL, lane, cut)
            over -= cut

    def _expire_in(self, db: sqlite3.Connection, t: _Tally, now: int) -> int:
        if self._limits.max_age_ms is None:
            return 0
        cutoff = now - self._limits.max_age_ms
        old = db.execute(
            "SELECT seq, lane, n FROM batches WHERE created_ms < ?", (cutoff,)
        ).fetchall()
        for seq, lane, n in old:
            db.execute("DELETE FROM batches WHERE seq = ?", (seq,))
            t.drop(DropReason.EXPIRED, min(lane, _LOWEST), n)
        return sum(n for _s, _l, n in old)

    def _has_expired(self, now: int) -> bool:
        if self._limits.max_age_ms is None:
            return False
        with self._lock:
            row = self._conn().execute("SELECT MIN(created_ms) FROM batches").fetchone()
        return row[0] is not None and row[0] < now - self._limits.max_age_ms

    def expire(self) -> int:
        """Drop batches older than the age bound (a write only when there are some)."""
        now = self._clock()
        if not self._has_expired(now):
            return 0
        return self._write(lambda db, t: self._expire_in(db, t, now))

    def take(self, *, limit: int, skip: Collection[int] = ()) -> list[PendingBatch]:
        """Pending batches not in ``skip``, beds first, each lane in seq order."""
        self.expire()
        db = self._conn()
        with self._lock:
            try:
                # The (lane, seq) index holds the order; skipped (in-flight) batches are at
                # most a window's worth, so over-fetching seqs by that many is cheap.
                seqs = [
                    s
                    for (s,) in db.execute(
                        "SELECT seq FROM batches ORDER BY lane, seq LIMIT ?", (limit + len(skip),)
                    )
                    if s not in skip
                ][:limit]
                out: list[PendingBatch] = []
                for seq in seqs:
                    created, ids, body = db.execute(
                        "SELECT created_ms, ids, body FROM batches WHERE seq = ?", (seq,)
                    ).fetchone()
                    out.append(
                        PendingBatch(
                            seq=seq,
                            ids=_unpack_ids(ids),
                            readings=tuple(_READINGS.validate_json(body)),
                            created_ms=created,
                        )
                    )
            except (sqlite3.Error, ValidationError) as exc:
                raise StorageError(f"spool read failed: {exc}", retryable=True) from exc
        return out

    def mark_acked(self, batch: PendingBatch) -> int:
        """Delete the acknowledged readings (the whole row, unless some were never sent)."""

        def change(db: sqlite3.Connection, t: _Tally) -> int:
            row = db.execute("SELECT lane, ids FROM batches WHERE seq = ?", (batch.seq,)).fetchone()
            if row is None:
                return 0
            lane, ids_blob = row
            stored = _unpack_ids(ids_blob)
            sent = set(batch.ids)
            keep = [i for i, rid in enumerate(stored) if rid not in sent]
            if not keep:
                db.execute("DELETE FROM batches WHERE seq = ?", (batch.seq,))
            elif len(keep) < len(stored):
                (body,) = db.execute(
                    "SELECT body FROM batches WHERE seq = ?", (batch.seq,)
                ).fetchone()
                readings = _READINGS.validate_json(body)
                db.execute(
                    "UPDATE batches SET n = ?, ids = ?, body = ? WHERE seq = ?",
                    (
                        len(keep),
                        _pack_ids([stored[i] for i in keep]),
                        _READINGS.dump_json([readings[i] for i in keep], exclude_none=True),
                        batch.seq,
                    ),
                )
            removed = len(stored) - len(keep)
            t.lane_depth[min(lane, _LOWEST)] -= removed
            return removed

        return self._write(change)

    def depth(self) -> int:
        """Readings waiting for a PUBACK."""
        return self._tally.depth

    def oldest_age_s(self) -> float | None:
        """Age of the oldest waiting reading."""
        with self._lock:
            (oldest,) = self._conn().execute("SELECT MIN(created_ms) FROM batches").fetchone()
        return None if oldest is None else max(0.0, (self._clock() - oldest) / 1000)

    def stats(self) -> dict[str, int]:
        """Spool counters as status stats."""
        return self._tally.stats()

    def close(self) -> None:
        """Close the spool file."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
