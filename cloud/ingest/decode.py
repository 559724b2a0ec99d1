"""Decode a flush window of MQTT messages into numpy columns, and validate them vectorised.

Per message: ``contract.load_json`` + ``contract.check_version`` and the batch envelope
(version, gateway, sizes). Per reading the only Python work is pulling the columns out of the
parsed JSON; every rule of ``contract.payload`` (``check_values``, ``check_timestamp``, the
``MAX_*`` constants) is then applied to whole columns at once.

Which fault is reported when a reading breaks several rules (first match wins):

1. schema: not an object, unknown keys, sensor/kind/ts/seq/values/clock missing or mistyped;
2. registry: unknown sensor, or a sensor of another gateway (``UNKNOWN_SENSOR``), then a kind
   other than the registry's (``KIND_MISMATCH``);
3. ``check_values`` exactly (key set, then per field in wire order: type, sign, ``MAX_COUNT``;
   then cross-field rules);
4. ``check_timestamp`` exactly.

Batch-level faults (JSON, version, envelope, unknown gateway, topic mismatch) reject the whole
message; reading-level faults reject only that reading.
"""

from __future__ import annotations

import gc
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import ValidationError

from cloud.ingest.binary_detail import BinaryRow, binary_detail
from cloud.ingest.topology import MAX_FIELDS, CityIndex
from contract import (
    KIND_CODES,
    KIND_FIELDS,
    MAX_READINGS_PER_BATCH,
    BinaryBatch,
    Channel,
    GatewayStatus,
    PayloadError,
    RejectReason,
    SensorKind,
    TopicError,
    check_timestamp,
    check_values,
    check_version,
    decode_binary_batch,
    is_binary,
    known_stats,
    load_json,
    readings_section,
    topics,
)
from contract.payload import MAX_COUNT, MAX_FUTURE_SKEW_MS, MIN_TIMESTAMP_MS

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
I8 = npt.NDArray[np.int8]
Bools = npt.NDArray[np.bool_]

#: Reason codes in the int8 reason column: 0 is "valid", code i+1 is REASONS[i].
REASONS: tuple[RejectReason, ...] = tuple(RejectReason)
_CODE = {reason: i + 1 for i, reason in enumerate(REASONS)}
_SCHEMA = _CODE[RejectReason.SCHEMA_VIOLATION]
_NEGATIVE = _CODE[RejectReason.NEGATIVE_COUNT]
_EXCEEDS = _CODE[RejectReason.OCCUPIED_EXCEEDS_CAPACITY]

_READING_KEYS = frozenset({"sensor", "kind", "ts", "seq", "values", "clock"})
_BATCH_KEYS = frozenset({"v", "gw", "seq", "sent", "clock_offset_ms", "readings"})
_SINGLE_KEYS = frozenset({"v", "sensor", "kind", "ts", "seq", "values"})
_CLOCKS = ("sensor", "gateway")
_KIND_BY_NAME = {kind.value: code for kind, code in KIND_CODES.items()}
#: Every value field name of every kind, each once.
_ALL_FIELDS: tuple[str, ...] = tuple(dict.fromkeys(f for fs in KIND_FIELDS.values() for f in fs))
_N_KINDS = max(KIND_CODES.values()) + 1
#: kind code -> which of _ALL_FIELDS it needs (row 0: no valid kind, needs nothing)
_EXPECTED = np.zeros((_N_KINDS, len(_ALL_FIELDS)), dtype=bool)
#: kind code -> column of _ALL_FIELDS for each wire position, -1 past the kind's last field
_ORDER = np.full((_N_KINDS, MAX_FIELDS), -1, dtype=np.intp)
_N_EXPECTED = np.zeros(_N_KINDS, dtype=np.int64)
for _kind, _code in KIND_CODES.items():
    for _pos, _name in enumerate(KIND_FIELDS[_kind]):
        _EXPECTED[_code, _ALL_FIELDS.index(_name)] = True
        _ORDER[_code, _pos] = _ALL_FIELDS.index(_name)
    _N_EXPECTED[_code] = len(KIND_FIELDS[_kind])
_USED = _ORDER >= 0
_G_SENSOR, _G_KIND, _G_TS, _G_SEQ, _G_VALUES, _G_CLOCK = map(
    itemgetter, ("sensor", "kind", "ts", "seq", "values", "clock")
)
_CLOCK_SET = frozenset(("sensor", "gateway"))
#: kind code -> pulls the kind's fields, in wire order, out of a values dict
_FIELD_GETTERS = {code: itemgetter(*KIND_FIELDS[kind]) for kind, code in KIND_CODES.items()}
_WIDTH = {code: len(KIND_FIELDS[kind]) for kind, code in KIND_CODES.items()}
_BED = KIND_CODES[SensorKind.BED]
_QUEUE = KIND_CODES[SensorKind.QUEUE]
_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1
_EMPTY: dict[str, Any] = {}
_MISSING = object()
#: compared element-wise with a column of types; bool is not int here, so JSON true is refused
_INT_TYPE = np.array([int], dtype=object)


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message as received; ``mid``/``qos``/``generation`` are for acknowledging."""

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
        """The subset of rows selected by an index array or boolean mask."""
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


@dataclass(kw_only=True, slots=True)
class _Columns:
    """Readings as columns before judging: what every payload form is reduced to, so one
    vectorised judge (:func:`_judge`) applies the same rules to JSON and binary readings.

    ``sensor``: registry position, -1 for an unknown id, -2 for an id that is not a string;
    ``kind``: code, 0 if invalid; ``values``: wire order, clipped to [-1, MAX_COUNT + 1];
    ``field_ok``: the value at that wire position is an integer (None: all are);
    ``shape_bad``: the reading object breaks the schema (None: none does); ``keys_bad``: the
    value field set is not exactly the kind's (None: all are exact)."""

    sensor: I32
    kind: I8
    ts: I64
    seq: I64
    values: I64
    field_ok: Bools | None = None
    shape_bad: Bools | None = None
    keys_bad: Bools | None = None


def _json_columns(raw: Sequence[Any], index: CityIndex) -> _Columns:
    """Columns of parsed JSON readings of any shape (the general, slower path)."""
    n = len(raw)
    is_dict = np.fromiter((type(r) is dict for r in raw), dtype=bool, count=n)
    rs: list[dict[str, Any]] = [r if type(r) is dict else _EMPTY for r in raw]
    extra = np.fromiter((len(r.keys() - _READING_KEYS) for r in rs), dtype=np.int64, count=n)
    pos = index.sensor_pos
    sensor = np.fromiter(
        (pos.get(s, -1) if type(s) is str else -2 for s in (r.get("sensor") for r in rs)),
        dtype=np.int32,
        count=n,
    )
    kind = np.fromiter(
        (_KIND_BY_NAME.get(k, 0) if type(k) is str else 0 for k in (r.get("kind") for r in rs)),
        dtype=np.int8,
        count=n,
    )
    ts_ok, ts = _ints([r.get("ts") for r in rs], _I64_MIN, _I64_MAX)
    seq_ok, seq = _ints([r.get("seq") for r in rs], -1, _I64_MAX)
    clock_ok = np.fromiter((r.get("clock", "sensor") in _CLOCKS for r in rs), bool, count=n)
    vd: list[dict[str, Any]] = [
        v if type(v) is dict else _EMPTY for v in (r.get("values", _MISSING) for r in rs)
    ]
    values_is_dict = np.fromiter((type(r.get("values")) is dict for r in rs), bool, count=n)
    n_values = np.fromiter(map(len, vd), dtype=np.int64, count=n)
    width = len(_ALL_FIELDS)
    present = np.zeros((n, width), dtype=bool)
    is_int = np.zeros((n, width), dtype=bool)
    allv = np.zeros((n, width), dtype=np.int64)
    for j, name in enumerate(_ALL_FIELDS):  # a loop over field names, not readings
        col = [v.get(name, _MISSING) for v in vd]
        present[:, j] = np.fromiter((c is not _MISSING for c in col), dtype=bool, count=n)
        is_int[:, j], allv[:, j] = _ints(col, -1, MAX_COUNT + 1)
    # From the union of field names to each kind's wire order.
    ocol = np.where(_USED[kind], _ORDER[kind], 0)
    rows = np.arange(n)[:, None]
    return _Columns(
        sensor=sensor,
        kind=kind,
        ts=ts,
        seq=seq,
        values=np.where(_USED[kind], allv[rows, ocol], 0),
        field_ok=is_int[rows, ocol] | ~_USED[kind],
        shape_bad=~is_dict | (extra > 0) | ~ts_ok | ~seq_ok | ~values_is_dict | ~clock_ok,
        keys_bad=~(present == _EXPECTED[kind]).all(axis=1) | (n_values != _N_EXPECTED[kind]),
    )


class _PlainJson:
    """Columns of the window's plain JSON batches, pulled out message by message with C-level
    ``map``/``itemgetter`` into ``array('q')`` buffers (no per-reading Python code) while each
    parsed document is still hot in the cache; numpy views them once per window.

    Plain means: every reading has exactly the keys sensor, kind, ts, seq, values (and
    optionally a valid clock), a registered kind name, values with exactly that kind's fields,
    and ts, seq and every value an integer in int64 range (``array('q')`` refuses anything
    else; JSON ``true``/``false``, which it would take as 1/0, never reach here). :meth:`add`
    refuses other messages whole (the caller uses the general path, which says exactly what is
    wrong). Every later rule (registry, signs, sizes, cross-field, time) is :func:`_judge`'s,
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

    def add(self, m: int, j: _Json) -> bool:
        """Take message ``m``'s readings if they are plain; False (nothing taken) if not."""
        rs = j.readings
        k = len(rs)
        try:
            lens = set(map(len, rs))
            if lens == {6}:
                if not _CLOCK_SET.issuperset(map(_G_CLOCK, rs)):
                    return False
            elif lens != {5}:
                return False
            names = set(map(_G_KIND, rs))
            vals = list(map(_G_VALUES, rs))
            got: list[tuple[int, array[int], range | list[int]]] = []
            rows: range | list[int]
            kinds = list(map(_G_KIND, rs)) if len(names) > 1 else []
            for name in names:
                code = _KIND_BY_NAME[name]
                if len(names) == 1:
                    sub, rows = vals, range(self.n, self.n + k)
                else:
                    at = [i for i, kn in enumerate(kinds) if kn == name]
                    sub, rows = [vals[i] for i in at], [self.n + i for i in at]
                if set(map(len, sub)) != {_WIDTH[code]}:
                    return False
                flat = array("q", chain.from_iterable(map(_FIELD_GETTERS[code], sub)))
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

    def columns(self, index: CityIndex) -> _Columns:
        """The window's arrays."""
        n = self.n
        kind = np.zeros(n, dtype=np.int8)
        values = np.zeros((n, MAX_FIELDS), dtype=np.int64)
        for code, flat in self.values.items():
            if not flat:
                continue
            width = _WIDTH[code]
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
        return _Columns(
            sensor=sensor,
            kind=kind,
            ts=np.frombuffer(self.ts, dtype=np.int64),
            seq=np.frombuffer(self.seq, dtype=np.int64),
            values=np.clip(values, -1, MAX_COUNT + 1),
        )


def _judge(c: _Columns, gateway: I32, index: CityIndex, now_ms: int) -> I8:
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
    flag(~known | (index.sensor_gateway[s] != gateway), _CODE[RejectReason.UNKNOWN_SENSOR])
    flag(index.sensor_kind[s] != kind, _CODE[RejectReason.KIND_MISMATCH])
    # 3. check_values: exact key set first
    if c.keys_bad is not None:
        flag(c.keys_bad, _SCHEMA)
    # ...then per field in wire order: type, sign, size; the first faulty field decides
    field_code = np.where(values < 0, _NEGATIVE, np.where(values > MAX_COUNT, _SCHEMA, 0))
    if c.field_ok is not None:
        field_code = np.where(c.field_ok, field_code, _SCHEMA)
    field_code = np.where(_USED[kind], field_code, 0).astype(np.int8)
    first = np.argmax(field_code != 0, axis=1)
    faulty = field_code[np.arange(n), first]
    hit = (reason == 0) & (faulty != 0)
    reason[hit] = faulty[hit]
    # ...then cross-field consistency
    bed = kind == _BED
    flag(bed & (values[:, 1] > values[:, 0]), _EXCEEDS)
    flag(bed & (values[:, 2] + values[:, 3] > values[:, 1]), _EXCEEDS)
    flag((kind == _QUEUE) & (values[:, 1] > values[:, 0]), _SCHEMA)
    # 4. check_timestamp (compare without overflow: ts is clipped to int64)
    flag(c.ts > now_ms + MAX_FUTURE_SKEW_MS, _CODE[RejectReason.FUTURE_TIMESTAMP])
    flag(c.ts < MIN_TIMESTAMP_MS, _CODE[RejectReason.ANCIENT_TIMESTAMP])
    return reason


def check_readings(
    raw: Sequence[Any], gateway: I32, index: CityIndex, now_ms: int
) -> tuple[Readings, I8]:
    """Validate parsed readings (any JSON values) column-wise.

    ``gateway`` is the publishing gateway's index per reading. Returns the columns (rows of
    invalid readings hold placeholders) and the reason code per reading: 0 valid, else
    ``REASONS[code - 1]``, chosen by the precedence in the module docstring."""
    n = len(raw)
    c = _json_columns(raw, index)
    columns = Readings(
        message=np.zeros(n, np.int32),
        index=np.zeros(n, np.int32),
        sensor=c.sensor,
        kind=c.kind,
        ts=c.ts,
        seq=c.seq,
        values=c.values,
    )
    return columns, _judge(c, gateway, index, now_ms)


def _binary_columns(b: BinaryBatch, index: CityIndex) -> _Columns:
    """Columns of one binary batch (its sensor table resolved against the registry)."""
    pos = index.sensor_pos
    table_pos = np.fromiter(map(pos.get, b.sensor_ids, repeat(-1)), np.int32, len(b.sensor_ids))
    table_kind = np.where(b.sensor_kinds < _N_KINDS, b.sensor_kinds, 0).astype(np.int8)
    kind = table_kind[b.sensor]
    values = np.clip(b.values, -1, MAX_COUNT + 1).astype(np.int64)
    return _Columns(
        sensor=table_pos[b.sensor],
        kind=kind,
        ts=b.ts,
        seq=b.seq_col.astype(np.int64),
        values=values,
        # a non-zero value past the kind's fields is the binary form of an unknown JSON key
        keys_bad=(b.values != 0).any(axis=1, where=~_USED[kind]),
        shape_bad=b.clock > 1,
    )


def _reading_detail(raw: Any, reason: RejectReason, now_ms: int) -> str:
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
    if type(kind_name) is str and kind_name in _KIND_BY_NAME and isinstance(values, dict):
        broken = check_values(SensorKind(kind_name), values)
        if broken is not None and broken[0] is reason:
            return broken[1]
    return f"reading keys {sorted(raw)!r} do not follow the schema"


def _batch_fault(doc: dict[str, Any], gateway: str) -> Rejection | None:
    """Envelope rules of a Batch (index is filled in by the caller)."""
    schema = RejectReason.SCHEMA_VIOLATION
    if doc.keys() - _BATCH_KEYS:
        return Rejection(0, schema, f"unknown batch keys {sorted(doc.keys() - _BATCH_KEYS)}")
    readings = doc.get("readings")
    if not isinstance(readings, list) or not 1 <= len(readings) <= MAX_READINGS_PER_BATCH:
        return Rejection(0, schema, f"readings must be a list of 1..{MAX_READINGS_PER_BATCH}")
    seq, sent, offset = doc.get("seq"), doc.get("sent"), doc.get("clock_offset_ms")
    if type(seq) is not int or seq < 0 or type(sent) is not int:
        return Rejection(0, schema, "seq (>= 0) and sent must be integers")
    if offset is not None and type(offset) is not int:
        return Rejection(0, schema, "clock_offset_ms must be an integer")
    gw = doc.get("gw")
    if type(gw) is not str or not topics.is_valid_id(gw):
        return Rejection(0, schema, "gw must be a gateway id")
    if gw != gateway:
        return Rejection(0, RejectReason.TOPIC_MISMATCH, f"payload gw {gw!r} != topic {gateway!r}")
    return None


def content_fingerprint(payload: bytes) -> int:
    """A hash of a batch's readings, leaving out the envelope fields a gateway stamps anew on
    every resend (``sent``, ``clock_offset_ms``): a resent batch must count as a duplicate.

    JSON: everything from the ``"readings"`` key on (Pantau's encoders put it last; a producer
    that orders keys differently only makes dedup stricter, never wrong). Binary:
    :func:`contract.readings_section`."""
    if is_binary(payload):
        return hash(readings_section(payload))
    at = payload.find(b'"readings"')
    return hash(payload[at:] if at >= 0 else payload)


class BatchDedup:
    """Which (gateway, batch seq) this ingester has already stored and acknowledged, for the
    most recent ``per_gateway`` batches of each gateway (bounded memory: about 100 bytes per
    remembered batch).

    A batch is a duplicate only if its readings are identical too (a
    :func:`content_fingerprint` is kept with the seq): a gateway that lost its spool and
    restarted its seq at 0 sends new data under old numbers, and that must not be dropped.
    What this memory does not cover (batches older than the last ``per_gateway``, everything
    before an ingester restart) is still stored only once: raw points are idempotent (same
    series and time), so a redelivered batch overwrites itself."""

    def __init__(self, *, per_gateway: int = 1024) -> None:
        self.per_gateway = per_gateway
        self._seen: dict[int, dict[int, int]] = {}

    def seen(self, gateway: int, seq: int, fingerprint: int) -> bool:
        """True if this exact batch was remembered."""
        got = self._seen.get(gateway)
        return got is not None and got.get(seq) == fingerprint

    def remember(self, keys: Sequence[tuple[int, int, int]]) -> None:
        """Remember stored batches ((gateway, seq, fingerprint)); forgets each gateway's
        oldest beyond ``per_gateway``."""
        for gateway, seq, fingerprint in keys:
            recent = self._seen.setdefault(gateway, {})
            recent.pop(seq, None)  # re-inserted at the end: it is the newest again
            recent[seq] = fingerprint
            while len(recent) > self.per_gateway:
                del recent[next(iter(recent))]

    def __len__(self) -> int:
        return sum(map(len, self._seen.values()))


@dataclass(frozen=True, slots=True)
class _Json:
    """An admitted JSON message: its gateway, readings and whether it can take the fast path."""

    gateway: int
    readings: list[Any]
    is_batch: bool
    plain: bool
    seq: int = 0


@dataclass(frozen=True, slots=True)
class _Binary:
    gateway: int
    batch: BinaryBatch


def _admit(
    m: int, msg: Message, index: CityIndex
) -> Rejection | StatusUpdate | _Json | _Binary | None:
    """Envelope of one message: a Rejection, a StatusUpdate, admitted readings, or None for a
    message with nothing to store."""
    binary: BinaryBatch | None = None
    doc: Any = None
    try:
        topic = topics.parse(msg.topic)
        if topic.channel is Channel.STATUS and not msg.payload:
            return None  # a retained status being cleared: nothing to store
        if topic.channel is Channel.READINGS and is_binary(msg.payload):
            binary = decode_binary_batch(msg.payload)
        else:
            doc = load_json(msg.payload)
            check_version(doc)
    except (TopicError, PayloadError) as exc:
        return Rejection(m, exc.reason, exc.detail)
    gw = index.gateway_pos.get(topic.gateway)
    if gw is None:
        return Rejection(
            m, RejectReason.UNKNOWN_GATEWAY, f"gateway {topic.gateway!r} not registered"
        )
    registered_site = index.site_ids[index.gateway_site[gw]]
    if registered_site != topic.site:
        detail = f"gateway {topic.gateway} is registered at {registered_site}, not {topic.site}"
        return Rejection(m, RejectReason.TOPIC_MISMATCH, detail)
    if binary is not None:
        if binary.gw != topic.gateway:
            detail = f"payload gw {binary.gw!r} != topic {topic.gateway!r}"
            return Rejection(m, RejectReason.TOPIC_MISMATCH, detail)
        return _Binary(gw, binary)
    if topic.channel is Channel.STATUS:
        try:
            status = GatewayStatus.model_validate(doc)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"][:2]))
            return Rejection(m, RejectReason.SCHEMA_VIOLATION, f"{where}: {first['msg']}"[:200])
        if status.gw != topic.gateway:
            detail = f"payload gw {status.gw!r} != topic {topic.gateway!r}"
            return Rejection(m, RejectReason.TOPIC_MISMATCH, detail)
        return StatusUpdate(m, gw, status, known_stats(doc.get("stats", {}))[1])
    if topic.channel is Channel.READING and not index.registry.doc.gateways[gw].direct:
        # The single-reading topic is for direct devices (registry ``direct: true``); a batch
        # gateway there is misconfigured or impersonating a simple device.
        detail = f"gateway {topic.gateway} is not a direct device: publish batches on readings"
        return Rejection(m, RejectReason.TOPIC_MISMATCH, detail)
    if topic.channel is Channel.READINGS:
        fault = _batch_fault(doc, topic.gateway)
        if fault is not None:
            return Rejection(m, fault.reason, fault.detail)
        # JSON true/false would pass numpy's integer check as 1/0: such payloads (and only
        # they) take the general path, which tells booleans from integers.
        p = msg.payload
        plain = b"true" not in p and b"false" not in p
        return _Json(gw, doc["readings"], True, plain, doc["seq"])
    if topic.channel is Channel.READING:
        if doc.keys() - _SINGLE_KEYS:
            extra = sorted(doc.keys() - _SINGLE_KEYS)
            return Rejection(m, RejectReason.SCHEMA_VIOLATION, f"unknown keys {extra}")
        reading = {k: v for k, v in doc.items() if k != "v"}
        reading.setdefault("seq", 0)
        if reading.get("ts") is None:  # a device without a clock: stamp on receipt
            reading["ts"] = msg.received_ms
            reading["clock"] = "gateway"
        return _Json(gw, [reading], False, False)
    return Rejection(m, RejectReason.BAD_TOPIC, f"channel {topic.channel.value} is not ingested")


@dataclass(kw_only=True)
class _Segment:
    """Readings of some messages of a window, in columns, with where each row came from."""

    cols: _Columns
    message: I32
    index: I32
    gateway: I32
    #: row -> the reading as parsed JSON, or a BinaryRow (for dead-letter details of refused rows)
    source: Callable[[int], Any]


def _plain_segment(plain: _PlainJson, messages: Sequence[Message], index: CityIndex) -> _Segment:
    """The segment of the window's plain JSON batches."""
    counts = np.array([k for _, _, k in plain.items], dtype=np.intp)
    ends = np.cumsum(counts)
    starts = ends - counts

    def source(row: int) -> Any:
        # Only for refused readings: parse the payload again rather than keep every document.
        at = int(np.searchsorted(ends, row, side="right"))
        doc = orjson.loads(messages[plain.items[at][0]].payload)
        return doc["readings"][row - int(starts[at])]

    return _Segment(
        cols=plain.columns(index),
        message=np.repeat(np.array([m for m, _, _ in plain.items], dtype=np.int32), counts),
        index=np.arange(plain.n, dtype=np.int32) - np.repeat(starts.astype(np.int32), counts),
        gateway=np.repeat(np.array([g for _, g, _ in plain.items], dtype=np.int32), counts),
        source=source,
    )


def _json_segment(
    items: list[tuple[int, _Json]], index: CityIndex, cols: _Columns | None = None
) -> _Segment:
    """The segment of JSON messages ``items``; ``cols`` if already extracted (plain path)."""
    raw: list[Any] = []
    for _, j in items:
        raw += j.readings
    counts = np.array([len(j.readings) for _, j in items], dtype=np.intp)
    if cols is None:
        cols = _json_columns(raw, index)
    if all(j.is_batch for _, j in items):
        positions = np.arange(len(raw), dtype=np.int32) - np.repeat(
            (np.cumsum(counts) - counts).astype(np.int32), counts
        )
    else:
        positions = np.concatenate(
            [
                np.arange(len(j.readings), dtype=np.int32)
                if j.is_batch
                else np.full(len(j.readings), -1, np.int32)
                for _, j in items
            ]
        )
    return _Segment(
        cols=cols,
        message=np.repeat(np.array([m for m, _ in items], dtype=np.int32), counts),
        index=positions,
        gateway=np.repeat(np.array([j.gateway for _, j in items], dtype=np.int32), counts),
        source=raw.__getitem__,
    )


def _binary_segment(items: list[tuple[int, _Binary]], index: CityIndex) -> _Segment:
    parts = [_binary_columns(b.batch, index) for _, b in items]
    counts = np.array([len(b.batch) for _, b in items], dtype=np.intp)
    starts = np.r_[0, np.cumsum(counts)]

    def source(row: int) -> Any:
        k = int(np.searchsorted(starts, row, side="right")) - 1
        return BinaryRow(items[k][1].batch, row - int(starts[k]))

    return _Segment(
        cols=_concat(parts),
        message=np.repeat(np.array([m for m, _ in items], dtype=np.int32), counts),
        index=np.concatenate([np.arange(n, dtype=np.int32) for n in counts.tolist()]),
        gateway=np.repeat(np.array([b.gateway for _, b in items], dtype=np.int32), counts),
        source=source,
    )


def _concat(parts: Sequence[_Columns]) -> _Columns:
    """One _Columns of several, in order."""
    if len(parts) == 1:
        return parts[0]
    n = [len(p.sensor) for p in parts]

    def opt(name: str, fill: bool, shape: tuple[int, ...]) -> Bools | None:
        got = [getattr(p, name) for p in parts]
        if all(g is None for g in got):
            return None
        return np.concatenate(
            [
                g if g is not None else np.full((k, *shape), fill, dtype=bool)
                for g, k in zip(got, n, strict=True)
            ]
        )

    return _Columns(
        sensor=np.concatenate([p.sensor for p in parts]),
        kind=np.concatenate([p.kind for p in parts]),
        ts=np.concatenate([p.ts for p in parts]),
        seq=np.concatenate([p.seq for p in parts]),
        values=np.concatenate([p.values for p in parts]),
        field_ok=opt("field_ok", True, (MAX_FIELDS,)),
        shape_bad=opt("shape_bad", False, ()),
        keys_bad=opt("keys_bad", False, ()),
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


@dataclass(kw_only=True)
class _Admitted:
    """A window's messages sorted by what decoding they need."""

    rejections: list[Rejection] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    plain: _PlainJson = field(default_factory=_PlainJson)
    general: list[tuple[int, _Json]] = field(default_factory=list)
    binaries: list[tuple[int, _Binary]] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    keys: list[tuple[int, int, int]] = field(default_factory=list)


def _admit_all(
    messages: Sequence[Message], index: CityIndex, dedup: BatchDedup | None
) -> _Admitted:
    out = _Admitted()
    in_window: set[tuple[int, int, int]] = set()
    for m, msg in enumerate(messages):
        got = _admit(m, msg, index)
        if isinstance(got, Rejection):
            out.rejections.append(got)
            continue
        if isinstance(got, StatusUpdate):
            out.statuses.append(got)
            continue
        if got is None:
            continue
        if isinstance(got, _Binary) or got.is_batch:
            seq = got.batch.seq if isinstance(got, _Binary) else got.seq
            key = (got.gateway, seq, content_fingerprint(msg.payload))
            if key in in_window or (dedup is not None and dedup.seen(*key)):
                out.duplicates.append(m)
                continue
            in_window.add(key)
            out.keys.append(key)
        if isinstance(got, _Binary):
            out.binaries.append((m, got))
        elif not (got.plain and out.plain.add(m, got)):
            out.general.append((m, got))
    return out


def decode_window(
    messages: Sequence[Message],
    index: CityIndex,
    now_ms: int,
    *,
    dedup: BatchDedup | None = None,
) -> DecodedWindow:
    """Decode and validate a window of messages. Never raises for bad input: every refused
    message or reading is a :class:`Rejection`. With ``dedup``, a batch it has seen (or one
    seen earlier in this window) is not decoded, only listed in ``duplicates``."""
    # Decoding allocates millions of small acyclic objects (parsed JSON, tuples); the cyclic
    # GC would traverse them again and again for nothing (measured: half the decode time).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _decode(messages, index, now_ms, dedup)
    finally:
        if gc_was_enabled:
            gc.enable()


def _decode(
    messages: Sequence[Message], index: CityIndex, now_ms: int, dedup: BatchDedup | None
) -> DecodedWindow:
    adm = _admit_all(messages, index, dedup)
    rejections, statuses = adm.rejections, adm.statuses
    duplicates, keys = adm.duplicates, adm.keys
    plain, general, binaries = adm.plain, adm.general, adm.binaries
    segments: list[_Segment] = []
    if plain.n:
        segments.append(_plain_segment(plain, messages, index))
    if general:
        segments.append(_json_segment(general, index))
    if binaries:
        segments.append(_binary_segment(binaries, index))
    if not segments:
        return DecodedWindow(
            readings=empty_readings(),
            rejections=rejections,
            statuses=statuses,
            duplicates=duplicates,
            batch_keys=keys,
        )
    cols = _concat([s.cols for s in segments])
    message = np.concatenate([s.message for s in segments])
    position = np.concatenate([s.index for s in segments])
    gateway = np.concatenate([s.gateway for s in segments])
    seg_starts = np.cumsum([0] + [len(s.message) for s in segments])
    code = _judge(cols, gateway, index, now_ms)
    readings = Readings(
        message=message,
        index=position,
        sensor=cols.sensor,
        kind=cols.kind,
        ts=cols.ts,
        seq=cols.seq,
        values=cols.values,
    )
    order: npt.NDArray[np.intp] | None = None
    if len(segments) > 1 and np.any(message[1:] < message[:-1]):
        # Forms were decoded in groups; restore arrival order (state breaks ties by it).
        order = np.argsort(message, kind="stable")
        readings = readings.take(order)
        code = code[order]
    for row in np.flatnonzero(code).tolist():
        origin = int(order[row]) if order is not None else row
        k = int(np.searchsorted(seg_starts, origin, side="right")) - 1
        why = REASONS[int(code[row]) - 1]
        at = int(readings.index[row])
        detail = _reading_detail(segments[k].source(origin - int(seg_starts[k])), why, now_ms)
        rejections.append(
            Rejection(int(readings.message[row]), why, detail, None if at < 0 else at)
        )
    return DecodedWindow(
        readings=readings.take(code == 0),
        rejections=rejections,
        statuses=statuses,
        duplicates=duplicates,
        batch_keys=keys,
    )
