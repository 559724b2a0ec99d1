"""The single-reading struct decoder (cloud.ingest.decode.single_structs) changes how fast a
direct device's reading is decoded, never what is decided: on any bytes, decode_window gives
exactly what the general path alone gives (the path test_ingest_decode.py proves equal to the
contract)."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from city import Registry
from cloud.ingest import CityIndex, decode_window
from cloud.ingest.decode import Message
from cloud.ingest.decode.single_structs import SINGLE_KIND_OF_TYPE, decode_single
from contract import KIND_CODES, KIND_FIELDS, SensorKind, SingleReading
from tests.ingest_decode_support import (
    JSON_EDITS,
    NOW,
    general_only,
    json_edit,
    outcome,
    plain_readings,
)

KIOSK = "pantau/v1/kec-candisari/kiosk-candisari/reading"
#: a batch gateway on the single topic, an unknown gateway, a wrong site
_OTHER_TOPICS = [
    "pantau/v1/rs-kariadi/gw-kariadi/reading",
    "pantau/v1/kec-candisari/kiosk-nowhere/reading",
    "pantau/v1/rs-kariadi/kiosk-candisari/reading",
]
_QUEUE = {"issued": 40, "served": 31, "counters_open": 2}


def _single(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"v": 1, "sensor": "q-candisari", "kind": "queue", "values": _QUEUE}
    doc.update(over)
    return doc


@st.composite
def mutated_single(draw: st.DrawFn) -> bytes:
    """A single reading's bytes, mostly well-formed (the kiosk's own sensor, or any other),
    with or without ts and seq, then a few edits a device or a fuzzer makes: a number swapped
    for a non-integer or an out-of-range one, a key renamed, duplicated or dropped, whitespace,
    a cut, another version."""
    r = draw(plain_readings())
    if draw(st.booleans()):  # the kiosk's own sensor, with its kind's field names
        r["sensor"], r["kind"] = "q-candisari", "queue"
        fields = KIND_FIELDS[SensorKind.QUEUE]
        r["values"] = dict(zip(fields, [*r["values"].values(), 0, 0], strict=False))
    doc: dict[str, Any] = {"v": 1, **r}
    if not draw(st.integers(0, 3)):
        doc.pop("clock", None)  # a single reading has no clock: with one it is refused
    for key in ("ts", "seq"):
        how = draw(st.sampled_from(["keep", "keep", "drop", "null"]))
        if how == "drop":
            doc.pop(key)
        elif how == "null":
            doc[key] = None
    raw = orjson.dumps(doc)
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        edit = draw(st.sampled_from([*JSON_EDITS, "version"]))
        if edit == "version":
            raw = raw.replace(b'"v":1', b'"v":' + draw(st.sampled_from([b"2", b"true", b"1.0"])))
        else:
            keys = [b'"bogus":', b'"kind":', b'"ts":', b'"v":']
            raw = json_edit(draw, raw, edit, keys)
    return raw


@settings(max_examples=400, deadline=None)
@given(
    sent=st.lists(
        st.tuples(st.sampled_from([KIOSK, KIOSK, KIOSK, *_OTHER_TOPICS]), mutated_single()),
        min_size=1,
        max_size=4,
    )
)
@example(sent=[(KIOSK, orjson.dumps(_single(ts=None, seq=3)))])
@example(sent=[(KIOSK, orjson.dumps(_single(clock="sensor")))])
@example(sent=[(KIOSK, orjson.dumps(_single(seq=-1, ts=NOW + 10**9)))])
@example(sent=[(KIOSK, orjson.dumps(_single())), (KIOSK, orjson.dumps(_single()))])
def test_single_decoder_decides_exactly_like_the_general_path(
    city: Registry, sent: list[tuple[str, bytes]]
) -> None:
    """For any bytes on a single-reading topic (valid readings, mutated ones, broken JSON, a
    batch gateway's or an unknown gateway's topic), every refusal with its reason, detail and
    position, every stored column (the receipt time stamped where ts is missing or null), and
    the absence of dedup are the same with and without the struct decoder."""
    index = CityIndex.from_registry(city)
    messages = [
        Message(topic=t, payload=p, received_ms=NOW - 7 - i, mid=i) for i, (t, p) in enumerate(sent)
    ]
    assert outcome(decode_window(messages, index, NOW)) == outcome(
        general_only(messages, index, fast_path="decode_single")
    )


def test_single_struct_types_have_the_contract_models_fields() -> None:
    """A field added to or renamed in contract.SingleReading must be typed here too (else every
    single reading would silently take the slow path); the defaults are the model's."""
    for struct, code in SINGLE_KIND_OF_TYPE.items():
        config = struct.__struct_config__
        assert {*struct.__struct_fields__, config.tag_field} == set(SingleReading.model_fields)
        kind = next(k for k, c in KIND_CODES.items() if c == code)
        assert config.tag == kind.value
        assert struct.__annotations__["values"].__struct_fields__ == KIND_FIELDS[kind]
        defaults = dict(zip(struct.__struct_fields__[-2:], struct.__struct_defaults__, strict=True))
        assert defaults == {"ts": None, "seq": 0}


def test_a_well_formed_single_reading_takes_the_struct_path_and_a_faulty_one_does_not() -> None:
    """decode_single accepts what needs no general path (a bad seq, a future ts or an unknown
    sensor is judged later, on columns) and refuses the rest whole."""
    got = decode_single(orjson.dumps(_single(seq=-1, sensor="nope")))
    assert got is not None
    assert (type(got).__name__, got.sensor, got.ts, got.seq) == (
        "SingleQueueReading",
        "nope",
        None,
        -1,
    )
    for bad in (
        _single(v=True),
        _single(v=2),
        _single(clock="sensor"),
        _single(ts=2**63),
        _single(values={"issued": 1}),
        _single(kind="tide"),
        {k: v for k, v in _single().items() if k != "v"},
    ):
        assert decode_single(orjson.dumps(bad)) is None, bad


def test_single_readings_of_one_window_are_columns_in_arrival_order(city: Registry) -> None:
    """Three kiosk readings in one window: the valid two stored in order with position -1,
    the one without ts stamped with its own receipt time, the unknown sensor refused alone,
    and the same reading sent twice kept twice (single readings are never deduplicated)."""
    index = CityIndex.from_registry(city)
    docs = [_single(ts=NOW - 50, seq=4), _single(sensor="nope"), _single(), _single()]
    messages = [
        Message(topic=KIOSK, payload=orjson.dumps(d), received_ms=NOW - 10 * i, mid=i)
        for i, d in enumerate(docs)
    ]
    out = decode_window(messages, index, NOW)
    assert [(r.message, r.reason.value, r.index) for r in out.rejections] == [
        (1, "unknown_sensor", None)
    ]
    assert out.readings.message.tolist() == [0, 2, 3]
    assert out.readings.index.tolist() == [-1, -1, -1]
    assert out.readings.ts.tolist() == [NOW - 50, NOW - 20, NOW - 30]
    assert out.readings.seq.tolist() == [4, 0, 0]
    assert out.readings.values[:, :3].tolist() == [[40, 31, 2]] * 3
    assert out.duplicates == []
    assert out.batch_keys == []
