"""Binary batches are judged exactly like their JSON twins, and their faults refuse the batch or
the reading with the reason the contract gives."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from city import Registry
from cloud.ingest import CityIndex, decode_window
from cloud.ingest.decode import BatchDedup
from contract import (
    KIND_CODES,
    KIND_FIELDS,
    Batch,
    RejectReason,
    SensorKind,
    encode,
    encode_binary_batch,
)
from contract.payload import MAX_FUTURE_SKEW_MS
from tests.ingest_decode_support import (
    KARIADI_SENSORS,
    NOW,
    TOPIC,
    bed,
    msg,
    plain_value,
    timestamps,
    verdicts,
)


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
    kind_of = {s: draw(st.sampled_from(list(SensorKind))) for s in KARIADI_SENSORS}
    out = []
    for _ in range(n):
        sensor = draw(st.sampled_from(KARIADI_SENSORS))
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
    as_json = decode_window([msg(TOPIC, batch)], index, NOW)
    as_binary = decode_window([msg(TOPIC, _binary_of(readings))], index, NOW)
    assert verdicts(as_binary) == verdicts(as_json)
    for name in ("sensor", "kind", "ts", "seq", "index"):
        assert (
            getattr(as_binary.readings, name).tolist() == getattr(as_json.readings, name).tolist()
        )


def test_binary_faults_reject_the_batch_or_the_reading(city: Registry) -> None:
    index = CityIndex.from_registry(city)
    good = [bed(), bed("bed-kariadi-hcu")]
    raw = _binary_of(good)
    padded = bytearray(raw)
    out = decode_window(
        [
            msg(TOPIC, raw[:-3]),  # truncated
            msg(TOPIC, _binary_of(good, gw="gw-johar")),  # gw is not the topic's
            msg("pantau/v1/rs-kariadi/gw-kariadi/reading", raw),  # not a batch topic
            msg(TOPIC, bytes(padded)),
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
    out = decode_window([msg("pantau/v1/pasar-johar/gw-johar/readings", crowd)], index, NOW)
    assert [(r.index, r.reason) for r in out.rejections] == [(1, RejectReason.SCHEMA_VIOLATION)]
    assert out.readings.index.tolist() == [0]


def test_mixed_forms_keep_arrival_order(city: Registry) -> None:
    """JSON (fast and general path) and binary messages in one window come out in message
    order: the state breaks ties between equal observation times by arrival."""
    index = CityIndex.from_registry(city)
    readings = [bed(ts=NOW - 10)]
    flagged = [{**bed(ts=NOW - 10), "clock": "gateway"}]
    msgs = [
        msg(TOPIC, _binary_of(readings, seq=1)),
        msg(TOPIC, {"v": 1, "gw": "gw-kariadi", "seq": 2, "sent": NOW, "readings": readings}),
        msg(TOPIC, {"v": 1, "gw": "gw-kariadi", "seq": 3, "sent": NOW, "readings": flagged}),
        msg(TOPIC, {"v": 1, "gw": "gw-kariadi", "seq": 4, "sent": NOW,
                     "readings": [*readings, bed(extra=1)]}),  # general path
        msg(TOPIC, _binary_of(readings, seq=5)),
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
    b1 = {"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": NOW, "readings": [bed()]}
    # as the edge re-encodes it: readings last, the envelope restamped
    b1_again = msg(
        TOPIC, encode(Batch.model_validate({**b1, "sent": NOW + 1, "clock_offset_ms": 3}))
    )
    b1_new_content = msg(TOPIC, {**b1, "readings": [bed(ts=NOW - 1)]})
    binary = msg(TOPIC, _binary_of([bed()], seq=9))
    first = msg(TOPIC, encode(Batch.model_validate(b1)))
    out = decode_window([first, b1_again, binary, binary], index, NOW, dedup=dedup)
    assert out.duplicates == [1, 3]
    assert len(out.readings) == 2
    dedup.remember(out.batch_keys)
    binary_resent = msg(TOPIC, _binary_of([bed()], seq=9, sent=NOW + 5))
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
    readings = [bed(), bed("bed-wongso-icu", seq=2), bed(ts=NOW + MAX_FUTURE_SKEW_MS + 1)]
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
        first = {**plain, "seq": 0, "readings": [bed()]}  # so row != reading index
        out = decode_window([msg(TOPIC, first), msg(TOPIC, payload)], index, NOW)
        assert out.rejections[0].message == 1
        got = [(r.message, r.index, r.reason, r.detail) for r in out.rejections if r.message]
        assert got == [
            (1, 1, RejectReason.UNKNOWN_SENSOR, expected[0]),
            (1, 2, RejectReason.FUTURE_TIMESTAMP, expected[1]),
        ]
