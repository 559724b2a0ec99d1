"""The vectorised validator says exactly what contract.payload says, reading by reading."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from city import Registry
from cloud.ingest import REASONS, CityIndex, Message, check_readings, decode_window
from contract import (
    KIND_FIELDS,
    RejectReason,
    SensorKind,
    check_timestamp,
    check_values,
)
from contract.payload import MAX_FUTURE_SKEW_MS
from tests.ingest_decode_support import (
    GATEWAY_OF,
    NOW,
    SENSOR_OF,
    TOPIC,
    bed,
    msg,
    plain_readings,
    reading_values,
    timestamps,
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


def test_reading_faults_reject_only_that_reading(city: Registry) -> None:
    """A batch with one bad reading of each kind of fault stores the good ones."""
    index = CityIndex.from_registry(city)
    readings = [
        bed(),
        bed("bed-wongso-icu"),  # another gateway's sensor
        bed("nope"),
        bed(kind="crowd"),
        bed(values={"capacity": 2, "occupied": 3, "suspect": 0, "confirmed": 0, "waiting": 0}),
        bed(ts=NOW + MAX_FUTURE_SKEW_MS + 1),
        bed(seq=-1),
        bed(extra=1),
        "not an object",
        bed("bed-kariadi-hcu", ts=NOW - 5),
    ]
    batch = {"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": NOW, "readings": readings}
    out = decode_window([msg(TOPIC, batch)], index, NOW)
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
    good = {"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": NOW, "readings": [bed()]}
    msgs = [
        msg(TOPIC, b"{nope"),
        msg(TOPIC, b'{"v": 1, "x": NaN}'),
        msg(TOPIC, {**good, "v": 2}),
        msg("pantau/v1/rs-kariadi/gw-ghost/readings", good),
        msg("pantau/v1/pasar-johar/gw-kariadi/readings", good),
        msg(TOPIC, {**good, "gw": "gw-johar"}),
        msg(TOPIC, {**good, "readings": []}),
        msg(TOPIC, b"[" + b" " * (256 * 1024) + b"]"),
        msg(TOPIC, good),
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


@settings(max_examples=200, deadline=None)
@given(readings=st.lists(plain_readings(), min_size=1, max_size=20))
def test_fast_json_path_judges_like_the_general_path(
    city: Registry, readings: list[dict[str, Any]]
) -> None:
    """decode_window on a batch equals check_readings (the general path, which the property
    test above proves equal to the contract) reading by reading."""
    index = CityIndex.from_registry(city)
    batch = {"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": NOW, "readings": readings}
    out = decode_window([msg(TOPIC, batch)], index, NOW)
    gateway = np.full(len(readings), index.gateway_pos["gw-kariadi"], dtype=np.int32)
    cols, code = check_readings(readings, gateway, index, NOW)
    expected = [(i, REASONS[c - 1]) for i, c in enumerate(code.tolist()) if c]
    assert sorted((r.index, r.reason) for r in out.rejections) == expected
    ok = code == 0
    assert out.readings.values.tolist() == cols.values[ok].tolist()
    assert out.readings.ts.tolist() == cols.ts[ok].tolist()
    assert out.readings.seq.tolist() == cols.seq[ok].tolist()
    assert out.readings.sensor.tolist() == cols.sensor[ok].tolist()
