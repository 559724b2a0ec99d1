"""What decoding takes and gives: the received message, refusals, status updates, and the
readings as numpy columns (one row each)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from cloud.ingest.topology import MAX_FIELDS
from contract import GatewayStatus, RejectReason

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
I8 = npt.NDArray[np.int8]
Bools = npt.NDArray[np.bool_]

#: Reason codes in the int8 reason column: 0 is "valid", code i+1 is REASONS[i].
REASONS: tuple[RejectReason, ...] = tuple(RejectReason)
CODE = {reason: i + 1 for i, reason in enumerate(REASONS)}


class Message(NamedTuple):
    """One MQTT message as received; ``mid``/``qos``/``generation`` are for acknowledging.

    A named tuple, not a dataclass: the consumer makes one per message, and a frozen
    dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost about 1 us of CPU
    each, a named tuple of the inbox's tuple a fifth of that (docs/adr/0029)."""

    topic: str
    payload: bytes
    received_ms: int
    mid: int = 0
    qos: int = 1
    #: which MQTT connection delivered it (acks go only to the connection that delivered)
    generation: int = 0


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused message (``index`` None) or a refused reading of it."""

    message: int
    reason: RejectReason
    detail: str
    index: int | None = None


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A valid gateway status message."""

    message: int
    gateway: int
    status: GatewayStatus
    #: stat names not in contract.STAT_TYPES, dropped from ``status`` (counted, never stored)
    dropped_stats: int = 0


@dataclass(frozen=True, kw_only=True)
class Readings:
    """Columns of readings, one row each. ``values`` holds the kind's fields in wire order
    (``contract.KIND_FIELDS``), trailing columns 0 for narrower kinds."""

    message: I32
    index: I32
    sensor: I32
    kind: I8
    ts: I64
    seq: I64
    values: I64

    def __len__(self) -> int:
        return len(self.sensor)

    def take(self, rows: npt.NDArray[np.intp] | Bools) -> Readings:
        """The subset of rows selected by an index array or boolean mask: this very object
        when a mask selects every row (a window with nothing refused is not copied; the
        columns are never written to after decoding)."""
        if rows.dtype == np.bool_ and len(rows) == len(self) and bool(rows.all()):
            return self
        return Readings(
            message=self.message[rows],
            index=self.index[rows],
            sensor=self.sensor[rows],
            kind=self.kind[rows],
            ts=self.ts[rows],
            seq=self.seq[rows],
            values=self.values[rows],
        )


def empty_readings() -> Readings:
    """A Readings with no rows."""
    return Readings(
        message=np.zeros(0, np.int32),
        index=np.zeros(0, np.int32),
        sensor=np.zeros(0, np.int32),
        kind=np.zeros(0, np.int8),
        ts=np.zeros(0, np.int64),
        seq=np.zeros(0, np.int64),
        values=np.zeros((0, MAX_FIELDS), np.int64),
    )


@dataclass(frozen=True, kw_only=True)
class DecodedWindow:
    """Everything a window of messages turned into."""

    readings: Readings
    rejections: list[Rejection]
    statuses: list[StatusUpdate]
    #: messages dropped as duplicates of a batch already stored (or earlier in the window)
    duplicates: list[int] = field(default_factory=list)
    #: (gateway, batch seq, fingerprint) of every batch decoded; remember them once stored
    batch_keys: list[tuple[int, int, int]] = field(default_factory=list)
