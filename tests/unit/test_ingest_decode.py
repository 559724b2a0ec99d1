"""The vectorised validator says exactly what contract.payload says, reading by reading."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from city import Registry
from cloud.ingest import REASONS, CityIndex, Message, check_readings, decode_window
from contract import KIND_FIELDS, RejectReason, SensorKind, check_timestamp, check_values
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


@settings(max_examples=300, deadline=None)
@given(
    cases=st.lists(
        st.sampled_from(list(SensorKind)).flatmap(
            lambda k: st.tuples(st.just(k), reading_values(k), timestamps)
        ),
        min_size=1,
        max_size=30,
    )
)
def test_vectorised_rules_agree_with_contract(
    city: Registry, cases: list[tuple[SensorKind, dict[str, Any], int]]
) -> None:
    """For random readings of registered sensors, the reason per reading is exactly
    contract.check_values(...) or else contract.check_timestamp(...)."""
    index = CityIndex.from_registry(city)
    raw = [
        {"sensor": SENSOR_OF[k], "kind": k.value, "ts": ts, "seq": 1, "values": vals}
        for k, vals, ts in cases
    ]
    gateway = np.array([index.gateway_pos[GATEWAY_OF[k]] for k, _, _ in cases], dtype=np.int32)
    cols, code = check_readings(raw, gateway, index, NOW)
    for i, (kind, vals, ts) in enumerate(cases):
        expected = check_values(kind, vals) or check_timestamp(ts, NOW)
        got = None if code[i] == 0 else REASONS[code[i] - 1]
        assert got == (expected[0] if expected else None), (kind, vals, ts)
        if got is None:
            assert cols.ts[i] == ts
            assert cols.values[i, : len(KIND_FIELDS[kind])].tolist() == [
                vals[f] for f in KIND_FIELDS[kind]
            ]


def _msg(topic: str, doc: Any, i: int = 0) -> Message:
    payload = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return Message(topic=topic, payload=payload, received_ms=NOW, mid=i)


def _bed(sensor: str = "bed-kariadi-icu", **over: Any) -> dict[str, Any]:
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


def test_reading_faults_reject_only_that_reading(city: Registry) -> None:
    """A batch with one bad reading of each kind of fault stores the good ones."""
    index = CityIndex.from_registry(city)
    readings = [
        _bed(),
        _bed("bed-wongso-icu"),  # another gateway's sensor
        _bed("nope"),
        _bed(kind="crowd"),
        _bed(values={"capacity": 2, "occupied": 3, "suspect": 0, "confirmed": 0, "waiting": 0}),
        _bed(ts=NOW + MAX_FUTURE_SKEW_MS + 1),
        _bed(seq=-1),
        _bed(extra=1),
        "not an object",
        _bed("bed-kariadi-hcu", ts=NOW - 5),
    ]
    batch = {"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": NOW, "readings": readings}
    out = decode_window([_msg(TOPIC, batch)], index, NOW)
    assert [(r.index, r.reason) for r in out.rejections] == [
        (1, RejectReason.UNKNOWN_SENSOR),
        (2, RejectReason.UNKNOWN_SENSOR),
        (3, RejectReason.KIND_MISMATCH),
        (4, RejectReason.OCCUPIED_EXCEEDS_CAPACITY),
        (5, RejectReason.FUTURE_TIMESTAMP),
        (6, RejectReason.SCHEMA_VIOLATION),
        (7, RejectReason.SCHEMA_VIOLATION),
        (8, RejectReason.SCHEMA_VIOLATION),
    ]
    assert out.readings.index.tolist() == [0, 9]
    assert out.readings.ts.tolist() == [NOW - 1000, NOW - 5]
    assert out.readings.values[0].tolist() == [24, 20, 3, 5, 2]
    assert out.readings.seq.tolist() == [7, 7]


def test_batch_faults_reject_the_whole_message(city: Registry) -> None:
    index = CityIndex.from_registry(city)
    good = {"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": NOW, "readings": [_bed()]}
    msgs = [
        _msg(TOPIC, b"{nope"),
        _msg(TOPIC, b'{"v": 1, "x": NaN}'),
        _msg(TOPIC, {**good, "v": 2}),
        _msg("pantau/v1/rs-kariadi/gw-ghost/readings", good),
        _msg("pantau/v1/pasar-johar/gw-kariadi/readings", good),
        _msg(TOPIC, {**good, "gw": "gw-johar"}),
        _msg(TOPIC, {**good, "readings": []}),
        _msg(TOPIC, b"[" + b" " * (256 * 1024) + b"]"),
        _msg(TOPIC, good),
    ]
    out = decode_window(msgs, index, NOW)
    assert [(r.message, r.reason, r.index) for r in out.rejections] == [
        (0, RejectReason.INVALID_JSON, None),
        (1, RejectReason.NON_FINITE, None),
        (2, RejectReason.UNSUPPORTED_VERSION, None),
        (3, RejectReason.UNKNOWN_GATEWAY, None),
        (4, RejectReason.TOPIC_MISMATCH, None),
        (5, RejectReason.TOPIC_MISMATCH, None),
        (6, RejectReason.SCHEMA_VIOLATION, None),
        (7, RejectReason.OVERSIZE, None),
    ]
    assert out.readings.message.tolist() == [8]


def test_single_reading_without_clock_is_stamped_on_receipt(city: Registry) -> None:
    index = CityIndex.from_registry(city)
    doc = {
        "v": 1,
        "sensor": "q-candisari",
        "kind": "queue",
        "values": {"issued": 40, "served": 31, "counters_open": 2},
    }
    msg = Message(
        topic="pantau/v1/kec-candisari/kiosk-candisari/reading",
        payload=orjson.dumps(doc),
        received_ms=NOW - 7,
    )
    out = decode_window([msg], index, NOW)
    assert out.rejections == []
    assert out.readings.ts.tolist() == [NOW - 7]
    assert out.readings.seq.tolist() == [0]
    assert out.readings.values[0, :3].tolist() == [40, 31, 2]
    assert out.readings.index.tolist() == [-1]
