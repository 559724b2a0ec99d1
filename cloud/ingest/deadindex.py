"""Bookkeeping of the dead-letter store in a small SQLite file next to its segments.

The segment files (``deadletter``) are the records; this index only says, without reading
them, (a) which (payload fingerprint, reason) pairs are already on disk, so a message refused
again (a replay, a broker redelivery) is not stored twice, (b) how many records and bytes each
segment holds, so rotation is a metadata operation, and (c) how many records rotation has
dropped so far, a counter that must survive restarts.

Durability: (c) is committed (``synchronous=FULL``) *before* the rotated segments are
unlinked, with the number of the last dropped segment, so a crash in between neither loses the
count nor counts a segment twice (:meth:`DeadIndex.rotated_through` tells the store what to
finish deleting). (a) and (b) for the newest segment may lag its file after a crash; the store
re-indexes that segment when it opens.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stored (
    fp BLOB NOT NULL, reason TEXT NOT NULL, segment INTEGER NOT NULL,
    PRIMARY KEY (fp, reason)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS stored_segment ON stored (segment);
CREATE TABLE IF NOT EXISTS segments (
    seq INTEGER PRIMARY KEY, records INTEGER NOT NULL, bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rotated (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    through INTEGER NOT NULL, records INTEGER NOT NULL, bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO rotated VALUES (0, -1, 0, 0);
"""


@dataclass(frozen=True, slots=True)
class Rotated:
    """What rotation has dropped since the store was created."""

    through: int  # number of the newest dropped segment, -1 if none
    records: int
    bytes: int


def connect(
    path: Path, *, readonly: bool = False, synchronous: Literal["FULL", "NORMAL"] = "FULL"
) -> sqlite3.Connection:
    """An SQLite connection in WAL mode (autocommit off). ``synchronous="FULL"``: every
    commit is fsynced (survives a power loss). ``"NORMAL"``: a commit is only written to the
    OS (survives a death of the process, not of the machine; SQLite never corrupts the file
    either way) - the crash-loop guard's choice (docs/adr/0041)."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level="DEFERRED")
    else:
        conn = sqlite3.connect(path, isolation_level="DEFERRED")
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


class DeadIndex:
    """The index file ``path``; :meth:`open` creates it. One writer (the ingester); the CLI
    opens it read-only."""

    def __init__(self, *, path: Path, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self._db: sqlite3.Connection | None = None

    def open(self) -> None:
        """Open (and create, unless read-only) the index."""
        self._db = connect(self.path, readonly=self.readonly)
        if not self.readonly:
            self._db.executescript(_SCHEMA)
            self._db.commit()

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection."""
        if self._db is None:
            raise RuntimeError("DeadIndex used before open()")
        return self._db

    def known(self, fp: bytes, reasons: Iterable[str]) -> set[str]:
        """Which of ``reasons`` are already stored for payload fingerprint ``fp``."""
        wanted = sorted(set(reasons))
        marks = ",".join("?" * len(wanted))
        rows = self.db.execute(
            f"SELECT reason FROM stored WHERE fp = ? AND reason IN ({marks})",  # noqa: S608
            (fp, *wanted),
        )
        return {r for (r,) in rows}

    def add(
        self, segment: int, pairs: Sequence[tuple[bytes, str]], records: int, size: int
    ) -> None:
        """Note (fingerprint, reason) pairs and ``records`` records of ``size`` bytes written
        to ``segment`` (not committed: :meth:`commit`)."""
        self.db.executemany(
            "INSERT OR IGNORE INTO stored VALUES (?, ?, ?)", [(fp, r, segment) for fp, r in pairs]
        )
        self.db.execute(
            "INSERT INTO segments VALUES (?, ?, ?) ON CONFLICT (seq) DO UPDATE SET "
            "records = records + excluded.records, bytes = bytes + excluded.bytes",
            (segment, records, size),
        )

    def reset_segment(self, segment: int) -> None:
        """Forget what the index says of ``segment`` (before re-indexing it from its file)."""
        self.db.execute("DELETE FROM stored WHERE segment = ?", (segment,))
        self.db.execute("DELETE FROM segments WHERE seq = ?", (segment,))

    def commit(self) -> None:
        """Make the pending changes durable."""
        self.db.commit()

    def segments(self) -> list[tuple[int, int, int]]:
        """(segment number, records, bytes) of every live segment, oldest first."""
        return list(self.db.execute("SELECT seq, records, bytes FROM segments ORDER BY seq"))

    def rotated(self) -> Rotated:
        """What rotation has dropped so far."""
        row = self.db.execute("SELECT through, records, bytes FROM rotated WHERE id = 0").fetchone()
        return Rotated(-1, 0, 0) if row is None else Rotated(*row)

    def drop(self, segments: Sequence[int]) -> Rotated:
        """Count ``segments`` (oldest first) as rotated away and forget them, durably; the
        caller unlinks their files afterwards."""
        if not segments:
            return self.rotated()
        marks = ",".join("?" * len(segments))
        records, size = self.db.execute(
            f"SELECT coalesce(sum(records), 0), coalesce(sum(bytes), 0) FROM segments "  # noqa: S608
            f"WHERE seq IN ({marks})",
            tuple(segments),
        ).fetchone()
        self.db.execute(
            "UPDATE rotated SET through = ?, records = records + ?, bytes = bytes + ? WHERE id = 0",
            (max(segments), records, size),
        )
        self.db.execute(f"DELETE FROM segments WHERE seq IN ({marks})", tuple(segments))  # noqa: S608
        self.db.execute(f"DELETE FROM stored WHERE segment IN ({marks})", tuple(segments))  # noqa: S608
        self.db.commit()
        return self.rotated()
