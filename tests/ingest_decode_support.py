"""Shared by the decoder's unit tests (tests/unit/test_ingest_decode.py,
test_ingest_decode_binary.py): the demo city's sensors per kind, hypothesis strategies for
readings that may break any rule, and messages as the consumer hands them to the decoder."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import strategies as st

from cloud.ingest import Message
from contract import KIND_FIELDS, RejectReason, SensorKind
from contract.payload import MAX_COUNT, MAX_FUTURE_SKEW_MS, MIN_TIMESTAMP_MS

NOW = 1_795_000_000_000
SENSOR_OF = {
    SensorKind.BED: "bed-kariadi-icu",
    SensorKind.CROWD: "crowd-johar-utara",
    SensorKind.QUEUE: "q-mpp",
}
GATEWAY_OF = {
    SensorKind.BED: "gw-kariadi",
    SensorKind.CROWD: "gw-johar",
    SensorKind.QUEUE: "gw-mpp",
}

edge_ints = st.sampled_from([-(2**63), -1, 0, 1, MAX_COUNT, MAX_COUNT + 1, 2**63 - 1, 2**64 - 1])
value = st.one_of(
    st.integers(-5, 60),
    edge_ints,
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
field_name = st.sampled_from(
    [f for fs in KIND_FIELDS.values() for f in fs] + ["bogus", "capacity ", ""]
)


@st.composite
def reading_values(draw: st.DrawFn, kind: SensorKind) -> dict[str, Any]:
    if draw(st.booleans()):  # mostly well-shaped, so the numeric rules are exercised
        vals = {name: draw(value) for name in KIND_FIELDS[kind]}
        if draw(st.booleans()):
            vals = {name: draw(st.integers(0, 50)) for name in KIND_FIELDS[kind]}
        return vals
    return draw(st.dictionaries(field_name, value, max_size=6))


timestamps = st.one_of(
    st.integers(NOW - 10**9, NOW + 2 * MAX_FUTURE_SKEW_MS),
    st.sampled_from(
        [
            NOW + MAX_FUTURE_SKEW_MS,
            NOW + MAX_FUTURE_SKEW_MS + 1,
            MIN_TIMESTAMP_MS,
            MIN_TIMESTAMP_MS - 1,
            0,
            2**63 - 1,
            -(2**63),
        ]
    ),
)


def msg(topic: str, doc: Any, i: int = 0) -> Message:
    payload = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return Message(topic=topic, payload=payload, received_ms=NOW, mid=i)


def bed(sensor: str = "bed-kariadi-icu", **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "sensor": sensor,
        "kind": "bed",
        "ts": NOW - 1000,
        "seq": 7,
        "values": {"capacity": 24, "occupied": 20, "suspect": 3, "confirmed": 5, "waiting": 2},
    }
    doc.update(over)
    return doc


TOPIC = "pantau/v1/rs-kariadi/gw-kariadi/readings"


KARIADI_SENSORS = ["bed-kariadi-icu", "bed-kariadi-hcu", "bed-wongso-icu", "nope", "q-mpp"]

plain_value = st.one_of(st.integers(-3, 40), edge_ints.filter(lambda v: -(2**63) <= v < 2**63))


@st.composite
def plain_readings(draw: st.DrawFn) -> dict[str, Any]:
    """Readings that are well-shaped JSON (so the fast path takes them) but may break any
    value, registry or time rule, and may be mistyped in ways only numpy can see."""
    kind = draw(st.sampled_from(list(SensorKind)))
    # mostly the kind's own fields; sometimes another kind's (wrong key set, same count)
    fields = KIND_FIELDS[draw(st.sampled_from(list(SensorKind))) if draw(st.booleans()) else kind]
    vals: dict[str, Any] = {f: draw(plain_value) for f in fields}
    if draw(st.integers(0, 9)) == 0:
        vals[fields[0]] = draw(st.sampled_from([1.5, "3", None, 2**63, True]))
    doc: dict[str, Any] = {
        "sensor": draw(st.sampled_from(KARIADI_SENSORS)),
        "kind": kind.value,
        "ts": draw(timestamps),
        "seq": draw(st.integers(-1, 2**40)),
        "values": vals,
    }
    if draw(st.booleans()):
        doc["clock"] = draw(st.sampled_from(["sensor", "gateway"]))
    return doc


def verdicts(out: Any) -> tuple[list[tuple[int | None, RejectReason]], list[list[int]]]:
    reasons = sorted(((r.index, r.reason) for r in out.rejections), key=lambda x: x[0] or 0)
    return reasons, out.readings.values.tolist()
