"""Columns of the window's batches that ``json_structs`` decoded: no per-reading Python code,
only C-level ``map``/``attrgetter`` over the structs into ``numpy.fromiter``.

Readings are pulled out in chunks of a few hundred, as soon as a message's structs are decoded:
while they are still in the CPU's cache (chunks of 4 096 cost a few % more per reading, ADR
0030), and so that a window never holds all its readings as objects. What needs no
Python objects (values spread into the kind's columns, clipped) is done once per window on
the joined columns. Every rule except the contract's types and key sets (which msgspec
checked) is :func:`rules.judge`'s, as for every form.

A reading integer numpy cannot hold (beyond int64: msgspec does not bound them, for speed)
makes its message ``refused``: the window sends it whole to the general path, which judges it
exactly as it did when the struct decoder refused such a message itself.
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
from cloud.ingest.topology import MAX_FIELDS, CityIndex, PerIndex
from contract.payload import MAX_COUNT

#: readings per chunk: a chunk is taken as soon as this many wait (a batch of 500 alone), so
#: its structs are read while still cached; smaller messages share a chunk
CHUNK = 256
_SENSOR, _TS, _SEQ, _VALUES = map(attrgetter, ("sensor", "ts", "seq", "values"))
#: fields per kind code (row 0, no kind, has none)
_WIDTH = USED.sum(axis=1)


def _sensor_table(index: CityIndex) -> dict[str, int]:
    """``index.sensor_pos`` with keys of its own, allocated together.

    A decoded sensor id is a new string, so every lookup compares it with the dict's key
    string. The registry's id strings lie wherever the YAML loader left them (megabytes apart),
    so on a large registry that comparison missed the CPU's cache on nearly every reading:
    with keys allocated together the lookup cost less than half (ADR 0030)."""
    return {sid.encode().decode(): pos for sid, pos in index.sensor_pos.items()}


#: :func:`_sensor_table` of an index, built once per index
sensor_table = PerIndex(_sensor_table)


class StructColumns:
    """The columns of a window's struct-decoded batches, in the order they were added."""

    def __init__(self, *, index: CityIndex) -> None:
        self.index = index
        self.n = 0
        #: per message taken: (window index, gateway, readings)
        self.items: list[tuple[int, int, int]] = []
        #: window indices of the messages taken whose integers do not fit int64, in order
        self.refused: list[int] = []
        self._pending: list[Any] = []
        #: how many of ``items`` (the last ones) have their readings in ``_pending``
        self._pending_items = 0
        self._sensor_pos = sensor_table(index)
        #: per chunk: sensor, kind, ts, seq and the values flattened in wire order
        self._chunks: list[tuple[I32, I8, I64, I64, I64]] = []

    def add(self, m: int, gateway: int, readings: list[Any]) -> None:
        """Take message ``m``'s readings (structs of ``json_structs``)."""
        self.items.append((m, gateway, len(readings)))
        self.n += len(readings)
        self._pending += readings
        self._pending_items += 1
        if len(self._pending) >= CHUNK:
            self._flush()

    def finish(self) -> None:
        """Take the readings still waiting, so that ``refused`` is complete."""
        if self._pending:
            self._flush()

    def _flush(self) -> None:
        rs, self._pending = self._pending, []
        waiting, self._pending_items = self._pending_items, 0
        try:
            self._chunks.append(self._chunk(rs))
        except OverflowError:
            self._flush_each(rs, waiting)

    def _chunk(self, rs: list[Any]) -> tuple[I32, I8, I64, I64, I64]:
        k = len(rs)
        table = self._sensor_pos
        try:  # every sensor registered, nearly always: no default to pass per reading
            sensor = np.fromiter(map(table.__getitem__, map(_SENSOR, rs)), np.int32, k)
        except KeyError:  # -1: unknown, which judge refuses
            sensor = np.fromiter(map(table.get, map(_SENSOR, rs), repeat(-1)), np.int32, k)
        return (
            sensor,
            np.fromiter(map(KIND_OF_TYPE.__getitem__, map(type, rs)), np.int8, count=k),
            np.fromiter(map(_TS, rs), np.int64, count=k),
            np.fromiter(map(_SEQ, rs), np.int64, count=k),
            np.fromiter(chain.from_iterable(map(astuple, map(_VALUES, rs))), np.int64),
        )

    def _flush_each(self, rs: list[Any], waiting: int) -> None:
        """The last ``waiting`` messages' readings ``rs`` one message at a time: a message
        with an integer beyond int64 leaves ``items`` for ``refused``."""
        kept = self.items[: len(self.items) - waiting]
        start = 0
        for item in self.items[len(self.items) - waiting :]:
            m, _, k = item
            try:
                self._chunks.append(self._chunk(rs[start : start + k]))
            except OverflowError:
                self.refused.append(m)
                self.n -= k
            else:
                kept.append(item)
            start += k
        self.items = kept

    def columns(self) -> Columns:
        """The window's arrays (of the messages not ``refused``)."""
        self.finish()
        parts = self._chunks
        if len(parts) == 1:
            sensor, kind, ts, seq, flat = parts[0]
        else:
            sensor, kind, ts, seq, flat = (np.concatenate(c) for c in zip(*parts, strict=True))
        # Each kind's values, flattened in wire order, fill the row's first WIDTH columns:
        # a boolean mask assigns in row-major order, which is exactly that order. (take, not
        # USED[kind]: numpy's fancy indexing of rows cost 5x more here.)
        values = np.zeros((len(kind), MAX_FIELDS), dtype=np.int64)
        values[USED.take(kind, axis=0)] = flat
        np.clip(values, -1, MAX_COUNT + 1, out=values)
        return Columns(sensor=sensor, kind=kind, ts=ts, seq=seq, values=values)
