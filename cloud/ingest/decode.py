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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from cloud.ingest.topology import MAX_FIELDS, CityIndex
from contract import (
    KIND_CODES,
    KIND_FIELDS,
    MAX_READINGS_PER_BATCH,
    Channel,
    GatewayStatus,
    PayloadError,
    RejectReason,
    SensorKind,
    TopicError,
    check_timestamp,
    check_values,
    check_version,
    load_json,
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


@dataclass(frozen=True, kw_only=True)
class DecodedWindow:
    """Everything a window of messages turned into."""

    readings: Readings
    rejections: list[Rejection]
    statuses: list[StatusUpdate]


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


def check_readings(
    raw: Sequence[Any], gateway: I32, index: CityIndex, now_ms: int
) -> tuple[Readings, I8]:
    """Validate parsed readings (any JSON values) column-wise.

    ``gateway`` is the publishing gateway's index per reading. Returns the columns (rows of
    invalid readings hold placeholders) and the reason code per reading: 0 valid, else
    ``REASONS[code - 1]``, chosen by the precedence in the module docstring."""
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

    reason = np.zeros(n, dtype=np.int8)

    def flag(cond: Bools, code: int) -> None:
        reason[(reason == 0) & cond] = code

    # 1. schema of the reading object
    flag(
        ~is_dict
        | (extra > 0)
        | (sensor == -2)
        | (kind == 0)
        | ~ts_ok
        | ~seq_ok
        | (seq < 0)
        | ~values_is_dict
        | ~clock_ok,
        _SCHEMA,
    )
    # 2. registry
    known = sensor >= 0
    s = np.where(known, sensor, 0)
    flag(~known | (index.sensor_gateway[s] != gateway), _CODE[RejectReason.UNKNOWN_SENSOR])
    flag(index.sensor_kind[s] != kind, _CODE[RejectReason.KIND_MISMATCH])
    # 3. check_values: exact key set first
    flag(~(present == _EXPECTED[kind]).all(axis=1) | (n_values != _N_EXPECTED[kind]), _SCHEMA)
    # ...then per field in wire order: type, sign, size; the first faulty field decides
    order = _ORDER[kind]  # (n, MAX_FIELDS)
    used = order >= 0
    ocol = np.where(used, order, 0)
    rows = np.arange(n)[:, None]
    field_code = np.where(
        ~is_int[rows, ocol],
        _SCHEMA,
        np.where(
            allv[rows, ocol] < 0, _NEGATIVE, np.where(allv[rows, ocol] > MAX_COUNT, _SCHEMA, 0)
        ),
    ).astype(np.int8)
    field_code[~used] = 0
    first = np.argmax(field_code != 0, axis=1)
    faulty = field_code[np.arange(n), first]
    hit = (reason == 0) & (faulty != 0)
    reason[hit] = faulty[hit]
    values = np.where(used, allv[rows, ocol], 0)
    # ...then cross-field consistency
    bed = kind == _BED
    flag(bed & (values[:, 1] > values[:, 0]), _EXCEEDS)
    flag(bed & (values[:, 2] + values[:, 3] > values[:, 1]), _EXCEEDS)
    flag((kind == _QUEUE) & (values[:, 1] > values[:, 0]), _SCHEMA)
    # 4. check_timestamp (compare without overflow: ts is clipped to int64)
    flag(ts > now_ms + MAX_FUTURE_SKEW_MS, _CODE[RejectReason.FUTURE_TIMESTAMP])
    flag(ts < MIN_TIMESTAMP_MS, _CODE[RejectReason.ANCIENT_TIMESTAMP])

    columns = Readings(
        message=np.zeros(n, np.int32),
        index=np.zeros(n, np.int32),
        sensor=sensor,
        kind=kind,
        ts=ts,
        seq=seq,
        values=values,
    )
    return columns, reason


def _reading_detail(raw: Any, reason: RejectReason, now_ms: int) -> str:
    """Human detail for one refused reading; uses the contract's own words where it has some.
    Runs only for refused readings."""
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
    if kind_name in _KIND_BY_NAME and isinstance(values, dict):
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


def _admit(
    m: int, msg: Message, index: CityIndex
) -> Rejection | StatusUpdate | tuple[int, list[Any], bool] | None:
    """Envelope of one message: a Rejection, a StatusUpdate, (gateway, readings, is_batch),
    or None for a message with nothing to store."""
    try:
        topic = topics.parse(msg.topic)
        if topic.channel is Channel.STATUS and not msg.payload:
            return None  # a retained status being cleared: nothing to store
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
    if topic.channel is Channel.STATUS:
        try:
            status = GatewayStatus.model_validate(doc)
        except ValidationError as exc:
            return Rejection(m, RejectReason.SCHEMA_VIOLATION, str(exc.errors()[0]["msg"]))
        if status.gw != topic.gateway:
            detail = f"payload gw {status.gw!r} != topic {topic.gateway!r}"
            return Rejection(m, RejectReason.TOPIC_MISMATCH, detail)
        return StatusUpdate(m, gw, status)
    if topic.channel is Channel.READINGS:
        fault = _batch_fault(doc, topic.gateway)
        if fault is not None:
            return Rejection(m, fault.reason, fault.detail)
        return gw, doc["readings"], True
    if topic.channel is Channel.READING:
        if doc.keys() - _SINGLE_KEYS:
            extra = sorted(doc.keys() - _SINGLE_KEYS)
            return Rejection(m, RejectReason.SCHEMA_VIOLATION, f"unknown keys {extra}")
        reading = {k: v for k, v in doc.items() if k != "v"}
        reading.setdefault("seq", 0)
        if reading.get("ts") is None:  # a device without a clock: stamp on receipt
            reading["ts"] = msg.received_ms
            reading["clock"] = "gateway"
        return gw, [reading], False
    return Rejection(m, RejectReason.BAD_TOPIC, f"channel {topic.channel.value} is not ingested")


def decode_window(messages: Sequence[Message], index: CityIndex, now_ms: int) -> DecodedWindow:
    """Decode and validate a window of messages. Never raises for bad input: every refused
    message or reading is a :class:`Rejection`."""
    rejections: list[Rejection] = []
    statuses: list[StatusUpdate] = []
    raw: list[Any] = []
    owner: list[int] = []
    counts: list[int] = []
    positions: list[int] = []  # index inside the batch; -1 for a single reading
    gw_of: list[int] = []
    for m, msg in enumerate(messages):
        got = _admit(m, msg, index)
        if isinstance(got, Rejection):
            rejections.append(got)
        elif isinstance(got, StatusUpdate):
            statuses.append(got)
        elif got is not None:
            gw, readings, is_batch = got
            raw += readings
            owner.append(m)
            counts.append(len(readings))
            positions += range(len(readings)) if is_batch else [-1]
            gw_of.append(gw)
    if not raw:
        return DecodedWindow(readings=empty_readings(), rejections=rejections, statuses=statuses)
    reps = np.array(counts, dtype=np.intp)
    gateway = np.repeat(np.array(gw_of, dtype=np.int32), reps)
    checked, code = check_readings(raw, gateway, index, now_ms)
    cols = Readings(
        message=np.repeat(np.array(owner, dtype=np.int32), reps),
        index=np.array(positions, dtype=np.int32),
        sensor=checked.sensor,
        kind=checked.kind,
        ts=checked.ts,
        seq=checked.seq,
        values=checked.values,
    )
    for row in np.flatnonzero(code).tolist():
        why = REASONS[int(code[row]) - 1]
        at = int(cols.index[row])
        detail = _reading_detail(raw[row], why, now_ms)
        rejections.append(Rejection(int(cols.message[row]), why, detail, None if at < 0 else at))
    return DecodedWindow(readings=cols.take(code == 0), rejections=rejections, statuses=statuses)
