"""A refused reading of a binary batch is explained in the binary format's terms: the reading's
index, the field or table entry, and the byte offset of the refused value in the payload. The
batches are the worked examples of docs/protocol.md with one value changed."""

from __future__ import annotations

import struct

import pytest

from city import Registry
from cloud.ingest import CityIndex, Message, decode_window
from contract import RejectReason
from tests.doc_support import PROTOCOL, dump

NOW = 1_764_000_003_000
TOPIC = "pantau/v1/rs-kariadi/gw-kariadi/readings"


def refusals(city: Registry, raw: bytes) -> list[tuple[int | None, RejectReason, str]]:
    out = decode_window(
        [Message(topic=TOPIC, payload=raw, received_ms=NOW, mid=0)],
        CityIndex.from_registry(city),
        NOW,
    )
    return [(r.index, r.reason, r.detail) for r in out.rejections]


def patched(name: str, at: int, fmt: str, value: int) -> bytes:
    raw = bytearray(dump(name))
    struct.pack_into(fmt, raw, at, value)
    return bytes(raw)


def test_the_unchanged_doc_examples_are_accepted(city: Registry) -> None:
    assert refusals(city, dump("narrow")) == []
    assert refusals(city, dump("wide")) == []


def test_a_bad_clock_code_names_the_reading_and_its_byte_as_the_doc_says(city: Registry) -> None:
    detail = "reading 1: clock code 7 at byte 113 is not 0 (sensor) or 1 (gateway)"
    assert f"`{detail}`" in PROTOCOL
    got = refusals(city, patched("narrow", 113, "<B", 7))
    assert got == [(1, RejectReason.SCHEMA_VIOLATION, detail)]


@pytest.mark.parametrize(
    ("name", "at", "fmt", "value", "expected"),
    [
        (
            "narrow", 156, "<i", 9,
            (1, RejectReason.SCHEMA_VIOLATION,
             "reading 1: values[4] = 9 at byte 156 is past the 3 fields of a queue reading"
             " (must be 0)"),
        ),
        (
            "narrow", 63, "<B", 9,
            (1, RejectReason.SCHEMA_VIOLATION,
             "reading 1: sensor table entry 1 ('q-kariadi-poli') has kind code 9,"
             " not 1 (bed), 2 (crowd), 3 (queue)"),
        ),
        (
            "narrow", 46, "<B", 2,
            (0, RejectReason.KIND_MISMATCH,
             "reading 0: sensor 'bed-kariadi-icu' (table entry 0) is not a 'crowd' sensor"),
        ),
        (
            "narrow", 120, "<i", -1,
            (0, RejectReason.NEGATIVE_COUNT, "reading 0: values[0] (capacity) at byte 120:"
             " capacity is -1"),
        ),
        (
            "narrow", 124, "<i", 30,
            (0, RejectReason.OCCUPIED_EXCEEDS_CAPACITY,
             "reading 0: values at bytes 120..140: occupied 30 > capacity 24"),
        ),
        (
            "narrow", 96, "<q", NOW + 3_600_000,
            (1, RejectReason.FUTURE_TIMESTAMP,
             "reading 1: ts at byte 96: ts 1764003603000 is 3600000 ms ahead"),
        ),
        (
            "wide", 80, "<q", -1,
            (0, RejectReason.SCHEMA_VIOLATION, "reading 0: seq -1 at byte 80 is negative"),
        ),
        (
            "wide", 104, "<q", 10_000_001,
            (0, RejectReason.SCHEMA_VIOLATION,
             "reading 0: values[1] (occupied) at byte 104: occupied exceeds 10000000"),
        ),
    ],
)  # fmt: skip
def test_each_refusal_names_the_reading_field_and_byte(
    city: Registry,
    name: str,
    at: int,
    fmt: str,
    value: int,
    expected: tuple[int, RejectReason, str],
) -> None:
    assert refusals(city, patched(name, at, fmt, value)) == [expected]
