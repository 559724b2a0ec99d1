"""Columns of the window's batches that ``json_structs`` decoded: no per-reading Python code,
only C-level ``map``/``attrgetter`` over the structs into ``numpy.fromiter``.

Readings are pulled out in chunks of a few thousand (a chunk's structs are freed as soon as
its columns exist, so a window never holds all its readings as objects, and the fixed cost of
each ``fromiter`` is spread over a chunk, not paid per message). Every rule except the
contract's types and key sets (which msgspec checked) is :func:`rules.judge`'s, as for every
form.
"""

from __future__ import annotations

from itertools import chain, repeat
from operator import attrgetter
from typing import Any

import numpy as np
from msgspec.structs import astuple

from cloud.ingest.decode.json_structs import KIND_OF_TYPE
from cloud.ingest.decode.rules import USED, Columns
from cloud.ingest.decode.types import I8, I32, I64
from cloud.ingest.topology import MAX_FIELDS, CityIndex
from contract.payload import MAX_COUNT

#: readings per chunk: large enough that a chunk's fixed cost is noise, small enough that its
#: structs stay in the cache and a window's RSS does not grow with its readings
CHUNK = 4096
_SENSOR, _TS, _SEQ, _VALUES = map(attrgetter, ("sensor", "ts", "seq", "values"))
#: fields per kind code (row 0, no kind, has none)
_WIDTH = USED.sum(axis=1)


class StructColumns:
    """The columns of a window's struct-decoded batches, in the order they were added."""

    def __init__(self, *, index: CityIndex) -> None:
        self.index = index
        self.n = 0
        #: per message taken: (window index, gateway, readings)
        self.items: list[tuple[int, int, int]] = []
        self._pending: list[Any] = []
        self._chunks: list[tuple[I32, I8, I64, I64, I64]] = []

    def add(self, m: int, gateway: int, readings: list[Any]) -> None:
        """Take message ``m``'s readings (structs of ``json_structs``)."""
        self.items.append((m, gateway, len(readings)))
        self.n += len(readings)
        self._pending += readings
        if len(self._pending) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        rs, self._pending = self._pending, []
        k = len(rs)
        kind = np.fromiter(map(KIND_OF_TYPE.__getitem__, map(type, rs)), np.int8, count=k)
        # Each kind's values, flattened in wire order, fill the row's first WIDTH columns:
        # a boolean mask assigns in row-major order, which is exactly that order.
        flat = np.fromiter(
            chain.from_iterable(map(astuple, map(_VALUES, rs))),
            np.int64,
            count=int(_WIDTH[kind].sum()),
        )
        values = np.zeros((k, MAX_FIELDS), dtype=np.int64)
        values[USED[kind]] = flat
        pos = self.index.sensor_pos
        self._chunks.append(
            (
                np.fromiter(map(pos.get, map(_SENSOR, rs), repeat(-1)), np.int32, count=k),
                kind,
                np.fromiter(map(_TS, rs), np.int64, count=k),
                np.fromiter(map(_SEQ, rs), np.int64, count=k),
                np.clip(values, -1, MAX_COUNT + 1),
            )
        )

    def columns(self) -> Columns:
        """The window's arrays."""
        if self._pending:
            self._flush()
        parts = self._chunks
        if len(parts) == 1:
            sensor, kind, ts, seq, values = parts[0]
        else:
            sensor, kind, ts, seq, values = (np.concatenate(c) for c in zip(*parts, strict=True))
        return Columns(sensor=sensor, kind=kind, ts=ts, seq=seq, values=values)
