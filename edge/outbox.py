"""The outbox: readings wait here from the serial port until the broker has acknowledged them.

A closed batch is stored as a unit with its batch ``seq``, so a batch re-sent after a
reconnect carries the seq it was first sent with and the ingester can drop the duplicate.
Readings leave the outbox only through :meth:`Outbox.mark_acked`, called on the PUBACK.

Two implementations share the :class:`Outbox` protocol: :class:`MemoryOutbox` (survives broker
outages, not a gateway reboot) and :class:`SqliteOutbox` (a durable spool file).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

import orjson

from contract.errors import StorageError
from contract.payload import Reading


def wall_ms() -> int:
    """Now, integer ms since the epoch (UTC)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class PendingBatch:
    """A closed batch waiting for its PUBACK: its seq, the ids of its readings, the readings."""

    seq: int
    ids: tuple[int, ...]
    readings: tuple[Reading, ...]
    created_ms: int


class Outbox(Protocol):
    """Where closed batches wait until acknowledged. Not thread-safe by contract: the agent
    touches it from its publisher loop only."""

    def put(self, readings: Sequence[Reading]) -> int:
        """Store ``readings`` as one closed batch; return its new batch seq."""
        ...

    def take(self, *, after_seq: int, limit: int) -> list[PendingBatch]:
        """Up to ``limit`` pending batches with seq > ``after_seq``, in seq order."""
        ...

    def mark_acked(self, ids: Iterable[int]) -> int:
        """Remove the readings with these ids (the broker has them); return how many went."""
        ...

    def depth(self) -> int:
        """Readings still waiting for a PUBACK."""
        ...

    def oldest_age_s(self) -> float | None:
        """Age in seconds of the oldest waiting reading's batch, None when empty."""
        ...

    def close(self) -> None:
        """Release files/handles."""
        ...


class MemoryOutbox:
    """An in-process outbox. Batch seqs start at the wall clock in ms at :meth:`open`, so they
    keep increasing across agent restarts without storing a counter."""

    def __init__(self, *, clock: Callable[[], int] = wall_ms) -> None:
        self._clock = clock
        self._batches: dict[int, PendingBatch] = {}
        self._live: dict[int, set[int]] = {}
        self._next_seq: int | None = None
        self._next_id = 0
        self._depth = 0

    def open(self) -> Self:
        """Start the sequence; returns self."""
        self._next_seq = self._clock()
        return self

    def put(self, readings: Sequence[Reading]) -> int:
        """Store a closed batch; return its seq."""
        seq = self._clock() if self._next_seq is None else self._next_seq
        self._next_seq = seq + 1
        ids = tuple(range(self._next_id, self._next_id + len(readings)))
        self._next_id += len(readings)
        self._batches[seq] = PendingBatch(seq, ids, tuple(readings), self._clock())
        self._live[seq] = set(ids)
        self._depth += len(ids)
        return seq

    def take(self, *, after_seq: int, limit: int) -> list[PendingBatch]:
        """Pending batches after ``after_seq`` in seq order (dicts keep insertion order, and
        seqs are inserted increasing)."""
        out: list[PendingBatch] = []
        for seq, batch in self._batches.items():
            if seq > after_seq:
                out.append(batch)
                if len(out) >= limit:
                    break
        return out

    def mark_acked(self, ids: Iterable[int]) -> int:
        """Drop acknowledged readings; a batch goes when its last reading goes."""
        wanted = set(ids)
        removed = 0
        for seq in list(self._live):
            live = self._live[seq]
            hit = live & wanted
            if hit:
                live -= hit
                removed += len(hit)
                if not live:
                    del self._live[seq]
                    del self._batches[seq]
                else:  # a partly acked batch is re-sent with only what is still missing
                    old = self._batches[seq]
                    keep = [i for i, rid in enumerate(old.ids) if rid in live]
                    self._batches[seq] = PendingBatch(
                        seq,
                        tuple(old.ids[i] for i in keep),
                        tuple(old.readings[i] for i in keep),
                        old.created_ms,
                    )
        self._depth -= removed
        return removed

    def depth(self) -> int:
        """Readings waiting for a PUBACK."""
        return self._depth

    def oldest_age_s(self) -> float | None:
        """Age of the oldest waiting batch."""
        first = next(iter(self._batches.values()), None)
        return None if first is None else max(0.0, (self._clock() - first.created_ms) / 1000)

    def close(self) -> None:
        """Nothing to release."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_seq INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS readings_batch ON readings (batch_seq);
"""


class SqliteOutbox:
    """A durable spool in one SQLite file (WAL, synchronous=NORMAL: a committed batch survives
    a process kill; a power cut may lose the last few hundred ms, which the sensors' own
    sequence numbers reveal). The batch seq counter is stored too, so seqs never repeat."""

    def __init__(self, *, path: Path, clock: Callable[[], int] = wall_ms) -> None:
        self._path = path
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> Self:
        """Open (creating if needed) the spool file; returns self."""
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            # A fresh spool starts its seqs at the wall clock so that a replaced spool file
            # does not restart at 0 behind seqs the ingester has already seen.
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', ?)", (self._clock(),)
            )
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open spool {self._path}: {exc}", retryable=False) from exc
        self._db = db
        return self

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StorageError(f"spool {self._path} is not open", retryable=False)
        return self._db

    def put(self, readings: Sequence[Reading]) -> int:
        """Store a closed batch in one transaction; return its seq."""
        db = self._conn()
        now = self._clock()
        rows = [orjson.dumps(r.model_dump(mode="json", exclude_none=True)) for r in readings]
        with self._lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                (seq,) = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
                db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq + 1,))
                db.executemany(
                    "INSERT INTO readings (batch_seq, created_ms, body) VALUES (?, ?, ?)",
                    [(seq, now, body) for body in rows],
                )
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                db.execute("ROLLBACK")
                raise StorageError(f"spool write failed: {exc}", retryable=True) from exc
        return int(seq)

    def take(self, *, after_seq: int, limit: int) -> list[PendingBatch]:
        """Pending batches after ``after_seq``, in seq order."""
        db = self._conn()
        with self._lock:
            seqs = [
                s
                for (s,) in db.execute(
                    "SELECT DISTINCT batch_seq FROM readings WHERE batch_seq > ? "
                    "ORDER BY batch_seq LIMIT ?",
                    (after_seq, limit),
                )
            ]
            out: list[PendingBatch] = []
            for seq in seqs:
                rows = db.execute(
                    "SELECT id, created_ms, body FROM readings WHERE batch_seq = ? ORDER BY id",
                    (seq,),
                ).fetchall()
                out.append(
                    PendingBatch(
                        seq=seq,
                        ids=tuple(r[0] for r in rows),
                        readings=tuple(Reading.model_validate_json(r[2]) for r in rows),
                        created_ms=rows[0][1],
                    )
                )
        return out

    def mark_acked(self, ids: Iterable[int]) -> int:
        """Delete acknowledged readings."""
        db = self._conn()
        id_list = [(i,) for i in ids]
        with self._lock:
            before = db.total_changes
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("DELETE FROM readings WHERE id = ?", id_list)
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                db.execute("ROLLBACK")
                raise StorageError(f"spool delete failed: {exc}", retryable=True) from exc
            return db.total_changes - before

    def depth(self) -> int:
        """Readings waiting for a PUBACK."""
        with self._lock:
            (n,) = self._conn().execute("SELECT COUNT(*) FROM readings").fetchone()
        return int(n)

    def oldest_age_s(self) -> float | None:
        """Age of the oldest waiting reading."""
        with self._lock:
            (oldest,) = self._conn().execute("SELECT MIN(created_ms) FROM readings").fetchone()
        return None if oldest is None else max(0.0, (self._clock() - oldest) / 1000)

    def close(self) -> None:
        """Close the spool file."""
        if self._db is not None:
            self._db.close()
            self._db = None
