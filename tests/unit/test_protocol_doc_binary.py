"""The binary batch's worked examples in docs/protocol.md are exact: each annotated hex dump
decodes with the contract decoder to the numbers its notes state, and the contract encoder
rebuilds it byte for byte. A microcontroller engineer can copy them instead of reading Python."""

from __future__ import annotations

import re

import numpy as np
import pytest

import contract
from contract import KIND_CODES, KIND_FIELDS, decode_binary_batch, encode_binary_batch
from tests.doc_support import PROTOCOL, dump, dump_names

_JSON_BATCH = re.compile(r"<!-- contract: Batch -->\n```json\n(.*?)\n```", re.DOTALL)


def reencode(raw: bytes, *, wide: bool = False) -> bytes:
    b = decode_binary_batch(raw)
    return encode_binary_batch(
        gw=b.gw,
        seq=b.seq,
        sent=b.sent,
        clock_offset_ms=b.clock_offset_ms,
        sensors=b.sensor_ids,
        kinds=b.sensor_kinds.tolist(),
        sensor=b.sensor,
        ts=b.ts,
        reading_seq=b.seq_col,
        values=b.values,
        clock=b.clock,
        wide=wide,
    )


def test_the_doc_has_exactly_the_two_worked_dumps() -> None:
    assert dump_names() == ["narrow", "wide"]


def test_the_narrow_dump_is_the_json_batch_example_byte_for_byte() -> None:
    """The narrow dump decodes to the doc's JSON batch example, reading for reading, and
    re-encodes to the same 160 bytes."""
    raw = dump("narrow")
    assert len(raw) == 160
    assert raw[5] == 0x01
    b = decode_binary_batch(raw)
    (text,) = _JSON_BATCH.findall(PROTOCOL)
    batch = contract.Batch.model_validate_json(text)
    assert (b.gw, b.seq, b.sent, b.clock_offset_ms) == (
        batch.gw,
        batch.seq,
        batch.sent,
        batch.clock_offset_ms,
    )
    assert (b.gw, b.seq, b.sent, b.clock_offset_ms) == ("gw-kariadi", 5120, 1764000003000, -12)
    clocks = {0: "sensor", 1: "gateway"}
    decoded = [
        (
            b.sensor_ids[s],
            b.sensor_kinds[s],
            int(b.ts[i]),
            int(b.seq_col[i]),
            clocks[int(b.clock[i])],
            b.values[i].tolist(),
        )
        for i, s in enumerate(b.sensor.tolist())
    ]
    expected = [
        (
            r.sensor,
            KIND_CODES[r.kind],
            r.ts,
            r.seq,
            r.clock.value,
            [*(r.values[f] for f in KIND_FIELDS[r.kind]), 0, 0, 0, 0, 0][:5],
        )
        for r in batch.readings
    ]
    assert decoded == expected
    assert decoded[1][5] == [214, 190, 5, 0, 0]
    assert reencode(raw) == raw


def test_the_wide_dump_decodes_to_its_notes_and_re_encodes_wide() -> None:
    raw = dump("wide")
    assert len(raw) == 136
    assert raw[5] == 0x0E
    b = decode_binary_batch(raw)
    assert (b.gw, b.seq, b.sent, b.clock_offset_ms) == ("gw-kariadi", 5121, 1764000063000, None)
    assert b.sensor_ids == ("bed-kariadi-icu",)
    assert b.sensor_kinds.tolist() == [1]
    assert (b.sensor.dtype.itemsize, b.seq_col.dtype.itemsize, b.values.dtype.itemsize) == (4, 8, 8)
    assert b.ts.tolist() == [1764000060000]
    assert b.seq_col.tolist() == [43]
    assert b.clock.tolist() == [0]
    assert b.values.tolist() == [[24, 20, 2, 6, 0]]
    assert reencode(raw, wide=True) == raw


@pytest.mark.parametrize("name", ["narrow", "wide"])
def test_every_column_of_a_dump_starts_at_a_multiple_of_8(name: str) -> None:
    """Padding is counted from the payload start: the doc's dumps (and hence its rule) agree
    with where the decoder finds each column."""
    raw = dump(name)
    b = decode_binary_batch(raw)
    base = np.frombuffer(raw, dtype=np.uint8).__array_interface__["data"][0]
    starts = [
        col.__array_interface__["data"][0] - base
        for col in (b.sensor, b.ts, b.seq_col, b.clock, b.values)
    ]
    assert all(s % 8 == 0 for s in starts), starts
    assert starts == ([80, 88, 104, 112, 120] if name == "narrow" else [64, 72, 80, 88, 96])
    assert len(raw) % 8 == 0


def test_the_documented_reading_sizes_are_the_formats() -> None:
    """35 bytes per reading with narrow columns, 61 with wide ones, as the doc says."""
    narrow = 2 + 8 + 4 + 1 + 5 * 4
    wide = 4 + 8 + 8 + 1 + 5 * 8
    assert (narrow, wide) == (35, 61)
    assert f"a binary reading takes {narrow}\u2013{wide} bytes" in PROTOCOL.replace("\n", " ")
    assert f"**{contract.MAX_BINARY_READINGS_PER_BATCH:,} readings**".replace(",", " ") in PROTOCOL
