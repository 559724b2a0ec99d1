"""The state delta ingesters of one group exchange on ``topics.ingest_state(group)``.

A delta carries, for each sensor whose state a member changed, the sensor's latest reading
(observation time, seq, values) and its previous one (time, values): exactly what the
ingester's last-writer-wins ``SensorState`` holds, so merging a delta is merging states (see
docs/adr/0006-ingester-scale-out.md).

Layout, little-endian, columnar so a receiver maps each column straight into an array::

    header   "<4sBBH8sI": magic b"PSD1", version 1, fields F, flags, registry digest (8 bytes), n
    sensor   n x uint32        dense sensor index in registry order
    ts       n x int64         latest observation time, ms
    seq      n x int64         latest reading's seq
    prev_ts  n x int64         previous observation time, ms (-1: none)
    values   n x F x int64     latest values, the kind's fields in wire order, then zeros
    prev     n x F x int64     previous values

Flags: bit 0 ``HELLO``: the sender has just (re)subscribed and asks every member for its whole
state (a member that joins, or returns, must not miss what the group learned before). Other
bits are 0.

Sensors travel as registry positions to keep a delta small; the registry digest (first 8 bytes
of SHA-256 over the sensor ids in file order, see :func:`registry_digest`) makes a member with a
different registry refuse the delta instead of merging it into the wrong sensors.

Decoding never copies: each column is an ``np.frombuffer`` view of the payload.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from contract.errors import PayloadError, RejectReason
from contract.payload import MAX_PAYLOAD_BYTES

MAGIC = b"PSD1"
VERSION = 1
_HEADER = struct.Struct("<4sBBH8sI")
FLAG_HELLO = 0x01
HEADER_BYTES = _HEADER.size
_U4 = np.dtype("<u4")
_I8 = np.dtype("<i8")

I64 = npt.NDArray[np.int64]


def row_bytes(fields: int) -> int:
    """Bytes one sensor takes in a delta with ``fields`` value columns."""
    return 4 + 3 * 8 + 2 * 8 * fields


def max_rows(fields: int) -> int:
    """Most sensors one delta message may carry while staying within MAX_PAYLOAD_BYTES."""
    return (MAX_PAYLOAD_BYTES - HEADER_BYTES) // row_bytes(fields)


def registry_digest(sensor_ids: Iterable[str]) -> bytes:
    """8 bytes identifying a registry's sensor order (members must agree on it)."""
    return hashlib.sha256("\n".join(sensor_ids).encode("utf-8")).digest()[:8]


@dataclass(frozen=True, slots=True, kw_only=True)
class StateDelta:
    """Latest and previous reading of ``len(sensor)`` sensors (``values`` is (n, F));
    ``hello`` asks the other members to answer with their whole state."""

    digest: bytes
    sensor: npt.NDArray[np.uint32]
    ts: I64
    seq: I64
    prev_ts: I64
    values: I64
    prev_values: I64
    hello: bool = False

    def __len__(self) -> int:
        return len(self.sensor)


def encode_state_delta(delta: StateDelta) -> bytes:
    """Pack a delta; refuses one that would exceed MAX_PAYLOAD_BYTES (split it first, see
    :func:`max_rows`) or whose columns disagree in length."""
    n = len(delta.sensor)
    values = np.asarray(delta.values)
    fields = values.shape[1] if values.ndim == 2 else 0
    if len(delta.digest) != 8:
        raise ValueError("registry digest must be 8 bytes")
    if n > max_rows(fields):
        raise ValueError(f"a delta of {n} sensors exceeds {MAX_PAYLOAD_BYTES} bytes")
    cols = (delta.ts, delta.seq, delta.prev_ts, delta.values, delta.prev_values)
    if any(len(c) != n for c in cols) or np.shape(delta.prev_values) != values.shape:
        raise ValueError("state delta columns differ in length")
    flags = FLAG_HELLO if delta.hello else 0
    parts = [_HEADER.pack(MAGIC, VERSION, fields, flags, delta.digest, n)]
    parts.append(np.ascontiguousarray(delta.sensor, dtype=_U4).tobytes())
    parts += [np.ascontiguousarray(c, dtype=_I8).tobytes() for c in cols]
    return b"".join(parts)


def decode_state_delta(raw: bytes) -> StateDelta:
    """Unpack a delta; raises :class:`PayloadError` (``invalid_binary``) if it is not one."""
    if len(raw) < HEADER_BYTES:
        raise PayloadError(RejectReason.INVALID_BINARY, f"state delta of {len(raw)} bytes")
    magic, version, fields, flags, digest, n = _HEADER.unpack_from(raw)
    if magic != MAGIC or version != VERSION:
        raise PayloadError(RejectReason.INVALID_BINARY, f"not a state delta v{VERSION}")
    if flags & ~FLAG_HELLO:
        raise PayloadError(RejectReason.INVALID_BINARY, f"unknown state delta flags {flags:#x}")
    if len(raw) != HEADER_BYTES + n * row_bytes(fields):
        raise PayloadError(
            RejectReason.INVALID_BINARY,
            f"state delta of {n} sensors x {fields} fields cannot be {len(raw)} bytes",
        )
    at = HEADER_BYTES

    def take(dtype: np.dtype[np.uint32] | np.dtype[np.int64], count: int) -> npt.NDArray[Any]:
        nonlocal at
        col = np.frombuffer(raw, dtype=dtype, count=count, offset=at)
        at += count * dtype.itemsize
        return col

    sensor = take(_U4, n)
    ts, seq, prev_ts = take(_I8, n), take(_I8, n), take(_I8, n)
    values = take(_I8, n * fields).reshape(n, fields)
    prev_values = take(_I8, n * fields).reshape(n, fields)
    return StateDelta(
        digest=digest,
        sensor=sensor,
        ts=ts,
        seq=seq,
        prev_ts=prev_ts,
        values=values,
        prev_values=prev_values,
        hello=bool(flags & FLAG_HELLO),
    )
