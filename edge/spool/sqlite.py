"""The durable spool: one SQLite file, one row per batch (its readings as one JSON array)."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Self, TypeVar

from contract.clock import now_ms
from contract.errors import StorageError
from edge.reading import encode_readings
from edge.spool.batch import PendingBatch, keep_items
from edge.spool.policy import LOWEST, DropReason, FullPolicy, Kinded, SpoolLimits, batch_lane
from edge.spool.sqlite_file import (
    UPSERT_META,
    CorruptSpoolError,
    DiskFullError,
    open_db,
    pack_ids,
    quarantine,
    unpack_ids,
)
from edge.spool.tally import Tally

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: How many times a put that finds the file full frees room by the policy and tries again.
_FREE_ROUNDS = 8


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
        clock: Callable[[], int] = now_ms,
        limits: SpoolLimits | None = None,
    ) -> None:
        self._path = path
        self._clock = clock
        self._limits = limits or SpoolLimits()
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._tally = Tally()
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
        corrupt = ""
        try:
            db, tally = open_db(self._path, clock=self._clock, limits=self._limits, quarantined=0)
        except CorruptSpoolError as exc:
            corrupt = str(exc)
        if corrupt:
            moved = quarantine(self._path, self._clock())
            log.error(
                "spool %s is corrupt (%s); moved to %s, starting empty", self._path, corrupt, moved
            )
            db, tally = open_db(self._path, clock=self._clock, limits=self._limits, quarantined=1)
        self._db = db
        self._tally = tally
        return self

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StorageError(f"spool {self._path} is not open", retryable=False)
        return self._db

    def _write(self, change: Callable[[sqlite3.Connection, Tally], _T]) -> _T:
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
                    db.executemany(UPSERT_META, changed)
                db.execute("COMMIT")
            except (sqlite3.Error, ValueError) as exc:
                # ValueError: a stored body that does not parse as JSON while cutting a batch.
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if (
                    isinstance(exc, sqlite3.Error)
                    and getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL
                ):
                    raise DiskFullError(f"spool {self._path} is full: {exc}") from exc
                raise StorageError(f"spool write failed: {exc}", retryable=True) from exc
            self._tally = tally
            self._unsaved = False
            return result

    def put(self, readings: Sequence[Kinded]) -> int:
        """Store a closed batch in one transaction, within the bounds; return its seq."""
        return self._put_with_room(readings)

    def settle(
        self, *, acked: Sequence[PendingBatch], batches: Sequence[Sequence[Kinded]]
    ) -> list[int]:
        """Remove the acknowledged readings of ``acked``, then store ``batches`` in order, in
        one transaction (ADR 0036); returns the new batches' seqs.

        When that transaction finds the file full, the acks are written on their own (they
        free room) and each batch is put as :meth:`put` always has: shedding by the policy
        and trying again, or counting it dropped."""
        now = self._clock()

        def change(db: sqlite3.Connection, t: Tally) -> list[int]:
            for batch in acked:
                self._ack_in(db, t, batch)
            return [self._put_in(db, t, readings, now) for readings in batches]

        try:
            return self._write(change)
        except DiskFullError:
            if acked:
                self._write(lambda db, t: [self._ack_in(db, t, batch) for batch in acked])
        return [self._put_with_room(readings) for readings in batches]

    def _put_in(
        self, db: sqlite3.Connection, t: Tally, readings: Sequence[Kinded], now: int
    ) -> int:
        seq = t.next_seq
        t.next_seq += 1
        self._expire_in(db, t, now)
        if not readings:
            return seq
        lane = batch_lane(readings)
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
                    pack_ids(range(first, first + keep)),
                    encode_readings(readings[:keep]),
                ),
            )
        self._shed_in(db, t, self._limits.overflow(t.depth))
        t.note_depth()
        return seq

    def _put_with_room(self, readings: Sequence[Kinded]) -> int:
        """:meth:`_put_in` alone, freeing room by the policy while the file is full."""
        now = self._clock()
        for _round in range(_FREE_ROUNDS):
            try:
                return self._write(lambda db, t: self._put_in(db, t, readings, now))
            except DiskFullError:
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

        def shed(db: sqlite3.Connection, t: Tally) -> int:
            self._shed_in(db, t, n)
            return n

        try:
            self._write(shed)
        except DiskFullError:
            return False
        return True

    def _refuse(self, readings: Sequence[Kinded]) -> int:
        """Count a batch that could not be stored at all as dropped (full); return its seq."""

        def count(_db: sqlite3.Connection | None, t: Tally) -> int:
            seq = t.next_seq
            t.next_seq += 1
            if readings:
                lane = batch_lane(readings)
                t.lane_depth[lane] += len(readings)
                t.drop(DropReason.FULL, lane, len(readings))
                t.next_id += len(readings)
            return seq

        try:
            return self._write(count)
        except DiskFullError:
            # Not even the counters fit: keep them in memory until a write succeeds.
            with self._lock:
                tally = self._tally.copy()
                seq = count(None, tally)
                self._tally = tally
                self._unsaved = True
            return seq

    def _shed_in(self, db: sqlite3.Connection, t: Tally, over: int) -> None:
        while over > 0:
            lane = t.lowest_nonempty_lane()
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
                db.execute(
                    "UPDATE batches SET n = ?, ids = ?, body = ? WHERE seq = ?",
                    (
                        n - cut,
                        pack_ids(unpack_ids(ids)[cut:]),
                        keep_items(body, range(cut, n)),
                        seq,
                    ),
                )
            t.drop(DropReason.FULL, lane, cut)
            over -= cut

    def _expire_in(self, db: sqlite3.Connection, t: Tally, now: int) -> int:
        if self._limits.max_age_ms is None:
            return 0
        cutoff = now - self._limits.max_age_ms
        old = db.execute(
            "SELECT seq, lane, n FROM batches WHERE created_ms < ?", (cutoff,)
        ).fetchall()
        for seq, lane, n in old:
            db.execute("DELETE FROM batches WHERE seq = ?", (seq,))
            t.drop(DropReason.EXPIRED, min(lane, LOWEST), n)
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
                # most a window's worth, so over-fetching by that many is cheap.
                rows = db.execute(
                    "SELECT seq, created_ms, ids, body FROM batches ORDER BY lane, seq LIMIT ?",
                    (limit + len(skip),),
                ).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"spool read failed: {exc}", retryable=True) from exc
        out = [
            PendingBatch(seq, unpack_ids(ids), body, created)
            for seq, created, ids, body in rows
            if seq not in skip
        ]
        return out[:limit]

    def mark_acked(self, batch: PendingBatch) -> int:
        """Delete the acknowledged readings (the whole row, unless some were never sent)."""
        return self._write(lambda db, t: self._ack_in(db, t, batch))

    def _ack_in(self, db: sqlite3.Connection, t: Tally, batch: PendingBatch) -> int:
        row = db.execute("SELECT lane, ids FROM batches WHERE seq = ?", (batch.seq,)).fetchone()
        if row is None:
            return 0
        lane, ids_blob = row
        stored = unpack_ids(ids_blob)
        sent = set(batch.ids)
        keep = [i for i, rid in enumerate(stored) if rid not in sent]
        if not keep:
            db.execute("DELETE FROM batches WHERE seq = ?", (batch.seq,))
        elif len(keep) < len(stored):
            (body,) = db.execute("SELECT body FROM batches WHERE seq = ?", (batch.seq,)).fetchone()
            db.execute(
                "UPDATE batches SET n = ?, ids = ?, body = ? WHERE seq = ?",
                (
                    len(keep),
                    pack_ids([stored[i] for i in keep]),
                    keep_items(body, keep),
                    batch.seq,
                ),
            )
        removed = len(stored) - len(keep)
        t.lane_depth[min(lane, LOWEST)] -= removed
        return removed

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
