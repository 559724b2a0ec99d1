"""The crash-loop guard: a message that kills the ingester is quarantined, not retried forever.

If the process dies while handling a message (out of memory, a fault below Python), the message
was never acknowledged, so the broker delivers it again after the restart, and again. To stop
that loop, every attempt to process a message is counted by its fingerprint (topic + payload)
in ``guard.sqlite`` in the dead-letter directory, committed *before* processing starts, and
the count is removed once processing finished (the process survived it).

So a count that is still there when a message arrives means processing it once began and the
process never came back from it. Such *suspects* are then processed one at a time, each with
its own committed attempt, so an innocent message that merely shared the fatal window is
cleared on its next attempt, and only the message that really kills the process accumulates
attempts. After ``max_attempts`` (``PANTAU_POISON_MAX_ATTEMPTS``, default 3) it is
dead-lettered as ``poison`` without being processed again, then acknowledged.

Durability: the commit is not fsynced (WAL, ``synchronous=NORMAL``): what it wrote is in the
OS page cache, which a death of the *process* (the only thing the guard is about) does not
lose, so the count survives it. Only a power loss or a kernel crash can lose the newest
commits (SQLite rolls them back; it never corrupts the file): then a poison message gets one
attempt more than ``max_attempts``, which is harmless. The fsync per window cost ~4.4 ms of a
JSON drain's idle time each, half of it while paho's thread waited for room
(docs/adr/0041-guard-without-fsync-and-write-wake-ups.md).

Cost: one SQLite commit per window, plus one per suspect after a crash
(``bench/deadletter_guard.py`` measures it). An attempt is *one row*
(``windows``: the fingerprints of the window, concatenated), deleted once it finished; only
:meth:`PoisonGuard.open` turns the rows a dead process left into per-message counts
(``attempts``), which it then keeps in memory. A row per message (an insert and a delete each,
and a select per window) cost single-reading messages more CPU than their decode, and each
statement let paho's thread take the GIL (docs/adr/0029). Rows exist only for messages in
flight, so the file stays small.

Test hook (off unless set): ``PANTAU_TEST_CRASH_MARKER=<text>`` makes the ingester call
``os._exit`` on any message whose payload contains that text, after its attempt is counted,
standing in for a crash below Python. Only the crash-loop test sets it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from blake3 import blake3

from cloud.ingest.deadindex import connect
from cloud.ingest.decode import Message
from cloud.ingest.dedup import content_start, digest_from, remember_digests

log = logging.getLogger(__name__)

GUARD_FILE = "guard.sqlite"
CRASH_MARKER_ENV = "PANTAU_TEST_CRASH_MARKER"
#: Exit status of the test hook's simulated crash.
CRASH_EXIT_CODE = 86

_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    fp BLOB PRIMARY KEY, count INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS windows (id INTEGER PRIMARY KEY, fps BLOB NOT NULL);
"""
#: bytes of a fingerprint (attempt_fingerprint): a window row is a run of them
_FP_BYTES = 16


#: Payloads from this size on are hashed in two parts (:func:`split_fingerprint`); below it
#: the second SHA-256 call would cost more than the dedup hash it saves (singles: no dedup).
SPLIT_BYTES = 1024


def attempt_fingerprint(topic: str, payload: bytes) -> bytes:
    """16 bytes that identify a message (topic and payload) to the guard: BLAKE3, the hash
    dedup uses (``dedup.digest_from``: why BLAKE3), not the dead-letter store's BLAKE2b, because
    every payload of every window is hashed here. Rows live only while a message is in flight,
    so nothing stored elsewhere has to match them (a crash across an upgrade that changed the
    hash only costs the message its count: it is tried as a fresh one).

    A payload of :data:`SPLIT_BYTES` or more is hashed as its envelope, then the digest of its
    readings (:func:`split_fingerprint`); a smaller one whole. A tag byte tells the two forms
    apart and the digest has a fixed length, so distinct messages keep distinct fingerprints."""
    if len(payload) >= SPLIT_BYTES:
        return split_fingerprint(topic, payload)[0]
    h = blake3(topic.encode("utf-8", "surrogatepass"))
    h.update(b"\0w")
    h.update(payload)
    return h.digest(length=_FP_BYTES)


def split_fingerprint(topic: str, payload: bytes) -> tuple[bytes, bytes]:
    """:func:`attempt_fingerprint` of a large payload, and its ``dedup.content_digest``,
    computed on the way: the one hash pass over the readings serves dedup as well, which
    hashed them a second time before (docs/adr/0039-one-hash-pass-per-payload.md)."""
    at = content_start(payload)
    digest = digest_from(payload, at)
    h = blake3(topic.encode("utf-8", "surrogatepass"))
    h.update(b"\0s")
    h.update(memoryview(payload)[:at])
    h.update(digest)
    return h.digest(length=_FP_BYTES), digest


@dataclass(slots=True)
class Plan:
    """How to handle a window (positions into it)."""

    #: never attempted: processed together, as one window
    fresh: list[int] = field(default_factory=list)
    #: attempted before by a process that died: processed one at a time
    suspects: list[int] = field(default_factory=list)
    #: attempted ``max_attempts`` times already: dead-lettered as poison, not processed
    poison: list[tuple[int, int]] = field(default_factory=list)  # (position, attempts)


class PoisonGuard:
    """Attempt counts in ``path`` that outlive the process. Construction does no I/O;
    :meth:`open` does."""

    def __init__(self, *, path: Path, max_attempts: int, crash_marker: bytes = b"") -> None:
        self.path = path
        self.max_attempts = max_attempts
        self.crash_marker = crash_marker
        self._db: sqlite3.Connection | None = None
        #: attempts of earlier processes that never finished, per fingerprint
        self._counts: dict[bytes, int] = {}
        #: the row of the attempt under way (deleted with the next commit once finished)
        self._current: int | None = None
        self._done_rows: list[int] = []
        self._done_fps: list[bytes] = []

    def open(self) -> None:
        """Open (and create) the counts file; count the attempts a dead process left."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = connect(self.path, synchronous="NORMAL")  # no fsync: the module docstring
        db.executescript(_SCHEMA)
        left = db.execute("SELECT fps FROM windows").fetchall()
        counts: dict[bytes, int] = {}
        for (blob,) in left:
            for at in range(0, len(blob), _FP_BYTES):
                fp = blob[at : at + _FP_BYTES]
                counts[fp] = counts.get(fp, 0) + 1
        db.executemany(
            "INSERT INTO attempts VALUES (?, ?) "
            "ON CONFLICT (fp) DO UPDATE SET count = count + excluded.count",
            counts.items(),
        )
        db.execute("DELETE FROM windows")
        db.commit()
        self._counts = dict(db.execute("SELECT fp, count FROM attempts"))
        self._current = None
        self._db = db

    def close(self) -> None:
        """Forget finished messages durably and close (idempotent)."""
        if self._db is not None:
            self._forget_finished()
            self._db.commit()
            self._db.close()
            self._db = None

    def plan(self, window: Sequence[Message]) -> tuple[Plan, list[bytes]]:
        """Sort a window into fresh, suspect and poison messages; also their fingerprints."""
        fps: list[bytes] = []
        digests: list[tuple[bytes, bytes]] = []
        for m in window:
            payload = m.payload
            if len(payload) < SPLIT_BYTES:
                fps.append(attempt_fingerprint(m.topic, payload))
            else:
                fp, digest = split_fingerprint(m.topic, payload)
                fps.append(fp)
                digests.append((payload, digest))
        remember_digests(digests)
        plan = Plan()
        counts = self._counts
        if not counts:  # no process died with messages in flight: every message is fresh
            plan.fresh = list(range(len(fps)))
            return plan, fps
        for i, fp in enumerate(fps):
            n = counts.get(fp, 0)
            if n >= self.max_attempts:
                plan.poison.append((i, n))
            elif n:
                plan.suspects.append(i)
            else:
                plan.fresh.append(i)
        return plan, fps

    def attempt(self, fps: Sequence[bytes]) -> None:
        """Count one attempt of each message, so that it survives a death of the process,
        before it is processed (the
        previous window's finished messages are forgotten in the same commit)."""
        db = self._require()
        self._forget_finished()
        self._current = db.execute(
            "INSERT INTO windows (fps) VALUES (?)", (b"".join(fps),)
        ).lastrowid
        db.commit()

    def finished(self, fps: Sequence[bytes]) -> None:
        """The process survived these messages (the attempt under way, or poison that was
        quarantined): forget them with the next commit."""
        if self._current is not None:
            self._done_rows.append(self._current)
            self._current = None
        counts = self._counts
        if counts:
            self._done_fps += [fp for fp in fps if counts.pop(fp, None) is not None]

    def crash_hook(self, window: Sequence[Message]) -> None:
        """The test-only simulated crash (see the module docstring); nothing unless set."""
        if self.crash_marker and any(self.crash_marker in m.payload for m in window):
            log.critical("%s found: exiting as a crash would", CRASH_MARKER_ENV)
            os._exit(CRASH_EXIT_CODE)

    def _forget_finished(self) -> None:
        db = self._require()
        if self._done_rows:
            db.executemany("DELETE FROM windows WHERE id = ?", [(r,) for r in self._done_rows])
            self._done_rows.clear()
        if self._done_fps:  # only after a crash: what an earlier process left
            db.executemany("DELETE FROM attempts WHERE fp = ?", [(fp,) for fp in self._done_fps])
            self._done_fps.clear()

    def _require(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("PoisonGuard used before open()")
        return self._db


def crash_marker_from_env() -> bytes:
    """The test hook's marker from the environment (empty: the hook is off)."""
    return os.environ.get(CRASH_MARKER_ENV, "").encode()


def run_guarded(
    guard: PoisonGuard,
    window: Sequence[Message],
    *,
    process: Callable[[list[Message]], None],
    quarantine: Callable[[list[tuple[Message, int]]], None],
    settle: Callable[[], None] = lambda: None,
) -> None:
    """Handle a window under the guard: ``quarantine`` the poison messages (with their
    attempt counts; it dead-letters and acknowledges them), ``process`` the fresh ones as one
    window, then each suspect alone. An attempt is counted (so that it outlives the process)
    before ``process`` runs and forgotten once it returns or raises: only a death of the
    process leaves it.

    ``process`` may leave its window's write under way (the service overlaps windows, ADR
    0032); ``settle`` finishes whatever is, and is called before and after each suspect, so
    a suspect is the only window in the process while its attempt counts."""
    plan, fps = guard.plan(window)
    if plan.poison:
        quarantine([(window[i], n) for i, n in plan.poison])
        guard.finished([fps[i] for i, _ in plan.poison])
    parts = ([plan.fresh] if plan.fresh else []) + [[i] for i in plan.suspects]
    for n, part in enumerate(parts):
        msgs, part_fps = [window[i] for i in part], [fps[i] for i in part]
        suspect = n > 0 or not plan.fresh
        if suspect:
            settle()
        guard.attempt(part_fps)
        try:
            guard.crash_hook(msgs)
            process(msgs)
            if suspect:
                settle()
        finally:
            guard.finished(part_fps)
