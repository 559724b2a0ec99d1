"""What the dead-letter store holds and how it is written: records, fingerprints, the line
format of a segment (see :mod:`cloud.ingest.deadletter`)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from contract import RejectReason

SEGMENT_PREFIX = "segment-"
#: A record's detail is cut to this many characters: a detail may quote device input, and
#: 2 000 records must not each carry a copy of a long string (bounded memory and disk).
DETAIL_MAX = 200
PAYLOAD_TAG = b'{"p":'


def fingerprint(topic: str, payload: bytes) -> bytes:
    """16 bytes that identify a message (topic and payload): equal for a redelivery or a
    replay of the same message, different for anything else."""
    h = hashlib.blake2b(digest_size=16)
    h.update(topic.encode("utf-8", "surrogatepass"))
    h.update(b"\0")
    h.update(payload)
    return h.digest()


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a message (``index`` None) or one reading of it (``index``) was refused."""

    reason: RejectReason
    detail: str
    index: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """A refused message with its problems, as the ingester hands it to the store."""

    topic: str
    payload: bytes
    received_at: int  # ms since epoch UTC
    gateway: str | None
    problems: tuple[Problem, ...]

    @property
    def fingerprint(self) -> bytes:
        """See :func:`fingerprint`."""
        return fingerprint(self.topic, self.payload)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One stored record: a refused message (``index`` None) or one refused reading of it.
    Its payload is read with :meth:`DeadLetterStore.payloads` (by ``fingerprint``)."""

    received_at: int  # ms since epoch UTC
    reason: str  # a contract.errors.RejectReason value
    detail: str
    topic: str
    gateway: str | None
    index: int | None
    fingerprint: str  # hex
    segment: int


@dataclass(slots=True)
class Appended:
    """What one :meth:`DeadLetterStore.append` did."""

    #: the refusals written, each with only the problems that were new to the store
    written: list[Refusal] = field(default_factory=list)
    #: problems not written because the same (payload, reason) was already stored
    duplicates: int = 0
    #: records dropped by rotation during this append
    rotated: int = 0


def segment_number(path: Path) -> int | None:
    """The number of a segment file, None for any other file."""
    name = path.name
    if not (name.startswith(SEGMENT_PREFIX) and name.endswith(".jsonl")):
        return None
    digits = name[len(SEGMENT_PREFIX) : -len(".jsonl")]
    return int(digits) if digits.isdigit() else None


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """(number, path) of every segment in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    found = ((segment_number(p), p) for p in directory.iterdir())
    return sorted((n, p) for n, p in found if n is not None)


def entry_lines(ref: Refusal, fp: bytes, problems: Sequence[Problem]) -> bytes:
    hexfp = fp.hex()
    head = orjson.dumps(
        {
            "p": hexfp,
            "topic": ref.topic,
            "received_at": ref.received_at,
            "payload_b64": base64.b64encode(ref.payload).decode("ascii"),
        }
    )
    records = [
        orjson.dumps(
            {
                "r": hexfp,
                "received_at": ref.received_at,
                "reason": p.reason.value,
                "detail": p.detail[:DETAIL_MAX],
                "topic": ref.topic,
                "gateway": ref.gateway,
                "index": p.index,
            }
        )
        for p in problems
    ]
    return b"\n".join([head, *records]) + b"\n"
