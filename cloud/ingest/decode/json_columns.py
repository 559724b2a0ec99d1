"""Columns out of parsed JSON readings: the general path (any shape, says exactly what is
wrong) and the plain path (well-formed batches, pulled out with C-level ``map`` calls)."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from itertools import chain, repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from cloud.ingest.decode.rules import (
    ALL_FIELDS,
    CLOCK_SET,
    CLOCKS,
    EXPECTED,
    FIELD_GETTERS,
    KIND_BY_NAME,
    N_EXPECTED,
    ORDER,
    READING_KEYS,
    USED,
    WIDTH,
    Columns,
    judge,
)
from cloud.ingest.decode.types import I8, I32, I64, Bools, Readings
from cloud.ingest.topology import MAX_FIELDS, CityIndex
from contract import KIND_CODES
from contract.payload import MAX_COUNT

if TYPE_CHECKING:
    from cloud.ingest.decode.envelope import AdmittedJson

_G_SENSOR, _G_KIND, _G_TS, _G_SEQ, _G_VALUES, _G_CLOCK = map(
    itemgetter, ("sensor", "kind", "ts", "seq", "values", "clock")
)
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


class PlainJson:
    """Columns of the window's plain JSON batches, pulled out message by message with C-level
    ``map``/``itemgetter`` into ``array('q')`` buffers (no per-reading Python code) while each
    parsed document is still hot in the cache; numpy views them once per window.

    Plain means: every reading has exactly the keys sensor, kind, ts, seq, values (and
    optionally a valid clock), a registered kind name, values with exactly that kind's fields,
    and ts, seq and every value an integer in int64 range (``array('q')`` refuses anything
    else; JSON ``true``/``false``, which it would take as 1/0, never reach here). :meth:`add`
    refuses other messages whole (the caller uses the general path, which says exactly what is
    wrong). Every later rule (registry, signs, sizes, cross-field, time) is :func:`judge`'s,
    as for every form."""

    def __init__(self) -> None:
        self.n = 0
        #: per message taken: (window index, gateway, readings); the parsed documents are not
        #: kept (freeing each while it is hot is cheaper than freeing them all at the end)
        self.items: list[tuple[int, int, int]] = []
        self.sensors: list[Any] = []
        self.ts = array("q")
        self.seq = array("q")
        #: per kind code: its value rows (flat) and the window rows they belong to
        self.values: dict[int, array[int]] = {c: array("q") for c in KIND_CODES.values()}
        self.rows: dict[int, list[range | list[int]]] = {c: [] for c in KIND_CODES.values()}

    def add(self, m: int, j: AdmittedJson) -> bool:
        """Take message ``m``'s readings if they are plain; False (nothing taken) if not."""
        rs = j.readings
        k = len(rs)
        try:
            lens = set(map(len, rs))
            if lens == {6}:
                if not CLOCK_SET.issuperset(map(_G_CLOCK, rs)):
                    return False
            elif lens != {5}:
                return False
            names = set(map(_G_KIND, rs))
            vals = list(map(_G_VALUES, rs))
            got: list[tuple[int, array[int], range | list[int]]] = []
            rows: range | list[int]
            kinds = list(map(_G_KIND, rs)) if len(names) > 1 else []
            for name in names:
                code = KIND_BY_NAME[name]
                if len(names) == 1:
                    sub, rows = vals, range(self.n, self.n + k)
                else:
                    at = [i for i, kn in enumerate(kinds) if kn == name]
                    sub, rows = [vals[i] for i in at], [self.n + i for i in at]
                if set(map(len, sub)) != {WIDTH[code]}:
                    return False
                flat = array("q", chain.from_iterable(map(FIELD_GETTERS[code], sub)))
                got.append((code, flat, rows))
            ts = array("q", map(_G_TS, rs))
            seq = array("q", map(_G_SEQ, rs))
            sensors = list(map(_G_SENSOR, rs))
        except (KeyError, TypeError, OverflowError):
            # not dicts, a key missing, an unknown or unhashable kind, a value that is not an
            # int64 integer
            return False
        for code, flat, where in got:
            self.values[code] += flat
            self.rows[code].append(where)
        self.sensors += sensors
        self.ts += ts
        self.seq += seq
        self.items.append((m, j.gateway, k))
        self.n += k
        return True

    def columns(self, index: CityIndex) -> Columns:
        """The window's arrays."""
        n = self.n
        kind = np.zeros(n, dtype=np.int8)
        values = np.zeros((n, MAX_FIELDS), dtype=np.int64)
        for code, flat in self.values.items():
            if not flat:
                continue
            width = WIDTH[code]
            parts = self.rows[code]
            if len(parts) == 1 and isinstance(parts[0], range) and len(parts[0]) == n:
                rows: npt.NDArray[np.intp] | slice = slice(None)
            else:
                rows = np.concatenate(
                    [np.arange(r.start, r.stop) if isinstance(r, range) else r for r in parts]
                ).astype(np.intp)
            kind[rows] = code
            values[rows, :width] = np.frombuffer(flat, dtype=np.int64).reshape(-1, width)
        pos = index.sensor_pos
        try:
            sensor = np.fromiter(map(pos.get, self.sensors, repeat(-1)), np.int32, count=n)
        except TypeError:
            # An id that is a JSON array or object cannot even be looked up (found by the fuzz
            # test: it used to fail the whole window). Rare: only then, the per-id path.
            ids = self.sensors
            sensor = np.fromiter(
                (pos.get(s, -1) if type(s) is str else -2 for s in ids), np.int32, n
            )
        unknown = np.flatnonzero(sensor == -1)
        if len(unknown):  # an id that is not a string is a schema fault, not an unknown sensor
            is_str = [type(self.sensors[i]) is str for i in unknown.tolist()]
            sensor[unknown[~np.array(is_str, dtype=bool)]] = -2
        return Columns(
            sensor=sensor,
            kind=kind,
            ts=np.frombuffer(self.ts, dtype=np.int64),
            seq=np.frombuffer(self.seq, dtype=np.int64),
            values=np.clip(values, -1, MAX_COUNT + 1),
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
