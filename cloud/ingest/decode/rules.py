"""The reading rules of ``contract.payload``, applied to whole columns at once.

Every table here is derived from the contract (``KIND_FIELDS``, ``KIND_CODES``, the models'
field sets, ``CROSS_FIELD_RULES``, ``MAX_*``); nothing is copied by hand, so a rule changed in
the contract changes here too (tests/unit/test_ingest_decode.py checks both agree).

Which fault is reported when a reading breaks several rules (first match wins):

1. schema: not an object, unknown keys, sensor/kind/ts/seq/values/clock missing or mistyped;
2. registry: unknown sensor, or a sensor of another gateway (``UNKNOWN_SENSOR``), then a kind
   other than the registry's (``KIND_MISMATCH``);
3. ``check_values`` exactly (key set, then per field in wire order: type, sign, ``MAX_COUNT``;
   then the cross-field rules, in the contract's order);
4. ``check_timestamp`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from cloud.ingest.binary_detail import BinaryRow, binary_detail
from cloud.ingest.decode.types import CODE, I8, I32, I64, Bools
from cloud.ingest.topology import MAX_FIELDS, CityIndex
from contract import (
    KIND_CODES,
    KIND_FIELDS,
    Batch,
    ClockSource,
    Reading,
    RejectReason,
    SensorKind,
    SingleReading,
    check_timestamp,
    check_values,
)
from contract.payload import CROSS_FIELD_RULES, MAX_COUNT, MAX_FUTURE_SKEW_MS, MIN_TIMESTAMP_MS

_SCHEMA = CODE[RejectReason.SCHEMA_VIOLATION]
_NEGATIVE = CODE[RejectReason.NEGATIVE_COUNT]

#: The keys each message form may have: the contract's models' fields.
READING_KEYS = frozenset(Reading.model_fields)
BATCH_KEYS = frozenset(Batch.model_fields)
SINGLE_KEYS = frozenset(SingleReading.model_fields)
CLOCKS = tuple(c.value for c in ClockSource)
KIND_BY_NAME = {kind.value: code for kind, code in KIND_CODES.items()}
#: Every value field name of every kind, each once.
ALL_FIELDS: tuple[str, ...] = tuple(dict.fromkeys(f for fs in KIND_FIELDS.values() for f in fs))
N_KINDS = max(KIND_CODES.values()) + 1
#: kind code -> which of ALL_FIELDS it needs (row 0: no valid kind, needs nothing)
EXPECTED = np.zeros((N_KINDS, len(ALL_FIELDS)), dtype=bool)
#: kind code -> column of ALL_FIELDS for each wire position, -1 past the kind's last field
ORDER = np.full((N_KINDS, MAX_FIELDS), -1, dtype=np.intp)
N_EXPECTED = np.zeros(N_KINDS, dtype=np.int64)
for _kind, _code in KIND_CODES.items():
    for _pos, _name in enumerate(KIND_FIELDS[_kind]):
        EXPECTED[_code, ALL_FIELDS.index(_name)] = True
        ORDER[_code, _pos] = ALL_FIELDS.index(_name)
    N_EXPECTED[_code] = len(KIND_FIELDS[_kind])
USED = ORDER >= 0
#: contract.CROSS_FIELD_RULES as columns: (kind code, wire positions of the parts, wire
#: position of the whole, reason code), in the contract's order
CROSS_FIELD: tuple[tuple[int, list[int], int, int], ...] = tuple(
    (
        KIND_CODES[kind],
        [KIND_FIELDS[kind].index(p) for p in rule.parts],
        KIND_FIELDS[kind].index(rule.whole),
        CODE[rule.reason],
    )
    for kind, rules in CROSS_FIELD_RULES.items()
    for rule in rules
)
#: The same rules for the suspect test: one per distinct (parts, whole) in wire positions,
#: with the kind codes it applies to (bed's occupied <= capacity and queue's served <= issued
#: are both "column 1 <= column 0": one comparison of the columns, not two).
SUSPECT_RULES: tuple[tuple[tuple[int, ...], int, tuple[int, ...]], ...] = tuple(
    (parts, whole, tuple(k for k, p, w, _ in CROSS_FIELD if (tuple(p), w) == (parts, whole)))
    for parts, whole in dict.fromkeys((tuple(p), w) for _, p, w, _ in CROSS_FIELD)
)


@dataclass(kw_only=True, slots=True)
class Columns:
    """Readings as columns before judging: what every payload form is reduced to, so one
    vectorised judge (:func:`judge`) applies the same rules to JSON and binary readings.

    ``sensor``: registry position, -1 for an unknown id, -2 for an id that is not a string;
    ``kind``: code, 0 if invalid; ``values``: wire order, clipped to [-1, MAX_COUNT + 1];
    ``field_ok``: the value at that wire position is an integer (None: all are);
    ``shape_bad``: the reading object breaks the schema (None: none does); ``keys_bad``: the
    value field set is not exactly the kind's (None: all are exact); ``registry_ok``: the
    sensor is known, of the sending gateway, and of a known kind that is the registry's (None:
    not known yet; binary batches know it per sensor table, ``binary_columns``)."""

    sensor: I32
    kind: I8
    ts: I64
    seq: I64
    values: I64
    field_ok: Bools | None = None
    shape_bad: Bools | None = None
    keys_bad: Bools | None = None
    registry_ok: Bools | None = None

    def take(self, rows: npt.NDArray[np.intp]) -> Columns:
        """These rows only."""
        return Columns(
            sensor=self.sensor[rows],
            kind=self.kind[rows],
            ts=self.ts[rows],
            seq=self.seq[rows],
            values=self.values[rows],
            field_ok=None if self.field_ok is None else self.field_ok[rows],
            shape_bad=None if self.shape_bad is None else self.shape_bad[rows],
            keys_bad=None if self.keys_bad is None else self.keys_bad[rows],
            registry_ok=None if self.registry_ok is None else self.registry_ok[rows],
        )


def judge(c: Columns, gateway: I32, index: CityIndex, now_ms: int) -> I8:
    """The reason code per reading (0 valid), by the precedence of the module docstring."""
    # Nearly every reading is valid. A few whole-column tests find the rows that may break a
    # rule (a superset of those that do), and only they are judged by the precedence, which
    # costs several times more per row.
    reason = np.zeros(len(c.sensor), dtype=np.int8)
    rows = np.flatnonzero(_suspects(c, gateway, index, now_ms))
    if len(rows) == len(reason):
        return _by_precedence(c, gateway, index, now_ms)
    if len(rows):
        reason[rows] = _by_precedence(c.take(rows), gateway[rows], index, now_ms)
    return reason


def _suspects(c: Columns, gateway: I32, index: CityIndex, now_ms: int) -> Bools:
    """Rows that break some rule, and perhaps some that break none: every test of
    :func:`_by_precedence`, without the precedence."""
    sensor, kind, values = c.sensor, c.kind, c.values
    bad: Bools = c.seq < 0
    if c.registry_ok is None:
        s = np.maximum(sensor, 0)  # -1 and -2 are suspects anyway
        bad |= (sensor < 0) | (kind == 0)
        bad |= (index.sensor_gateway[s] != gateway) | (index.sensor_kind[s] != kind)
    else:
        bad |= ~c.registry_ok
    # values are clipped to [-1, MAX_COUNT + 1]; a non-zero one past the kind's fields of a
    # binary row makes it a suspect too (keys_bad tells). Seen as unsigned, a negative value
    # is above MAX_COUNT: one comparison per value finds both.
    unsigned = values.astype(np.int64, copy=False).view(np.uint64)
    for j in range(values.shape[1]):  # columns, not rows: numpy's any(axis=1) is 4x slower
        bad |= unsigned[:, j] > MAX_COUNT
    if c.field_ok is not None:
        bad |= ~c.field_ok.all(axis=1)
    if c.shape_bad is not None:
        bad |= c.shape_bad
    if c.keys_bad is not None:
        bad |= c.keys_bad
    for parts, whole, kinds in SUSPECT_RULES:
        total = values[:, parts[0]]
        for part in parts[1:]:
            total = total + values[:, part]
        of_kind = kind == kinds[0]  # int8 comparisons: far cheaper than a table lookup
        for other in kinds[1:]:
            of_kind |= kind == other
        bad |= of_kind & (total > values[:, whole])
    # MIN_TIMESTAMP_MS <= ts <= now + skew as one unsigned comparison (exact under wraparound:
    # the allowed range is far shorter than 2**64)
    span = now_ms + MAX_FUTURE_SKEW_MS - MIN_TIMESTAMP_MS
    if span < 0:
        return np.ones(len(bad), dtype=bool)
    ts = c.ts.astype(np.int64, copy=False)
    bad |= (ts - np.int64(MIN_TIMESTAMP_MS)).view(np.uint64) > np.uint64(span)
    return bad


def _by_precedence(c: Columns, gateway: I32, index: CityIndex, now_ms: int) -> I8:
    """The reason code per reading (0 valid), by the precedence of the module docstring."""
    n = len(c.sensor)
    sensor, kind, values = c.sensor, c.kind, c.values
    reason = np.zeros(n, dtype=np.int8)

    def flag(cond: Bools, code: int) -> None:
        reason[(reason == 0) & cond] = code

    # 1. schema of the reading object
    bad = (sensor == -2) | (kind == 0) | (c.seq < 0)
    flag(bad if c.shape_bad is None else bad | c.shape_bad, _SCHEMA)
    # 2. registry
    known = sensor >= 0
    s = np.where(known, sensor, 0)
    flag(~known | (index.sensor_gateway[s] != gateway), CODE[RejectReason.UNKNOWN_SENSOR])
    flag(index.sensor_kind[s] != kind, CODE[RejectReason.KIND_MISMATCH])
    # 3. check_values: exact key set first
    if c.keys_bad is not None:
        flag(c.keys_bad, _SCHEMA)
    # ...then per field in wire order: type, sign, size; the first faulty field decides
    field_code = np.where(values < 0, _NEGATIVE, np.where(values > MAX_COUNT, _SCHEMA, 0))
    if c.field_ok is not None:
        field_code = np.where(c.field_ok, field_code, _SCHEMA)
    field_code = np.where(USED[kind], field_code, 0).astype(np.int8)
    first = np.argmax(field_code != 0, axis=1)
    faulty = field_code[np.arange(n), first]
    hit = (reason == 0) & (faulty != 0)
    reason[hit] = faulty[hit]
    # ...then cross-field consistency
    # (columns as views and one mask per kind: fancy indexing here cost 15 % of a binary decode)
    of_kind: dict[int, Bools] = {}
    for kind_code, parts, whole, code in CROSS_FIELD:
        if kind_code not in of_kind:
            of_kind[kind_code] = kind == kind_code
        total = values[:, parts[0]]
        for part in parts[1:]:
            total = total + values[:, part]
        flag(of_kind[kind_code] & (total > values[:, whole]), code)
    # 4. check_timestamp (compare without overflow: ts is clipped to int64)
    flag(c.ts > now_ms + MAX_FUTURE_SKEW_MS, CODE[RejectReason.FUTURE_TIMESTAMP])
    flag(c.ts < MIN_TIMESTAMP_MS, CODE[RejectReason.ANCIENT_TIMESTAMP])
    return reason


def reading_detail(raw: Any, reason: RejectReason, now_ms: int) -> str:
    """Human detail for one refused reading; uses the contract's own words where it has some.
    Runs only for refused readings."""
    if isinstance(raw, BinaryRow):
        return binary_detail(raw, reason, now_ms)
    if not isinstance(raw, dict):
        return "a reading must be a JSON object"
    kind_name, values = raw.get("kind"), raw.get("values")
    if reason is RejectReason.UNKNOWN_SENSOR:
        return f"sensor {raw.get('sensor')!r} is not registered to this gateway"
    if reason is RejectReason.KIND_MISMATCH:
        return f"sensor {raw.get('sensor')!r} is not a {kind_name!r} sensor"
    if reason in (RejectReason.FUTURE_TIMESTAMP, RejectReason.ANCIENT_TIMESTAMP):
        broken = check_timestamp(int(raw["ts"]), now_ms)
        return broken[1] if broken else reason.value
    # type first: a kind that is a JSON array or object is unhashable (used to fail the window)
    if type(kind_name) is str and kind_name in KIND_BY_NAME and isinstance(values, dict):
        broken = check_values(SensorKind(kind_name), values)
        if broken is not None and broken[0] is reason:
            return broken[1]
    return f"reading keys {sorted(raw)!r} do not follow the schema"
