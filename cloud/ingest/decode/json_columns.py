"""Columns out of parsed JSON readings of any shape: the general path, which says exactly what
is wrong. It takes what ``json_structs`` refused (a fault somewhere in the message) and the
single readings of direct devices; well-formed batches never reach it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cloud.ingest.decode.rules import (
    ALL_FIELDS,
    CLOCKS,
    EXPECTED,
    KIND_BY_NAME,
    N_EXPECTED,
    ORDER,
    READING_KEYS,
    USED,
    Columns,
    judge,
)
from cloud.ingest.decode.types import I8, I32, I64, Bools, Readings
from cloud.ingest.topology import CityIndex
from contract.payload import MAX_COUNT

_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1
_EMPTY: dict[str, Any] = {}
_MISSING = object()
#: compared element-wise with a column of types; bool is not int here, so JSON true is refused
_INT_TYPE = np.array([int], dtype=object)


def _ints(col: Sequence[Any], lo: int, hi: int) -> tuple[Bools, I64]:
    """(is a JSON integer, value clipped to [lo, hi]) for a column of parsed JSON values.
    Clipping keeps every rule's verdict: anything past the bounds fails the same check."""
    n = len(col)
    types = np.fromiter(map(type, col), dtype=object, count=n)
    ok = np.asarray(types == _INT_TYPE, dtype=np.bool_)
    obj = np.empty(n, dtype=object)
    obj[:] = col
    vals = np.clip(np.where(ok, obj, 0), lo, hi).astype(np.int64)
    return ok, vals


def json_columns(raw: Sequence[Any], index: CityIndex) -> Columns:
    """Columns of parsed JSON readings of any shape (the general, slower path)."""
    n = len(raw)
    is_dict = np.fromiter((type(r) is dict for r in raw), dtype=bool, count=n)
    rs: list[dict[str, Any]] = [r if type(r) is dict else _EMPTY for r in raw]
    extra = np.fromiter((len(r.keys() - READING_KEYS) for r in rs), dtype=np.int64, count=n)
    pos = index.sensor_pos
    sensor = np.fromiter(
        (pos.get(s, -1) if type(s) is str else -2 for s in (r.get("sensor") for r in rs)),
        dtype=np.int32,
        count=n,
    )
    kind = np.fromiter(
        (KIND_BY_NAME.get(k, 0) if type(k) is str else 0 for k in (r.get("kind") for r in rs)),
        dtype=np.int8,
        count=n,
    )
    ts_ok, ts = _ints([r.get("ts") for r in rs], _I64_MIN, _I64_MAX)
    seq_ok, seq = _ints([r.get("seq") for r in rs], -1, _I64_MAX)
    clock_ok = np.fromiter((r.get("clock", "sensor") in CLOCKS for r in rs), bool, count=n)
    vd: list[dict[str, Any]] = [
        v if type(v) is dict else _EMPTY for v in (r.get("values", _MISSING) for r in rs)
    ]
    values_is_dict = np.fromiter((type(r.get("values")) is dict for r in rs), bool, count=n)
    n_values = np.fromiter(map(len, vd), dtype=np.int64, count=n)
    width = len(ALL_FIELDS)
    present = np.zeros((n, width), dtype=bool)
    is_int = np.zeros((n, width), dtype=bool)
    allv = np.zeros((n, width), dtype=np.int64)
    for j, name in enumerate(ALL_FIELDS):  # a loop over field names, not readings
        col = [v.get(name, _MISSING) for v in vd]
        present[:, j] = np.fromiter((c is not _MISSING for c in col), dtype=bool, count=n)
        is_int[:, j], allv[:, j] = _ints(col, -1, MAX_COUNT + 1)
    # From the union of field names to each kind's wire order.
    ocol = np.where(USED[kind], ORDER[kind], 0)
    rows = np.arange(n)[:, None]
    return Columns(
        sensor=sensor,
        kind=kind,
        ts=ts,
        seq=seq,
        values=np.where(USED[kind], allv[rows, ocol], 0),
        field_ok=is_int[rows, ocol] | ~USED[kind],
        shape_bad=~is_dict | (extra > 0) | ~ts_ok | ~seq_ok | ~values_is_dict | ~clock_ok,
        keys_bad=~(present == EXPECTED[kind]).all(axis=1) | (n_values != N_EXPECTED[kind]),
    )


def check_readings(
    raw: Sequence[Any], gateway: I32, index: CityIndex, now_ms: int
) -> tuple[Readings, I8]:
    """Validate parsed readings (any JSON values) column-wise.

    ``gateway`` is the publishing gateway's index per reading. Returns the columns (rows of
    invalid readings hold placeholders) and the reason code per reading: 0 valid, else
    ``REASONS[code - 1]``, chosen by the precedence in the module docstring."""
    n = len(raw)
    c = json_columns(raw, index)
    columns = Readings(
        message=np.zeros(n, np.int32),
        index=np.zeros(n, np.int32),
        sensor=c.sensor,
        kind=c.kind,
        ts=c.ts,
        seq=c.seq,
        values=c.values,
    )
    return columns, judge(c, gateway, index, now_ms)
