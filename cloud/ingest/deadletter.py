"""The dead-letter store: every refused message, its raw payload stored once, on disk.

Layout (``PANTAU_DEAD_LETTER_DIR``): append-only JSON-lines *segments*
``segment-NNNNNNNNNN.jsonl`` plus ``index.sqlite`` (:mod:`cloud.ingest.deadindex`). A refused
message is one *payload line* (``{"p": fingerprint, "topic", "received_at", "payload_b64"}``)
followed by one *record line* per refused part (``{"r": fingerprint, "reason", "detail",
"index", ...}``): a batch of 2 000 refused readings stores its payload once, not 2 000 times.
A message's payload and records are always in the same segment, so dropping whole segments
never leaves a record without its payload.

Bounded: when the segments together exceed ``max_bytes`` the oldest are deleted (never the one
being written), each a ``max_bytes // 8`` slice, so the disk holds at most ``max_bytes`` and
at least 7/8 of it after the first rotation. Every dropped record is counted in the index,
durably, and reported by ``pantau ingest dead-letters`` and the
``pantau_ingest_dead_letters_rotated_total`` metric.

Not stored twice: a (payload fingerprint, reason) already in the store is not written again,
so a replayed message that is refused again, or a redelivery after a crash, adds nothing.

Durable: :meth:`DeadLetterStore.append` returns after ``fsync`` of the segment (and of the
directory for a new one), and the ingester acknowledges a message only after that.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import orjson

from cloud.ingest.deadindex import DeadIndex, Rotated
from cloud.ingest.deadrecords import (
    DETAIL_MAX,
    PAYLOAD_TAG,
    SEGMENT_PREFIX,
    Appended,
    DeadLetter,
    Problem,
    Refusal,
    entry_lines,
    fingerprint,
    list_segments,
)

__all__ = [
    "DETAIL_MAX",
    "Appended",
    "DeadLetter",
    "DeadLetterStore",
    "Problem",
    "Refusal",
    "fingerprint",
    "list_segments",
]

log = logging.getLogger(__name__)

INDEX_FILE = "index.sqlite"
DEFAULT_MAX_BYTES = 1024**3


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DeadLetterStore:
    """The store in ``directory``, bounded to ``max_bytes``. Construction does no I/O;
    :meth:`open` (or ``with``) is needed to append; :meth:`read` and :meth:`payloads` work on
    a closed store too (the CLI reads while the ingester writes)."""

    def __init__(self, *, directory: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = max(64 * 1024, max_bytes // 8)
        self._index = DeadIndex(path=directory / INDEX_FILE)
        self._seg = -1
        self._seg_size = 0

    # ---- writing ---------------------------------------------------------------------
    def open(self) -> Rotated:
        """Create or reopen the store: finish an interrupted rotation, re-index segments the
        index does not know fully (the newest, after a crash) and cut a torn last line (its
        message was never acknowledged). Returns what rotation has dropped so far."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._index.open()
        rotated = self._index.rotated()
        indexed = {seq for seq, _, _ in self._index.segments()}
        files = list_segments(self.directory)
        for seq, path in files:
            if seq <= rotated.through:  # counted, but the crash came before the unlink
                path.unlink(missing_ok=True)
        files = [(s, p) for s, p in files if s > rotated.through]
        for i, (seq, path) in enumerate(files):
            if seq not in indexed or i == len(files) - 1:
                self._reindex(seq, path)
        present = {s for s, _ in files}
        for seq in indexed - present:  # deleted by hand: not rotation's doing
            self._index.reset_segment(seq)
        self._index.commit()
        if files:
            self._seg, path = files[-1]
            self._seg_size = path.stat().st_size
        else:
            self._seg, self._seg_size = rotated.through + 1, 0
        return rotated

    def close(self) -> None:
        """Close the index (idempotent)."""
        self._index.close()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _reindex(self, seq: int, path: Path) -> None:
        # Line by line: a segment may be an eighth of the bound (128 MiB by default).
        self._index.reset_segment(seq)
        pairs: dict[tuple[bytes, str], None] = {}
        records = end = 0
        with path.open("rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    break  # torn: cut below
                end += len(line)
                if line.startswith(PAYLOAD_TAG):
                    continue
                try:
                    doc = orjson.loads(line)
                    pairs[(bytes.fromhex(doc["r"]), str(doc["reason"]))] = None
                    records += 1
                except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
                    log.warning("dead letters: skipping an unreadable line in %s", path.name)
        if end < path.stat().st_size:
            log.warning("dead letters: cutting a torn last line of %s", path.name)
            with path.open("r+b") as fh:
                fh.truncate(end)
                os.fsync(fh.fileno())
        self._index.add(seq, list(pairs), records, end)

    def append(self, refusals: Sequence[Refusal]) -> Appended:
        """Store refusals durably (fsync), each payload once; refusals of the same message
        (topic and payload) are merged. Problems whose (payload, reason) is already stored are
        left out. Then rotate if the store is over its bound."""
        out = Appended()
        if not refusals:
            return out
        # Same message twice (two refused parts, or a duplicate delivery in one window):
        # one payload, and identical problems once.
        merged: dict[bytes, tuple[Refusal, dict[Problem, None]]] = {}
        for ref in refusals:
            entry = merged.setdefault(ref.fingerprint, (ref, {}))
            before = len(entry[1])
            entry[1].update(dict.fromkeys(ref.problems))
            # A problem already merged from the same message (a redelivery in this window) is
            # a duplicate too, exactly as if it had come in a later window.
            out.duplicates += len(ref.problems) - (len(entry[1]) - before)
        fd: int | None = None
        try:
            for fp, (ref, problems) in merged.items():
                known = self._index.known(fp, (p.reason.value for p in problems))
                new = [p for p in problems if p.reason.value not in known]
                out.duplicates += len(problems) - len(new)
                if not new:
                    continue
                data = entry_lines(ref, fp, new)
                if self._seg_size and self._seg_size + len(data) > self.segment_bytes:
                    self._seal(fd)
                    fd = None
                if fd is None:
                    fd = self._open_segment()
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                self._seg_size += len(data)
                pairs = [(fp, r) for r in dict.fromkeys(p.reason.value for p in new)]
                self._index.add(self._seg, pairs, len(new), len(data))
                out.written.append(
                    Refusal(
                        topic=ref.topic,
                        payload=ref.payload,
                        received_at=ref.received_at,
                        gateway=ref.gateway,
                        problems=tuple(new),
                    )
                )
        finally:
            if fd is not None:
                os.fsync(fd)
                os.close(fd)
        self._index.commit()
        out.rotated = self._rotate()
        return out

    def _open_segment(self) -> int:
        path = self.directory / f"{SEGMENT_PREFIX}{self._seg:010d}.jsonl"
        new = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        if new:
            _fsync_dir(self.directory)
        return fd

    def _seal(self, fd: int | None) -> None:
        """Finish the current segment (fsync, index committed) and start the next."""
        if fd is not None:
            os.fsync(fd)
            os.close(fd)
        self._index.commit()
        self._seg += 1
        self._seg_size = 0

    def _rotate(self) -> int:
        segments = self._index.segments()
        total = sum(size for _, _, size in segments)
        drop: list[int] = []
        for seq, _, size in segments[:-1]:  # never the segment being written
            if total <= self.max_bytes:
                break
            drop.append(seq)
            total -= size
        if not drop:
            return 0
        before = self._index.rotated().records
        after = self._index.drop(drop)
        for seq in drop:
            (self.directory / f"{SEGMENT_PREFIX}{seq:010d}.jsonl").unlink(missing_ok=True)
        log.info(
            "dead letters over %d bytes: dropped %d oldest segment(s), %d record(s)",
            self.max_bytes,
            len(drop),
            after.records - before,
        )
        return after.records - before

    # ---- reading ---------------------------------------------------------------------
    def rotated(self) -> Rotated:
        """What rotation has dropped so far (from the index; zero if there is none yet)."""
        path = self.directory / INDEX_FILE
        if not path.exists():
            return Rotated(-1, 0, 0)
        index = DeadIndex(path=path, readonly=True)
        index.open()
        try:
            return index.rotated()
        finally:
            index.close()

    def size_bytes(self) -> int:
        """Bytes the segments hold on disk now."""
        total = 0
        for _, path in list_segments(self.directory):
            try:
                total += path.stat().st_size
            except FileNotFoundError:  # rotated away meanwhile
                continue
        return total

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        for seq, path in list_segments(self.directory):
            try:
                with path.open("rb") as fh:
                    for line in fh:
                        if line.endswith(b"\n"):  # a torn last line was never acknowledged
                            yield seq, line
            except FileNotFoundError:  # rotated away while we read
                continue

    def read(
        self,
        *,
        reason: str | None = None,
        gateway: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> list[DeadLetter]:
        """The records that match every given filter (``until_ms`` exclusive), oldest
        received first (ties in the order they were stored). Payload lines are skipped
        unparsed, so this holds only the records (about 300 bytes each) in memory."""
        out: list[DeadLetter] = []
        for seq, line in self._lines():
            if line.startswith(PAYLOAD_TAG):
                continue
            try:
                doc = orjson.loads(line)
                rec = DeadLetter(
                    received_at=int(doc["received_at"]),
                    reason=str(doc["reason"]),
                    detail=str(doc["detail"]),
                    topic=str(doc["topic"]),
                    gateway=doc["gateway"],
                    index=doc["index"],
                    fingerprint=str(doc["r"]),
                    segment=seq,
                )
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
            if (
                (reason is None or rec.reason == reason)
                and (gateway is None or rec.gateway == gateway)
                and (since_ms is None or rec.received_at >= since_ms)
                and (until_ms is None or rec.received_at < until_ms)
            ):
                out.append(rec)
        out.sort(key=lambda r: r.received_at)
        return out

    def payloads(self, fingerprints: set[str]) -> dict[str, tuple[str, bytes]]:
        """fingerprint (hex) -> (topic, raw payload) for those still in the store."""
        out: dict[str, tuple[str, bytes]] = {}
        for _, line in self._lines():
            if not line.startswith(PAYLOAD_TAG) or line[6:38].decode() not in fingerprints:
                continue
            doc = orjson.loads(line)
            out[doc["p"]] = (doc["topic"], base64.b64decode(doc["payload_b64"]))
        return out
