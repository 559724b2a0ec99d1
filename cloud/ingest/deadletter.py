"""The dead-letter store: every refused message or reading, with its raw payload, on disk.

Append-only JSON lines, one file per UTC day (``dead-letter-YYYY-MM-DD.jsonl``) in
``PANTAU_DEAD_LETTER_DIR``. :meth:`DeadLetterStore.append` returns only after ``fsync``, and the
ingester acknowledges a message only after that, so a refused message is never lost: it is
either still at the broker or in this store.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from contract import RejectReason

FILE_PREFIX = "dead-letter-"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One refused message (``index`` None) or one refused reading of it (``index``)."""

    received_at: int  # ms since epoch UTC
    reason: str  # a contract.errors.RejectReason value
    detail: str
    topic: str
    gateway: str | None
    index: int | None
    payload_b64: str

    @property
    def payload(self) -> bytes:
        """The raw payload exactly as received."""
        return base64.b64decode(self.payload_b64)

    @classmethod
    def of(
        cls,
        *,
        received_at: int,
        reason: RejectReason,
        detail: str,
        topic: str,
        gateway: str | None,
        index: int | None,
        payload: bytes,
    ) -> DeadLetter:
        """Build a record from the raw payload."""
        return cls(
            received_at=received_at,
            reason=reason.value,
            detail=detail,
            topic=topic,
            gateway=gateway,
            index=index,
            payload_b64=base64.b64encode(payload).decode("ascii"),
        )


class DeadLetterStore:
    """Append-only, fsync'd JSON-lines files in ``directory``."""

    def __init__(self, *, directory: Path) -> None:
        self.directory = directory

    def append(self, records: Sequence[DeadLetter]) -> None:
        """Append records durably (fsync of the file, and of the directory for a new file)."""
        if not records:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        by_day: dict[str, list[bytes]] = {}
        for rec in records:
            day = datetime.fromtimestamp(rec.received_at / 1000, tz=UTC).strftime("%Y-%m-%d")
            by_day.setdefault(day, []).append(orjson.dumps(asdict(rec)) + b"\n")
        for day, lines in by_day.items():
            path = self.directory / f"{FILE_PREFIX}{day}.jsonl"
            new = not path.exists()
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                data = b"".join(lines)
                while data:
                    written = os.write(fd, data)
                    data = data[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            if new:
                dir_fd = os.open(self.directory, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)

    def read(self, *, reason: str | None = None) -> Iterator[DeadLetter]:
        """Every record, oldest file first, optionally only those of one reason. A torn last
        line (power cut mid-append, before its message was acknowledged) is skipped."""
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob(f"{FILE_PREFIX}*.jsonl")):
            with path.open("rb") as fh:
                for line in fh:
                    try:
                        doc = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue
                    if reason is None or doc.get("reason") == reason:
                        yield DeadLetter(**doc)
