"""The spool file: its layout, opening it (integrity check, quarantine, migration) and the
errors SQLite's answers map to. :class:`edge.spool.sqlite.SqliteOutbox` does the reads and
writes; docs/adr/0005-edge-spool.md says why the layout is one row per batch."""

from __future__ import annotations

import sqlite3
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from contract.errors import StorageError
from contract.payload import Reading
from edge.reading import encode_readings
from edge.spool.policy import LOWEST, SpoolLimits, batch_lane
from edge.spool.tally import Tally

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

#: How long open() waits for another process's lock on the spool (a second agent holds it for
#: good; a killed one's lock is released by the kernel at once).
_BUSY_TIMEOUT_S = 1.0

UPSERT_META = (
    "INSERT INTO meta (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)

_READINGS = TypeAdapter(list[Reading])


class DiskFullError(StorageError):
    """SQLite could not grow the spool: ``max_bytes`` reached or the disk is full."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, retryable=True)


class CorruptSpoolError(StorageError):
    """SQLite says the spool file is damaged or not a database."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, retryable=False)


def pack_ids(ids: Sequence[int]) -> bytes:
    """Reading ids as a blob (packed int64)."""
    return array("q", ids).tobytes()


def unpack_ids(blob: bytes) -> tuple[int, ...]:
    """The reading ids in a blob written by :func:`pack_ids`."""
    ids = array("q")
    ids.frombytes(blob)
    return tuple(ids)


def _check_integrity(db: sqlite3.Connection) -> None:
    # About 0.1 s for a million spooled readings: cheap next to a gateway that crashes on a
    # damaged page at every start.
    (check,) = db.execute("PRAGMA quick_check(1)").fetchone()
    if check != "ok":
        raise CorruptSpoolError(f"quick_check: {check}")


def open_db(
    path: Path, *, clock: Callable[[], int], limits: SpoolLimits, quarantined: int
) -> tuple[sqlite3.Connection, Tally]:
    """Open (creating or migrating) the spool at ``path`` and load its counters.

    Raises :class:`CorruptSpoolError` when SQLite finds the file damaged or not a database,
    and :class:`StorageError` for anything else that stops it opening."""
    try:
        db = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=_BUSY_TIMEOUT_S
        )
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open spool {path}: {exc}", retryable=False) from exc
    try:
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        _check_integrity(db)
        if limits.max_bytes is not None:
            (page_size,) = db.execute("PRAGMA page_size").fetchone()
            pages = max(1, limits.max_bytes // page_size)
            db.execute(f"PRAGMA max_page_count = {pages}")
        db.execute("BEGIN IMMEDIATE")
        # executescript() would commit the transaction; the statements run inside it.
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        # A fresh spool starts its seqs at the wall clock so that a replaced spool file
        # does not restart at 0 behind seqs the ingester has already seen.
        db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', ?)", (clock(),))
        if quarantined:
            db.execute(UPSERT_META, ("quarantined", quarantined))
        _migrate_v1(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
        tally = Tally()
        tally.load(dict(db.execute("SELECT key, value FROM meta").fetchall()))
        for lane, n in db.execute("SELECT lane, SUM(n) FROM batches GROUP BY lane"):
            tally.lane_depth[min(lane, LOWEST)] += n
    except CorruptSpoolError:
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
            raise CorruptSpoolError(str(exc)) from exc
        raise StorageError(f"cannot open spool {path}: {exc}", retryable=False) from exc
    return db, tally


def quarantine(path: Path, now_ms: int) -> Path:
    """Move the spool file and its WAL/SHM companions aside; returns the new name."""
    moved = path.with_name(f"{path.name}.corrupt-{now_ms}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            try:
                src.replace(Path(f"{moved}{suffix}"))
            except OSError as exc:
                raise StorageError(
                    f"spool {path} is corrupt and cannot be moved aside: {exc}", retryable=False
                ) from exc
    return moved


def _migrate_v1(db: sqlite3.Connection) -> None:
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
        # Validated here, once: these bytes were written by an older agent.
        readings = _READINGS.validate_json(b"[" + b",".join(r[2] for r in rows) + b"]")
        db.execute(
            "INSERT INTO batches (seq, lane, created_ms, n, ids, body) VALUES (?,?,?,?,?,?)",
            (
                seq,
                batch_lane(readings),
                rows[0][1],
                len(rows),
                pack_ids([r[0] for r in rows]),
                encode_readings(readings),
            ),
        )
        top = max(top, rows[-1][0] + 1)
    (max_id,) = db.execute("SELECT COALESCE(MAX(id), -1) FROM readings").fetchone()
    db.execute(UPSERT_META, ("next_id", max(top, max_id + 1)))
    db.execute("DROP TABLE readings")
