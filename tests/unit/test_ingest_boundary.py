"""Nothing one message contains fails its window: an unexpected exception is pinned on that
message (internal_error) and the rest of the window decodes exactly as it would alone; status
stats are the contract's, so no status adds field keys or breaks line protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from city import Registry
from cloud.ingest import CityIndex, Message, decode_window
from cloud.ingest.boundary import decode_isolating, status_lines
from cloud.ingest.decode import DecodedWindow, StatusUpdate
from cloud.ingest.writer import PointBuilder
from contract import RejectReason

NOW = 1_795_000_000_000
BATCH_TOPIC = "pantau/v1/rs-kariadi/gw-kariadi/readings"
STATUS_TOPIC = "pantau/v1/rs-kariadi/gw-kariadi/status"
KIOSK_TOPIC = "pantau/v1/kec-candisari/kiosk-candisari/reading"
MARKER = b"raise-inside-decode"


def _msg(topic: str, doc: Any) -> Message:
    payload = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return Message(topic=topic, payload=payload, received_ms=NOW)


def _batch(seq: int, n: int) -> dict[str, Any]:
    values = {"capacity": 24, "occupied": 20, "suspect": 3, "confirmed": 5, "waiting": 2}
    readings = [
        {
            "sensor": "bed-kariadi-icu",
            "kind": "bed",
            "ts": NOW - 1000 + i,
            "seq": i,
            "values": values,
        }
        for i in range(n)
    ]
    return {"v": 1, "gw": "gw-kariadi", "seq": seq, "sent": NOW, "readings": readings}


def _status(stats: dict[str, Any]) -> dict[str, Any]:
    return {"v": 1, "gw": "gw-kariadi", "state": "online", "ts": NOW, "stats": stats}


def test_an_exception_while_decoding_one_message_dead_letters_only_that_message(
    city: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    index = CityIndex.from_registry(city)
    window = [
        _msg(BATCH_TOPIC, _batch(1, 3)),
        _msg(BATCH_TOPIC, _batch(2, 2)),
        _msg(STATUS_TOPIC, _status({"frames": 4})),
        _msg(BATCH_TOPIC, MARKER),  # stands for a bug no test knows yet
        _msg(BATCH_TOPIC, b"{not json"),
        _msg(BATCH_TOPIC, _batch(3, 4)),
        _msg(BATCH_TOPIC, _batch(4, 1)),
    ]
    calls: list[int] = []

    def buggy(part: Sequence[Message]) -> DecodedWindow:
        calls.append(len(part))
        if any(m.payload == MARKER for m in part):
            raise RecursionError("a bug below the contract")
        return decode_window(part, index, NOW)

    out = decode_isolating(window, buggy)
    assert [(r.message, r.reason, r.index) for r in out.rejections] == [
        (3, RejectReason.INTERNAL_ERROR, None),
        (4, RejectReason.INVALID_JSON, None),
    ]
    assert out.rejections[0].detail == "RecursionError while decoding"
    assert [s.message for s in out.statuses] == [2]
    # every reading of the other messages, in window order, with its message's position
    assert out.readings.message.tolist() == [0, 0, 0, 1, 1, 5, 5, 5, 5, 6]
    assert out.readings.ts.tolist() == [NOW - 1000 + i for i in (0, 1, 2, 0, 1, 0, 1, 2, 3, 0)]
    assert [(k[0], k[1]) for k in out.batch_keys] == [(0, 1), (0, 2), (0, 3), (0, 4)]
    # the window; its halves [0:3] (fine) and [3:7] (fails); [3:5] (fails): [3:4] is the
    # culprit, [4:5] fine; then [5:7] fine. Each part decoded once.
    assert calls == [7, 3, 4, 2, 1, 1, 2]
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1
    assert "pantau/v1/rs-kariadi/gw-kariadi/readings" in tracebacks[0].getMessage()


def test_a_window_that_decodes_is_decoded_once(city: Registry) -> None:
    index = CityIndex.from_registry(city)
    calls: list[int] = []

    def counting(part: Sequence[Message]) -> DecodedWindow:
        calls.append(len(part))
        return decode_window(part, index, NOW)

    out = decode_isolating([_msg(BATCH_TOPIC, _batch(1, 2))] * 3, counting)
    assert calls == [3]
    assert len(out.duplicates) == 2  # the same batch three times: stored once


def test_a_status_whose_line_cannot_be_made_is_dead_lettered_alone(city: Registry) -> None:
    index = CityIndex.from_registry(city)
    out = decode_window(
        [_msg(STATUS_TOPIC, _status({"frames": 1})), _msg(STATUS_TOPIC, _status({"frames": 2}))],
        index,
        NOW,
    )

    def line_of(st: StatusUpdate) -> str:
        if st.status.stats["frames"] == 2:
            raise ValueError("a formatting bug")
        return "ok"

    lines, refused = status_lines(out.statuses, line_of)
    assert lines == [(0, "ok")]
    assert [(r.message, r.reason, r.detail) for r in refused] == [
        (1, RejectReason.INTERNAL_ERROR, "ValueError while formatting its status")
    ]


def test_5000_unknown_stats_add_no_field_and_are_counted(city: Registry) -> None:
    index = CityIndex.from_registry(city)
    stats = {f"k{i}": i for i in range(5000)} | {"frames": 9, "link_for_s": 1, "link": "up"}
    out = decode_window([_msg(STATUS_TOPIC, _status(stats))], index, NOW)
    (update,) = out.statuses
    assert update.dropped_stats == 5000
    line = PointBuilder(index=index).gateway_status(update, NOW)
    fields = line.split(" ")[1].split(",")
    assert fields == ["online=1i", 'state="online"', "frames=9i", "link_for_s=1.0"]


@pytest.mark.parametrize("key", ["bad\nkey", "back\\slash", "trailing\\", "a=b", "x y", '"q"'])
def test_a_stat_name_line_protocol_cannot_carry_is_dropped_not_a_crash(
    city: Registry, key: str
) -> None:
    """Such a name used to raise LineProtocolError out of the status writer, every restart."""
    index = CityIndex.from_registry(city)
    out = decode_window([_msg(STATUS_TOPIC, _status({key: 1, "frames": 3}))], index, NOW)
    (update,) = out.statuses
    assert update.dropped_stats == 1
    line = PointBuilder(index=index).gateway_status(update, NOW)
    assert line.split(" ")[1] == 'online=1i,state="online",frames=3i'


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"ts": "1"}, RejectReason.SCHEMA_VIOLATION),
        ({"stats": {"frames": "3"}}, RejectReason.SCHEMA_VIOLATION),
        ({"v": True}, RejectReason.UNSUPPORTED_VERSION),
        ({"v": 1.0}, RejectReason.UNSUPPORTED_VERSION),
    ],
    ids=repr,
)
def test_a_mistyped_status_is_refused(
    city: Registry, change: dict[str, Any], reason: RejectReason
) -> None:
    index = CityIndex.from_registry(city)
    out = decode_window([_msg(STATUS_TOPIC, {**_status({}), **change})], index, NOW)
    assert [(r.message, r.reason) for r in out.rejections] == [(0, reason)]
    assert out.statuses == []


def test_only_a_direct_device_may_publish_on_the_single_reading_topic(city: Registry) -> None:
    index = CityIndex.from_registry(city)
    single = {"v": 1, "sensor": "bed-kariadi-icu", "kind": "bed", "ts": NOW - 5, "seq": 1}
    single["values"] = {"capacity": 4, "occupied": 1, "suspect": 0, "confirmed": 0, "waiting": 0}
    kiosk = {"v": 1, "sensor": "q-candisari", "kind": "queue", "seq": 1}
    kiosk["values"] = {"issued": 12, "served": 9, "counters_open": 2}
    out = decode_window(
        [
            _msg("pantau/v1/rs-kariadi/gw-kariadi/reading", single),  # a batch gateway
            _msg(KIOSK_TOPIC, kiosk),  # the demo city's direct kiosk
        ],
        index,
        NOW,
    )
    assert [(r.message, r.reason, r.detail) for r in out.rejections] == [
        (
            0,
            RejectReason.TOPIC_MISMATCH,
            "gateway gw-kariadi is not a direct device: publish batches on readings",
        )
    ]
    assert out.readings.message.tolist() == [1]


@pytest.mark.parametrize(
    "over",
    [{"sensor": ["crowd-johar-utara"]}, {"sensor": {"a": 1}}, {"kind": ["crowd"]}, {"kind": {}}],
    ids=repr,
)
def test_a_reading_whose_id_or_kind_is_an_array_or_object_is_refused_alone(
    city: Registry, over: dict[str, Any]
) -> None:
    """Found by the fuzz test: unhashable ids and kinds raised TypeError out of the window."""
    index = CityIndex.from_registry(city)
    good = {"sensor": "crowd-johar-utara", "kind": "crowd", "ts": NOW - 9, "seq": 1}
    good["values"] = {"entries": 5, "exits": 1, "occupancy": 4}
    batch = {"v": 1, "gw": "gw-johar", "seq": 3, "sent": NOW, "readings": [good | over, good]}
    out = decode_window([_msg("pantau/v1/pasar-johar/gw-johar/readings", batch)], index, NOW)
    assert [(r.reason, r.index) for r in out.rejections] == [(RejectReason.SCHEMA_VIOLATION, 0)]
    assert out.readings.index.tolist() == [1]
