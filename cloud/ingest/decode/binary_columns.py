"""Columns of binary batches: each sensor table resolved against the registry once, and a
window's batches copied straight into one set of preallocated columns.

A gateway sends the same sensor table in every batch, and ``contract.binary`` hands out the
same tuple for it each time; so the per-table work (looking every id up in the registry,
checking its gateway and kind) is done once per table, not once per batch or per reading.
Per reading only array copies and gathers are left: every column is written once, into its
place in the window, with no per-batch column and no concatenation after.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import numpy.typing as npt

from cloud.ingest.decode.rules import N_EXPECTED, N_KINDS, USED, Columns
from cloud.ingest.decode.types import I8, I32, Bools
from cloud.ingest.topology import MAX_FIELDS, CityIndex
from contract import BinaryBatch
from contract.payload import MAX_COUNT

#: more distinct tables than gateways in any city: a spoofing flood, not a city (start over)
_MAX_TABLES = 20_000


@dataclass(frozen=True, slots=True)
class ResolvedTable:
    """One sensor table against one registry and one sending gateway, per table entry."""

    #: the table as the batch gave it (held, so the cache key, the ids' ``id()``, cannot be
    #: reused; ``contract.binary`` hands out the same objects for a gateway's same table)
    ids: tuple[str, ...]
    wire_kinds: npt.NDArray[np.uint8]
    index: CityIndex
    gateway: int
    #: registry position, -1 for an unknown id
    pos: I32
    #: kind code, 0 for one the contract does not know
    kind: I8
    #: value fields the kind has (a non-zero value past them breaks the schema)
    n_fields: I8
    #: known sensor, of this gateway, of a known kind that is the registry's: every registry
    #: rule (and the kind's schema rule) holds for a reading of this entry
    registry_ok: Bools
    #: the fewest fields of any entry's kind: no entry has a field past it to check
    narrowest: int


_TABLES: dict[int, ResolvedTable] = {}


def resolve_table(b: BinaryBatch, gateway: int, index: CityIndex) -> ResolvedTable:
    """The sensor table of ``b`` resolved against ``index`` for a batch sent by ``gateway``
    (remembered: the next batch with the same table object costs a dict lookup)."""
    got = _TABLES.get(id(b.sensor_ids))
    if (
        got is not None
        and got.ids is b.sensor_ids
        and got.wire_kinds is b.sensor_kinds
        and got.index is index
        and got.gateway == gateway
    ):
        return got
    ids = b.sensor_ids
    pos = np.fromiter(map(index.sensor_pos.get, ids, repeat(-1)), np.int32, len(ids))
    kind = np.where(b.sensor_kinds < N_KINDS, b.sensor_kinds, 0).astype(np.int8)
    known = pos >= 0
    at = np.where(known, pos, 0)
    registry_ok = (
        known
        & (kind != 0)
        & (index.sensor_gateway[at] == gateway)
        & (index.sensor_kind[at] == kind)
    )
    table = ResolvedTable(
        ids=ids,
        wire_kinds=b.sensor_kinds,
        index=index,
        gateway=gateway,
        pos=pos,
        kind=kind,
        n_fields=N_EXPECTED[kind].astype(np.int8),
        registry_ok=registry_ok,
        narrowest=int(N_EXPECTED[kind].min()) if len(kind) else MAX_FIELDS,
    )
    if len(_TABLES) >= _MAX_TABLES:
        _TABLES.clear()
    _TABLES[id(ids)] = table
    return table


def binary_window_columns(batches: Sequence[tuple[BinaryBatch, int]], index: CityIndex) -> Columns:
    """Columns of a window's binary batches (each with the gateway that sent it), in order.
    The same columns as one :func:`binary_columns` per batch concatenated, plus
    ``registry_ok`` (tests/unit/test_ingest_binary_window.py compares them)."""
    n = sum(len(b) for b, _ in batches)
    sensor = np.empty(n, np.int32)
    kind = np.empty(n, np.int8)
    ts = np.empty(n, np.int64)
    seq = np.empty(n, np.int64)
    # Column-major: every rule reads a whole column at a time (a contiguous column compares
    # about 4x faster than one strided through rows of 5).
    values = np.empty((n, MAX_FIELDS), np.int64, order="F")
    n_fields = np.empty(n, np.int8)
    narrowest = MAX_FIELDS
    clock_bad = np.empty(n, bool)
    registry_ok = np.empty(n, bool)
    start = 0
    for b, gateway in batches:
        end = start + len(b)
        t = resolve_table(b, gateway, index)
        rows = b.sensor
        np.take(t.pos, rows, out=sensor[start:end])
        np.take(t.kind, rows, out=kind[start:end])
        np.take(t.n_fields, rows, out=n_fields[start:end])
        narrowest = min(narrowest, t.narrowest)
        np.take(t.registry_ok, rows, out=registry_ok[start:end])
        ts[start:end] = b.ts
        seq[start:end] = b.seq_col
        values[start:end] = b.values
        np.greater(b.clock, 1, out=clock_bad[start:end])
        start = end
    return Columns(
        sensor=sensor,
        kind=kind,
        ts=ts,
        seq=seq,
        values=_clip(values),
        keys_bad=_past_fields(values, n_fields, narrowest),
        shape_bad=clock_bad,
        registry_ok=registry_ok,
    )


def binary_columns(b: BinaryBatch, index: CityIndex) -> Columns:
    """Columns of one binary batch (its sensor table resolved against the registry): the
    reference :func:`binary_window_columns` is held to."""
    pos = index.sensor_pos
    table_pos = np.fromiter(map(pos.get, b.sensor_ids, repeat(-1)), np.int32, len(b.sensor_ids))
    table_kind = np.where(b.sensor_kinds < N_KINDS, b.sensor_kinds, 0).astype(np.int8)
    kind = table_kind[b.sensor]
    values = np.clip(b.values, -1, MAX_COUNT + 1).astype(np.int64)
    return Columns(
        sensor=table_pos[b.sensor],
        kind=kind,
        ts=b.ts,
        seq=b.seq_col.astype(np.int64),
        values=values,
        # a non-zero value past the kind's fields is the binary form of an unknown JSON key
        keys_bad=(b.values != 0).any(axis=1, where=~USED[kind]),
        shape_bad=b.clock > 1,
    )


def _past_fields(values: npt.NDArray[np.int64], n_fields: I8, narrowest: int) -> Bools:
    """Rows with a non-zero value past their kind's fields (before or after clipping: clipping
    to [-1, MAX_COUNT + 1] keeps zero zero and non-zero non-zero). Only the columns some row
    may not use are read: ``narrowest`` is the fewest fields of any row's kind."""
    bad = np.zeros(len(values), bool)
    for j in range(narrowest, values.shape[1]):  # columns, not rows: any(axis=1) is slower
        bad |= (values[:, j] != 0) & (n_fields <= j)
    return bad


def _clip(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``values`` clipped to [-1, MAX_COUNT + 1] in place (so no sum of fields overflows)."""
    np.clip(values, -1, MAX_COUNT + 1, out=values)
    return values
