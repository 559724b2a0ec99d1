"""Shared by the decoder's unit tests (tests/unit/test_ingest_decode.py,
test_ingest_decode_binary.py): the demo city's sensors per kind, hypothesis strategies for
readings that may break any rule, and messages as the consumer hands them to the decoder."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from hypothesis import strategies as st

from cloud.ingest import CityIndex, Message, decode_window
from cloud.ingest.decode import DecodedWindow, envelope, json_native
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


def general_only(messages: list[Message], index: CityIndex, *, fast_path: str) -> DecodedWindow:
    """decode_window with the struct decoder ``envelope.<fast_path>`` (``decode_batch`` or
    ``decode_single``) refusing everything and the native decoder off: the general path alone,
    for differential tests."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(envelope, fast_path, lambda payload: None)
        mp.setattr(json_native, "ENABLED", False)
        return decode_window(messages, index, NOW)


def outcome(out: DecodedWindow) -> tuple[Any, ...]:
    """Everything a decoded window decides, comparable with ``==``."""
    r = out.readings
    return (
        [(x.message, x.reason, x.detail, x.index) for x in out.rejections],
        [getattr(r, name).tolist() for name in ("message", "index", "sensor", "kind", "ts")],
        r.seq.tolist(),
        r.values.tolist(),
        out.duplicates,
        out.batch_keys,
    )


#: a JSON number after a key, and a key: what ``json_edit`` changes
_NUMBER = re.compile(rb"(?<=:)-?\d+")
_KEY = re.compile(rb'"[a-z_]+":')
#: numbers and not-numbers a device might send where an integer belongs
ODD_NUMBERS = [
    b"1.0", b"1e2", b"true", b"false", b"null", b'"7"', b"-0", b"-1", b"[]", b"{}",
    b"9223372036854775807", b"9223372036854775808", b"-9223372036854775809",
    b"18446744073709551616",
]  # fmt: skip
#: the edits ``json_edit`` knows
JSON_EDITS = ("number", "key", "dup", "drop", "space", "cut")


def json_edit(draw: st.DrawFn, raw: bytes, edit: str, keys: list[bytes]) -> bytes:
    """``raw`` with one edit of JSON_EDITS: an odd number, a key replaced by one of ``keys``,
    a key repeated, a key dropped, whitespace, or cut short (unchanged if nothing fits)."""
    if edit == "number" and (nums := list(_NUMBER.finditer(raw))):
        at = draw(st.sampled_from(nums))
        return raw[: at.start()] + draw(st.sampled_from(ODD_NUMBERS)) + raw[at.end() :]
    if edit in ("key", "dup", "drop") and (found := list(_KEY.finditer(raw))):
        at = draw(st.sampled_from(found))
        if edit == "key":
            return raw[: at.start()] + draw(st.sampled_from(keys)) + raw[at.end() :]
        if edit == "dup":  # the same key again, with the value of the next key
            return raw[: at.start()] + at.group() + b'"crowd",' + raw[at.start() :]
        end = raw.find(b",", at.end())
        return raw[: at.start()] + raw[end + 1 :] if end > 0 else raw
    if edit == "space":
        return raw.replace(b",", b" ,\n\t", 1)
    if edit == "cut":
        return raw[: draw(st.integers(0, len(raw)))]
    return raw


@st.composite
def mutated_batch(draw: st.DrawFn) -> bytes:
    """A JSON batch's bytes, mostly well-formed, with a few edits a device or a fuzzer makes:
    a number swapped for a non-integer or an out-of-range one, a key renamed, duplicated or
    dropped, an escaped character, whitespace, a cut, another version or gateway."""
    readings = draw(st.lists(plain_readings(), min_size=1, max_size=6))
    if draw(st.booleans()):  # each reading with its own kind's field names: the struct path
        for r in readings:
            fields = KIND_FIELDS[SensorKind(r["kind"])]
            r["values"] = dict(zip(fields, [*r["values"].values(), 0, 0], strict=False))
    doc: dict[str, Any] = {"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": NOW}
    if draw(st.booleans()):
        doc["clock_offset_ms"] = draw(st.sampled_from([None, -3, 0.5]))
    doc["readings"] = readings
    raw = orjson.dumps(doc)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
        edit = draw(st.sampled_from([*JSON_EDITS, "escape", "envelope"]))
        if edit == "escape":
            raw = raw.replace(b"kariadi", draw(st.sampled_from([rb"kari\u0061di", b"kar\xc3\xa9"])))
        elif edit == "envelope":  # the batch's own fields: version, gateway
            old, new = draw(
                st.sampled_from(
                    [(b'"v":1', b'"v":' + v) for v in (b"2", b"0", b"true", b"1.0", b"-1")]
                    + [(b'"gw-kariadi"', b'"gw-johar"'), (b'"gw-kariadi"', b'"GW"')]
                )
            )
            raw = raw.replace(old, new, 1)
        else:
            raw = json_edit(draw, raw, edit, [b'"bogus":', b'"kind":', b'"values":', b'"v":'])
    return raw
