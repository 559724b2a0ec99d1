"""Topics and payloads of the wire contract: what is valid, and why the rest is refused."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from contract import (
    MAX_PAYLOAD_BYTES,
    Batch,
    Channel,
    PayloadError,
    Reading,
    RejectReason,
    SensorKind,
    SingleReading,
    TopicError,
    check_timestamp,
    check_values,
    check_version,
    encode,
    load_json,
    topics,
)
from contract.payload import MAX_FUTURE_SKEW_MS, MIN_TIMESTAMP_MS

NOW = 1_795_000_000_000


def test_topic_build_and_parse_round_trip() -> None:
    t = topics.build("rs-kariadi", "gw-kariadi", Channel.READINGS)
    assert t == "pantau/v1/rs-kariadi/gw-kariadi/readings"
    parsed = topics.parse(t)
    assert (parsed.site, parsed.gateway, parsed.channel) == (
        "rs-kariadi",
        "gw-kariadi",
        Channel.READINGS,
    )
    assert str(parsed) == t


@pytest.mark.parametrize(
    "bad",
    [
        "pantau/v2/s/g/readings",
        "pantau/v1/s/g/nope",
        "pantau/v1/s/readings",
        "other/v1/s/g/readings",
        "pantau/v1/s p/g/readings",
    ],
)
def test_foreign_topics_are_refused(bad: str) -> None:
    with pytest.raises(TopicError):
        topics.parse(bad)
    with pytest.raises(TopicError):  # a refusal is never remembered as a parse
        topics.parse(bad)


def test_a_topic_is_parsed_once_and_the_cache_is_bounded() -> None:
    t = topics.build("rs-kariadi", "gw-kariadi", Channel.STATUS)
    assert topics.parse(t) is topics.parse(t)
    assert topics.parse.cache_info().maxsize == 16384


def test_build_refuses_ids_that_would_break_topics() -> None:
    with pytest.raises(TopicError):
        topics.build("site/evil", "gw", Channel.STATUS)
    with pytest.raises(TopicError):
        topics.build("site", "gw+#", Channel.STATUS)


def test_shared_subscription_form() -> None:
    sub = topics.shared("ingest", topics.subscription(Channel.READINGS))
    assert sub == "$share/ingest/pantau/v1/+/+/readings"


BED = {"capacity": 10, "occupied": 8, "suspect": 2, "confirmed": 3, "waiting": 1}


@pytest.mark.parametrize(
    ("kind", "values", "reason"),
    [
        (SensorKind.BED, BED, None),
        (SensorKind.BED, {**BED, "occupied": 11}, RejectReason.OCCUPIED_EXCEEDS_CAPACITY),
        (SensorKind.BED, {**BED, "suspect": 6}, RejectReason.OCCUPIED_EXCEEDS_CAPACITY),
        (SensorKind.BED, {**BED, "waiting": -1}, RejectReason.NEGATIVE_COUNT),
        (SensorKind.BED, {"capacity": 1}, RejectReason.SCHEMA_VIOLATION),
        (SensorKind.CROWD, {"entries": 5, "exits": 2, "occupancy": 3}, None),
        (
            SensorKind.QUEUE,
            {"issued": 5, "served": 6, "counters_open": 1},
            RejectReason.SCHEMA_VIOLATION,
        ),
        (
            SensorKind.QUEUE,
            {"issued": 5, "served": 2, "counters_open": True},
            RejectReason.SCHEMA_VIOLATION,
        ),
    ],
)
def test_value_rules(kind: SensorKind, values: dict[str, int], reason: RejectReason | None) -> None:
    broken = check_values(kind, values)
    assert (broken[0] if broken else None) == reason


def test_timestamp_rules() -> None:
    assert check_timestamp(NOW + MAX_FUTURE_SKEW_MS, NOW) is None
    future = check_timestamp(NOW + MAX_FUTURE_SKEW_MS + 1, NOW)
    assert future is not None
    assert future[0] is RejectReason.FUTURE_TIMESTAMP
    ancient = check_timestamp(MIN_TIMESTAMP_MS - 1, NOW)
    assert ancient is not None
    assert ancient[0] is RejectReason.ANCIENT_TIMESTAMP


def test_batch_encodes_and_validates_back() -> None:
    batch = Batch(
        gw="gw-1",
        seq=4,
        sent=NOW,
        readings=[Reading(sensor="bed-1", kind=SensorKind.BED, ts=NOW, seq=1, values=BED)],
    )
    doc = load_json(encode(batch))
    check_version(doc)
    assert Batch.model_validate(doc) == batch


def test_reading_model_refuses_inconsistent_values() -> None:
    with pytest.raises(ValidationError, match="occupied_exceeds_capacity"):
        Reading(sensor="b", kind=SensorKind.BED, ts=NOW, seq=0, values={**BED, "occupied": 99})


def test_counts_must_be_integers_not_numeric_strings_or_floats() -> None:
    for bad in ("8", 8.0):
        with pytest.raises(ValidationError):
            Reading.model_validate(
                {
                    "sensor": "b",
                    "kind": "bed",
                    "ts": NOW,
                    "seq": 0,
                    "values": {**BED, "occupied": bad},
                }
            )


def test_single_reading_may_omit_time() -> None:
    doc = {
        "v": 1,
        "sensor": "q-1",
        "kind": "queue",
        "values": {"issued": 3, "served": 1, "counters_open": 1},
    }
    single = SingleReading.model_validate(doc)
    assert single.ts is None
    assert single.seq == 0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", RejectReason.INVALID_JSON),
        (b'{"v": NaN}', RejectReason.NON_FINITE),
        (b'{"v": 1, "x": -Infinity}', RejectReason.NON_FINITE),
        (b"\xff\xfe", RejectReason.INVALID_JSON),
        (b" " * (MAX_PAYLOAD_BYTES + 1), RejectReason.OVERSIZE),
        # a valid JSON number no double holds is a non-finite number, not broken JSON
        (b'{"v": 1, "x": 1e400}', RejectReason.NON_FINITE),
        (b'{"v": 1, "x": -1e400}', RejectReason.NON_FINITE),
        (b'{"v": 1, "x": ' + b"9" * 400 + b"}", RejectReason.NON_FINITE),
        # 1 100 levels: orjson stops at 1 024, and json's fallback parse used to raise
        # RecursionError (which killed the ingester)
        (b"[" * 1100 + b"]" * 1100, RejectReason.INVALID_JSON),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, RejectReason.INVALID_JSON),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_load_json_names_the_reason(raw: bytes, reason: RejectReason) -> None:
    with pytest.raises(PayloadError) as err:
        load_json(raw)
    assert err.value.reason is reason


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"v": 2}, RejectReason.UNSUPPORTED_VERSION),
        ([1], RejectReason.SCHEMA_VIOLATION),
        # equal to 1 in Python, but not the integer 1
        ({"v": True}, RejectReason.UNSUPPORTED_VERSION),
        ({"v": 1.0}, RejectReason.UNSUPPORTED_VERSION),
        ({"v": "1"}, RejectReason.UNSUPPORTED_VERSION),
        ({"v": [[[1]]]}, RejectReason.UNSUPPORTED_VERSION),
    ],
)
def test_check_version(doc: object, reason: RejectReason) -> None:
    with pytest.raises(PayloadError) as err:
        check_version(orjson.loads(orjson.dumps(doc)))
    assert err.value.reason is reason
    assert len(err.value.detail) < 60  # a device's value is echoed only if it is a scalar
