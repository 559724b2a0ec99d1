"""The vectorised validator says exactly what contract.payload says, reading by reading."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from city import Registry
from cloud.ingest import REASONS, CityIndex, Message, check_readings, decode_window
from cloud.ingest.decode import BatchDedup
from contract import (
    KIND_CODES,
    KIND_FIELDS,
    Batch,
    RejectReason,
    SensorKind,
    check_timestamp,
    check_values,
    encode,
    encode_binary_batch,
)
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


# ---- plain-JSON fast path and binary batches judge exactly like the general path ----------

BINARY_TOPIC = TOPIC
_KARIADI_SENSORS = ["bed-kariadi-icu", "bed-kariadi-hcu", "bed-wongso-icu", "nope", "q-mpp"]

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
        "sensor": draw(st.sampled_from(_KARIADI_SENSORS)),
        "kind": kind.value,
        "ts": draw(timestamps),
        "seq": draw(st.integers(-1, 2**40)),
        "values": vals,
    }
    if draw(st.booleans()):
        doc["clock"] = draw(st.sampled_from(["sensor", "gateway"]))
    return doc


def _verdicts(out: Any) -> tuple[list[tuple[int | None, RejectReason]], list[list[int]]]:
    reasons = sorted(((r.index, r.reason) for r in out.rejections), key=lambda x: x[0] or 0)
    return reasons, out.readings.values.tolist()


@settings(max_examples=200, deadline=None)
@given(readings=st.lists(plain_readings(), min_size=1, max_size=20))
def test_fast_json_path_judges_like_the_general_path(
    city: Registry, readings: list[dict[str, Any]]
) -> None:
    """decode_window on a batch equals check_readings (the general path, which the property
    test above proves equal to the contract) reading by reading."""
    index = CityIndex.from_registry(city)
    batch = {"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": NOW, "readings": readings}
    out = decode_window([_msg(TOPIC, batch)], index, NOW)
    gateway = np.full(len(readings), index.gateway_pos["gw-kariadi"], dtype=np.int32)
    cols, code = check_readings(readings, gateway, index, NOW)
    expected = [(i, REASONS[c - 1]) for i, c in enumerate(code.tolist()) if c]
    assert sorted((r.index, r.reason) for r in out.rejections) == expected
    ok = code == 0
    assert out.readings.values.tolist() == cols.values[ok].tolist()
    assert out.readings.ts.tolist() == cols.ts[ok].tolist()
    assert out.readings.seq.tolist() == cols.seq[ok].tolist()
    assert out.readings.sensor.tolist() == cols.sensor[ok].tolist()


def _binary_of(
    readings: list[dict[str, Any]], gw: str = "gw-kariadi", seq: int = 1, sent: int = NOW
) -> bytes:
    sensors = sorted({r["sensor"] for r in readings})
    return encode_binary_batch(
        gw=gw,
        seq=seq,
        sent=sent,
        sensors=sensors,
        kinds=[KIND_CODES[SensorKind(r_kind)] for r_kind in _kind_of_sensor(readings, sensors)],
        sensor=[sensors.index(r["sensor"]) for r in readings],
        ts=[r["ts"] for r in readings],
        reading_seq=[r["seq"] for r in readings],
        values=[list(r["values"].values()) for r in readings],
        clock=[0 if r.get("clock", "sensor") == "sensor" else 1 for r in readings],
    )


def _kind_of_sensor(readings: list[dict[str, Any]], sensors: list[str]) -> list[str]:
    return [next(r["kind"] for r in readings if r["sensor"] == s) for s in sensors]


@st.composite
def binary_able_readings(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Readings a binary batch can carry: one kind per sensor, the kind's own fields."""
    n = draw(st.integers(1, 20))
    kind_of = {s: draw(st.sampled_from(list(SensorKind))) for s in _KARIADI_SENSORS}
    out = []
    for _ in range(n):
        sensor = draw(st.sampled_from(_KARIADI_SENSORS))
        kind = kind_of[sensor]
        out.append(
            {
                "sensor": sensor,
                "kind": kind.value,
                "ts": draw(timestamps),
                "seq": draw(st.integers(0, 2**40)),
                "values": {f: draw(plain_value) for f in KIND_FIELDS[kind]},
            }
        )
    return out


@settings(max_examples=200, deadline=None)
@given(readings=binary_able_readings())
def test_binary_readings_are_judged_like_their_json_twins(
    city: Registry, readings: list[dict[str, Any]]
) -> None:
    """The same readings as a JSON batch and as a binary batch: the same reading is refused
    for the same reason, and the accepted columns are identical."""
    index = CityIndex.from_registry(city)
    batch = {"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": NOW, "readings": readings}
    as_json = decode_window([_msg(TOPIC, batch)], index, NOW)
    as_binary = decode_window([_msg(TOPIC, _binary_of(readings))], index, NOW)
    assert _verdicts(as_binary) == _verdicts(as_json)
    for name in ("sensor", "kind", "ts", "seq", "index"):
        assert (
            getattr(as_binary.readings, name).tolist() == getattr(as_json.readings, name).tolist()
        )


def test_binary_faults_reject_the_batch_or_the_reading(city: Registry) -> None:
    index = CityIndex.from_registry(city)
    good = [_bed(), _bed("bed-kariadi-hcu")]
    raw = _binary_of(good)
    padded = bytearray(raw)
    out = decode_window(
        [
            _msg(TOPIC, raw[:-3]),  # truncated
            _msg(TOPIC, _binary_of(good, gw="gw-johar")),  # gw is not the topic's
            _msg("pantau/v1/rs-kariadi/gw-kariadi/reading", raw),  # not a batch topic
            _msg(TOPIC, bytes(padded)),
        ],
        index,
        NOW,
    )
    assert [(r.message, r.reason, r.index) for r in out.rejections] == [
        (0, RejectReason.INVALID_BINARY, None),
        (1, RejectReason.TOPIC_MISMATCH, None),
        (2, RejectReason.INVALID_JSON, None),
    ]
    assert out.readings.message.tolist() == [3, 3]
    assert out.readings.values[0].tolist() == [24, 20, 3, 5, 2]
    # a non-zero value past a crowd sensor's three fields is a schema violation
    crowd = encode_binary_batch(
        gw="gw-johar", seq=2, sent=NOW, sensors=["crowd-johar-utara"], kinds=[2],
        sensor=[0, 0], ts=[NOW - 1, NOW], reading_seq=[1, 2],
        values=[[5, 1, 4, 0, 0], [5, 1, 4, 0, 9]], clock=[0, 7],
    )  # fmt: skip
    out = decode_window([_msg("pantau/v1/pasar-johar/gw-johar/readings", crowd)], index, NOW)
    assert [(r.index, r.reason) for r in out.rejections] == [(1, RejectReason.SCHEMA_VIOLATION)]
    assert out.readings.index.tolist() == [0]


def test_mixed_forms_keep_arrival_order(city: Registry) -> None:
    """JSON (fast and general path) and binary messages in one window come out in message
    order: the state breaks ties between equal observation times by arrival."""
    index = CityIndex.from_registry(city)
    readings = [_bed(ts=NOW - 10)]
    flagged = [{**_bed(ts=NOW - 10), "clock": "gateway"}]
    msgs = [
        _msg(TOPIC, _binary_of(readings, seq=1)),
        _msg(TOPIC, {"v": 1, "gw": "gw-kariadi", "seq": 2, "sent": NOW, "readings": readings}),
        _msg(TOPIC, {"v": 1, "gw": "gw-kariadi", "seq": 3, "sent": NOW, "readings": flagged}),
        _msg(TOPIC, {"v": 1, "gw": "gw-kariadi", "seq": 4, "sent": NOW,
                     "readings": [*readings, _bed(extra=1)]}),  # general path
        _msg(TOPIC, _binary_of(readings, seq=5)),
    ]  # fmt: skip
    out = decode_window(msgs, index, NOW)
    assert [(r.message, r.index, r.reason) for r in out.rejections] == [
        (3, 1, RejectReason.SCHEMA_VIOLATION)
    ]
    assert out.readings.message.tolist() == [0, 1, 2, 3, 4]


def test_duplicate_batches_are_dropped_not_decoded(city: Registry) -> None:
    """A batch already stored, or seen earlier in the window, is a duplicate, also when the
    gateway restamped ``sent`` on the resend; the same seq with other readings (a gateway that
    restarted its numbering) is not."""
    index = CityIndex.from_registry(city)
    dedup = BatchDedup(per_gateway=2)
    b1 = {"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": NOW, "readings": [_bed()]}
    # as the edge re-encodes it: readings last, the envelope restamped
    b1_again = _msg(
        TOPIC, encode(Batch.model_validate({**b1, "sent": NOW + 1, "clock_offset_ms": 3}))
    )
    b1_new_content = _msg(TOPIC, {**b1, "readings": [_bed(ts=NOW - 1)]})
    binary = _msg(TOPIC, _binary_of([_bed()], seq=9))
    first = _msg(TOPIC, encode(Batch.model_validate(b1)))
    out = decode_window([first, b1_again, binary, binary], index, NOW, dedup=dedup)
    assert out.duplicates == [1, 3]
    assert len(out.readings) == 2
    dedup.remember(out.batch_keys)
    binary_resent = _msg(TOPIC, _binary_of([_bed()], seq=9, sent=NOW + 5))
    out = decode_window([b1_again, b1_new_content, binary_resent], index, NOW, dedup=dedup)
    assert out.duplicates == [0, 2]
    assert out.readings.message.tolist() == [1]
    dedup.remember(out.batch_keys)
    # memory is bounded: the gateway's two most recent batches are remembered, b1 is forgotten
    # (remembered, then superseded by its new content under the same seq, then by seq 9's)
    dedup.remember([(0, 100, 0), (0, 101, 0)])
    assert len(dedup) == 2
    out = decode_window([binary], index, NOW, dedup=dedup)
    assert out.duplicates == []


def test_refused_readings_of_plain_and_binary_batches_say_why(city: Registry) -> None:
    """Details of refused readings are the contract's words, whichever path decoded them; a
    binary reading's detail also names the reading and the byte offset of the refused value."""
    index = CityIndex.from_registry(city)
    readings = [_bed(), _bed("bed-wongso-icu", seq=2), _bed(ts=NOW + MAX_FUTURE_SKEW_MS + 1)]
    plain = {"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": NOW, "readings": readings}
    words = [
        "sensor 'bed-wongso-icu' is not registered to this gateway",
        f"ts {NOW + MAX_FUTURE_SKEW_MS + 1} is {MAX_FUTURE_SKEW_MS + 1} ms ahead",
    ]
    binary_words = [
        "reading 1: sensor 'bed-wongso-icu' (table entry 1, index at byte 82)"
        " is not registered to this gateway",
        f"reading 2: ts at byte 104: {words[1]}",
    ]
    for payload, expected in ((orjson.dumps(plain), words), (_binary_of(readings), binary_words)):
        first = {**plain, "seq": 0, "readings": [_bed()]}  # so row != reading index
        out = decode_window([_msg(TOPIC, first), _msg(TOPIC, payload)], index, NOW)
        assert out.rejections[0].message == 1
        got = [(r.message, r.index, r.reason, r.detail) for r in out.rejections if r.message]
        assert got == [
            (1, 1, RejectReason.UNKNOWN_SENSOR, expected[0]),
            (1, 2, RejectReason.FUTURE_TIMESTAMP, expected[1]),
        ]
