"""JSON batches decoded by the native column decoder (``_jsoncols.c``, docs/adr/0034): the
readings written straight from the bytes into the window's column buffers, no Python object
per reading.

It is the first of three filters: what it takes, it takes whole and exactly as
``json_structs`` + ``struct_columns`` would (the same sensor position, kind code, ts, seq and
values in wire order clipped to [-1, MAX_COUNT + 1]); anything outside its strict subset of
JSON (an escape or a non-ASCII byte in a string, a fraction or exponent, an integer beyond
int64, a duplicate key, an unknown key or kind, a values set not exactly the kind's, more
readings than the contract allows) is "not mine" and goes, whole, to msgspec's struct decoder,
which hands what it refuses to the general path. Every rule after the types and key sets is
:func:`rules.judge`'s, as for every form.

The extension is optional (pyproject's ``ext-modules``): when it was not built, ``ENABLED`` is
False and every batch takes the msgspec path. Tests flip ``ENABLED`` to compare both.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import orjson

from cloud.ingest.decode.rules import Columns
from cloud.ingest.decode.types import I8, I32, I64, Message
from cloud.ingest.topology import MAX_FIELDS, CityIndex, PerIndex
from contract import KIND_CODES, KIND_FIELDS, ClockSource
from contract.payload import MAX_COUNT, MAX_PAYLOAD_BYTES, MAX_READINGS_PER_BATCH, SCHEMA_VERSION

try:
    from cloud.ingest.decode import _jsoncols  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler: the msgspec path alone (ADR 0034)
    _jsoncols = None

log = logging.getLogger(__name__)

#: The batch's and the reading's keys, in the roles the C decoder gives them by position
#: (tests check them against contract.Batch and contract.Reading, like json_structs' fields).
ENVELOPE_KEYS = ("v", "gw", "seq", "sent", "readings", "clock_offset_ms")
READING_KEYS = ("sensor", "kind", "ts", "seq", "values", "clock")

if _jsoncols is not None:
    _jsoncols.configure(
        envelope_keys=ENVELOPE_KEYS,
        reading_keys=READING_KEYS,
        kinds=[(kind.value, code, KIND_FIELDS[kind]) for kind, code in KIND_CODES.items()],
        clocks=tuple(c.value for c in ClockSource),
        width=MAX_FIELDS,
        max_readings=MAX_READINGS_PER_BATCH,
        max_payload=MAX_PAYLOAD_BYTES,
        version=SCHEMA_VERSION,
        lo=-1,
        hi=MAX_COUNT + 1,
    )

#: The module switch: False sends every batch to the msgspec path (tests flip it).
ENABLED = _jsoncols is not None
#: Which decoder takes well-formed JSON batches in this process.
DECODER = "native (_jsoncols)" if ENABLED else "msgspec (the native decoder is not built)"
_logged = False

#: The fewest bytes a reading the decoder takes can have: a window's payload bytes over this
#: bound its readings, which sizes the buffers once (the C code refuses a row past them anyway).
MIN_READING_BYTES = min(
    len(orjson.dumps({**dict.fromkeys(READING_KEYS[:4], 0), "kind": k.value, "sensor": "",
                      "values": dict.fromkeys(f, 0)}))
    for k, f in KIND_FIELDS.items()
)  # fmt: skip

#: ``index.sensor_pos`` as the C decoder's own hash table, built once per index
native_table: PerIndex[object] = PerIndex(lambda index: _jsoncols.Table(index.sensor_pos))


class NativeBatch(NamedTuple):
    """What the envelope needs of a batch the native decoder took; its readings are in the
    window's buffers, rows ``NativeColumns.n`` on, until the next decode."""

    gw: str
    seq: int
    n: int


class NativeColumns:
    """The columns of a window's natively decoded batches, in the order they were added."""

    def __init__(self, *, index: CityIndex, messages: Sequence[Message]) -> None:
        self.index = index
        self.messages = messages
        self.n = 0
        #: per message taken: (window index, gateway, readings)
        self.items: list[tuple[int, int, int]] = []
        self._table: object = None
        self._sensor: I32 = np.empty(0, np.int32)
        self._kind: I8 = np.empty(0, np.int8)
        self._ts: I64 = np.empty(0, np.int64)
        self._seq: I64 = np.empty(0, np.int64)
        self._values: I64 = np.empty((0, MAX_FIELDS), np.int64)

    def decode(self, payload: bytes) -> NativeBatch | None:
        """The batch in ``payload`` if the native decoder takes it, its readings written after
        those added so far (kept only if :meth:`add` follows); None: not mine."""
        if self._table is None:  # the window's first batch: buffers for all it can hold
            self._table = native_table(self.index)
            rows = sum(len(m.payload) for m in self.messages) // MIN_READING_BYTES + 1
            self._sensor = np.empty(rows, np.int32)
            self._kind = np.empty(rows, np.int8)
            self._ts = np.empty(rows, np.int64)
            self._seq = np.empty(rows, np.int64)
            self._values = np.empty((rows, MAX_FIELDS), np.int64)
        got = _jsoncols.decode(
            payload,
            self._table,
            self._sensor,
            self._kind,
            self._ts,
            self._seq,
            self._values,
            self.n,
        )
        return None if got is None else NativeBatch(*got)

    def add(self, m: int, gateway: int, n: int) -> None:
        """Keep message ``m``'s ``n`` readings, the last :meth:`decode` wrote."""
        self.items.append((m, gateway, n))
        self.n += n

    def columns(self) -> Columns:
        """The window's arrays so far (views of the buffers: never written again)."""
        n = self.n
        return Columns(
            sensor=self._sensor[:n],
            kind=self._kind[:n],
            ts=self._ts[:n],
            seq=self._seq[:n],
            values=self._values[:n],
        )


def native_columns(index: CityIndex, messages: Sequence[Message]) -> NativeColumns | None:
    """A window's native columns, or None when the native decoder is off or not built."""
    global _logged  # noqa: PLW0603 - one line in the log per process, not per window
    if not _logged:
        _logged = True
        log.info("JSON batches are decoded by %s", DECODER)
    return NativeColumns(index=index, messages=messages) if ENABLED else None
