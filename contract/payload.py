"""Message schema (version 1), its validation rules and size limits.

The gateway batch is the main form; the single reading is for simple devices that publish with
``mosquitto_pub``. Times are integer milliseconds since the Unix epoch, UTC: integers survive
JSON, numpy and InfluxDB (``precision=ms``) without rounding, and a site's local day is derived
from the registry's time zone, never from the wire.

The rules here are the only definition of "valid". The ingester applies them vectorised over a
whole flush window (``cloud.ingest.decode``); a property test proves both agree.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    model_validator,
)

from contract.errors import PayloadError, RejectReason
from contract.topics import ID_PATTERN

SCHEMA_VERSION = 1

#: Larger payloads are refused unread (broker also caps packets, see mosquitto/conf.d).
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_READINGS_PER_BATCH = 2000
#: How far a reading may be stamped ahead of the receiver's clock (gateway clocks drift).
MAX_FUTURE_SKEW_MS = 5 * 60 * 1000
#: Nothing Pantau measures predates this (2020-01-01T00:00:00Z); older means a clock reset.
MIN_TIMESTAMP_MS = 1_577_836_800_000
#: Counters are stored as InfluxDB integers; this keeps sums over a province far from overflow.
MAX_COUNT = 10_000_000

Identifier = Annotated[str, StringConstraints(pattern=f"^{ID_PATTERN}$")]


def _exact_version(value: Any) -> Any:
    # JSON true and 1.0 compare equal to 1 in Python (and pass pydantic's Literal[1]); only
    # the integer 1 is version 1.
    if type(value) is not int:
        raise ValueError("v must be the integer 1")
    return value


#: The schema version field of every message: exactly the JSON integer 1.
Version = Annotated[Literal[1], BeforeValidator(_exact_version)]


class SensorKind(StrEnum):
    """What a sensor measures."""

    BED = "bed"  # a ward's beds of one SIRANAP bed type
    CROWD = "crowd"  # a people counter at one gate of a market, park, mall or station
    QUEUE = "queue"  # a ticket kiosk at a hospital or public office


#: Value fields per kind, in wire order (the serial frame and binary batch are positional).
KIND_FIELDS: dict[SensorKind, tuple[str, ...]] = {
    # capacity: beds in service; occupied: beds in use, of which suspect/confirmed COVID-19;
    # waiting: patients waiting for a bed of this type (SIRANAP "antrian").
    SensorKind.BED: ("capacity", "occupied", "suspect", "confirmed", "waiting"),
    # entries/exits: cumulative since the counter's last reset; occupancy: people inside now as
    # counted at this gate (entries - exits, corrected by the device's own recount).
    SensorKind.CROWD: ("entries", "exits", "occupancy"),
    # issued/served: tickets since the kiosk's daily reset; counters_open: desks serving now.
    SensorKind.QUEUE: ("issued", "served", "counters_open"),
}

#: Stable small integer per kind, for columnar arrays and the binary batch.
KIND_CODES: dict[SensorKind, int] = {SensorKind.BED: 1, SensorKind.CROWD: 2, SensorKind.QUEUE: 3}


@dataclass(frozen=True, slots=True)
class AtMost:
    """A cross-field rule of a kind's values: the sum of ``parts`` must not exceed ``whole``.
    Data rather than code, so the ingester derives its vectorised form from the same rule."""

    parts: tuple[str, ...]
    whole: str
    reason: RejectReason
    #: ``str.format`` template over the reading's values
    detail: str

    def broken(self, values: Mapping[str, int]) -> bool:
        """True if ``values`` break this rule."""
        return sum(values[p] for p in self.parts) > values[self.whole]


#: Cross-field rules per kind, checked in this order once every field is a valid count.
CROSS_FIELD_RULES: dict[SensorKind, tuple[AtMost, ...]] = {
    SensorKind.BED: (
        AtMost(
            parts=("occupied",),
            whole="capacity",
            reason=RejectReason.OCCUPIED_EXCEEDS_CAPACITY,
            detail="occupied {occupied} > capacity {capacity}",
        ),
        AtMost(
            parts=("suspect", "confirmed"),
            whole="occupied",
            reason=RejectReason.OCCUPIED_EXCEEDS_CAPACITY,
            detail="suspect + confirmed exceeds occupied",
        ),
    ),
    SensorKind.CROWD: (),
    SensorKind.QUEUE: (
        AtMost(
            parts=("served",),
            whole="issued",
            reason=RejectReason.SCHEMA_VIOLATION,
            detail="served exceeds issued",
        ),
    ),
}


class ClockSource(StrEnum):
    """Who stamped a reading's observation time."""

    SENSOR = "sensor"
    GATEWAY = "gateway"


#: CROSS_FIELD_RULES with their fields as wire positions: :func:`check_rows` compares whole
#: columns with them.
_RULES_AT: dict[SensorKind, tuple[tuple[AtMost, tuple[int, ...], int], ...]] = {
    kind: tuple(
        (
            rule,
            tuple(KIND_FIELDS[kind].index(p) for p in rule.parts),
            KIND_FIELDS[kind].index(rule.whole),
        )
        for rule in rules
    )
    for kind, rules in CROSS_FIELD_RULES.items()
}


def _count_broken(name: str, value: int) -> tuple[RejectReason, str] | None:
    # The per-field rule on an integer: a count is never negative and never beyond MAX_COUNT.
    if value < 0:
        return RejectReason.NEGATIVE_COUNT, f"{name} is {value}"
    if value > MAX_COUNT:
        return RejectReason.SCHEMA_VIOLATION, f"{name} exceeds {MAX_COUNT}"
    return None


def _cross_broken(kind: SensorKind, row: Sequence[int]) -> tuple[RejectReason, str] | None:
    named = dict(zip(KIND_FIELDS[kind], row, strict=True))
    for rule in CROSS_FIELD_RULES[kind]:
        if rule.broken(named):
            return rule.reason, rule.detail.format(**named)
    return None


def check_values(kind: SensorKind, values: dict[str, int]) -> tuple[RejectReason, str] | None:
    """The per-reading value rules. Returns the first broken rule, or None if the values are
    valid. Field presence is checked first, then signs, then cross-field consistency."""
    expected = KIND_FIELDS[kind]
    if set(values) != set(expected):
        return RejectReason.SCHEMA_VIOLATION, f"{kind.value} needs exactly {list(expected)}"
    for name in expected:
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, int):
            return RejectReason.SCHEMA_VIOLATION, f"{name} must be an integer"
        broken = _count_broken(name, value)
        if broken is not None:
            return broken
    return _cross_broken(kind, [values[name] for name in expected])


def check_row(kind: SensorKind, row: Sequence[int]) -> tuple[RejectReason, str] | None:
    """:func:`check_values` for integer values given positionally, in ``KIND_FIELDS[kind]``
    order (as a serial frame or binary batch carries them; ``len(row)`` must match): the
    same rules, the same first broken rule and words."""
    for name, value in zip(KIND_FIELDS[kind], row, strict=True):
        broken = _count_broken(name, value)
        if broken is not None:
            return broken
    return _cross_broken(kind, row)


def check_rows(
    kind: SensorKind, rows: Sequence[Sequence[int]]
) -> list[tuple[int, tuple[RejectReason, str]]]:
    """:func:`check_row` over many rows of one kind: ``(index, broken rule)`` for each row that
    breaks one, in order; ``[]`` when all are valid.

    The rules are tested column by column first (each column's min and max, each cross-field
    rule as one comparison of columns, all loops in C), which proves the common all-valid case
    at once; only a burst that fails that test is checked row by row, for the exact first
    broken rule of each row."""
    if not rows:
        return []
    cols = list(zip(*rows, strict=True))
    suspect = any(min(col) < 0 or max(col) > MAX_COUNT for col in cols)
    for _rule, parts, whole in _RULES_AT[kind]:
        if suspect:
            break
        total: Iterable[int] = cols[parts[0]]
        for p in parts[1:]:
            total = map(operator.add, total, cols[p])
        suspect = any(map(operator.gt, total, cols[whole]))
    if not suspect:
        return []
    return [(i, broken) for i, row in enumerate(rows) if (broken := check_row(kind, row))]


def check_timestamp(ts_ms: int, now_ms: int) -> tuple[RejectReason, str] | None:
    """The observation-time rule, against the receiver's clock ``now_ms``."""
    if ts_ms > now_ms + MAX_FUTURE_SKEW_MS:
        return RejectReason.FUTURE_TIMESTAMP, f"ts {ts_ms} is {ts_ms - now_ms} ms ahead"
    if ts_ms < MIN_TIMESTAMP_MS:
        return RejectReason.ANCIENT_TIMESTAMP, f"ts {ts_ms} predates {MIN_TIMESTAMP_MS}"
    return None


class _Strict(BaseModel):
    # Unknown fields are refused (a typo must not pass silently); numbers are StrictInt so
    # "12" or 12.0 from a device is a schema violation, not a silent coercion.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reading(_Strict):
    """One observation of one sensor."""

    sensor: Identifier
    kind: SensorKind
    ts: StrictInt = Field(description="observation time, ms since epoch UTC")
    seq: StrictInt = Field(
        ge=0, description="per-sensor sequence; restarts at 0 when a sensor resets"
    )
    values: dict[str, StrictInt]
    clock: ClockSource = ClockSource.SENSOR

    @model_validator(mode="after")
    def _values_follow_rules(self) -> Reading:
        broken = check_values(self.kind, self.values)
        if broken is not None:
            raise ValueError(f"{broken[0].value}: {broken[1]}")
        return self


class Batch(_Strict):
    """What a gateway publishes on ``.../readings``."""

    v: Version = 1
    gw: Identifier
    seq: StrictInt = Field(ge=0, description="per-gateway batch sequence, for dedup")
    sent: StrictInt = Field(description="gateway send time, ms since epoch UTC")
    clock_offset_ms: StrictInt | None = Field(
        default=None, description="gateway clock minus NTP time, if the gateway knows it"
    )
    readings: list[Reading] = Field(min_length=1, max_length=MAX_READINGS_PER_BATCH)


class SingleReading(_Strict):
    """What a simple device publishes on ``.../reading`` (the gateway id is the topic's)."""

    v: Version = 1
    sensor: Identifier
    kind: SensorKind
    ts: StrictInt | None = Field(default=None, description="omit if the device has no clock")
    seq: StrictInt = Field(default=0, ge=0)
    values: dict[str, StrictInt]

    @model_validator(mode="after")
    def _values_follow_rules(self) -> SingleReading:
        broken = check_values(self.kind, self.values)
        if broken is not None:
            raise ValueError(f"{broken[0].value}: {broken[1]}")
        return self


class CommandName(StrEnum):
    SET_INTERVAL = "set_interval"
    READ_NOW = "read_now"
    RELOAD_CONFIG = "reload_config"
    SPOOL_STATE = "spool_state"


class Command(_Strict):
    """Sent by ops on ``.../cmd``."""

    v: Version = 1
    id: Identifier
    name: CommandName
    args: dict[str, Any] = Field(default_factory=dict)


class CommandAck(_Strict):
    """The gateway's answer on ``.../ack``; ``id`` is the command's, or ``unknown``."""

    v: Version = 1
    id: str
    ok: bool
    result: dict[str, Any] | None = None
    error: str | None = None


def _refuse_constant(token: str) -> Any:
    raise PayloadError(RejectReason.NON_FINITE, f"{token} is not a number Pantau accepts")


def _refuse_infinite(token: str) -> None:
    # ``1e400`` (or a 400-digit integer) is a valid JSON number that no double holds: orjson
    # refuses it as "infinity", so it is a non-finite number, not broken JSON. The parsed value
    # is never used (this parse only finds the reason), hence None.
    if math.isinf(float(token)):
        raise PayloadError(RejectReason.NON_FINITE, f"{token[:32]} is beyond a double's range")


def _refusal_reason(raw: bytes) -> RejectReason:
    """Why orjson refused ``raw``: a number Pantau does not accept (NaN, Infinity, beyond a
    double) or broken JSON. Runs only for refused payloads."""
    try:
        json.loads(
            raw,
            parse_constant=_refuse_constant,
            parse_float=_refuse_infinite,
            parse_int=_refuse_infinite,
        )
    except PayloadError as exc:
        return exc.reason
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: nesting deeper than Python's recursion limit (orjson stops at 1024
        # levels; ``json`` recurses until the interpreter refuses). That is broken JSON for us,
        # never a crash: the payload comes from a device.
        pass
    return RejectReason.INVALID_JSON


def load_json(raw: bytes) -> Any:
    """Parse a JSON payload within the size limit. Never raises anything but
    :class:`PayloadError`: NaN, Infinity and numbers beyond a double (which strict JSON parsers
    call a syntax error) are told apart as ``non_finite`` so operators see *why* a device's
    data was refused; everything else unparseable (including nesting deeper than 1024 levels)
    is ``invalid_json``."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise PayloadError(RejectReason.OVERSIZE, f"{len(raw)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(_refusal_reason(raw), str(exc)) from None


def check_version(doc: Any) -> None:
    """Refuse documents that are not JSON objects of a schema version this code speaks (the
    integer 1: not ``true``, not ``1.0``)."""
    if not isinstance(doc, dict):
        raise PayloadError(RejectReason.SCHEMA_VIOLATION, "payload must be a JSON object")
    version = doc.get("v")
    if type(version) is not int or version != SCHEMA_VERSION:
        # Only scalars are echoed: a device's 200 KB string or 1000-deep list is not a detail.
        scalar = version is None or type(version) in (int, float, bool)
        shown = repr(version) if scalar else type(version).__name__
        raise PayloadError(RejectReason.UNSUPPORTED_VERSION, f"v={shown}, this speaks v=1")


def encode(message: BaseModel) -> bytes:
    """Serialise any contract message to its wire bytes (compact JSON)."""
    return orjson.dumps(message.model_dump(mode="json", exclude_none=True))
