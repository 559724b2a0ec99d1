"""The burst decoder and the value rules over a burst give exactly what the line-by-line
decoder and the per-reading rules gave: the same frames, counters, readings and refusals."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from contract import KIND_FIELDS, FrameDecoder, SensorKind, SerialFrame, encode_frame
from contract.payload import MAX_COUNT, check_row, check_rows, check_values
from contract.serial_frame import FrameColumns, _strict_columns
from edge import PortReader, serial_opener
from tests.serial_burst_support import (
    reference_check_values,
    reference_decode,
    reference_readings,
    wire_streams,
)

NOW = 1_764_000_000_000


def _rows(kind: SensorKind) -> st.SearchStrategy[list[tuple[int, ...]]]:
    n = len(KIND_FIELDS[kind])
    count = st.integers(-3, 40) | st.sampled_from([MAX_COUNT, MAX_COUNT + 1])
    return st.lists(st.tuples(*[count] * n), max_size=40)


@settings(max_examples=250)
@given(wire_streams())
def test_burst_decoder_matches_line_by_line_decoder(chunks: list[bytes]) -> None:
    """Random good and bad frames, garbage and cuts: per read, the same frames in the same
    order, and at the end the same counters, as the decoder that parsed line by line."""
    expected, expected_stats = reference_decode(chunks)
    decoder = FrameDecoder()
    got = [decoder.feed(chunk) for chunk in chunks]
    assert got == expected
    assert {k: getattr(decoder.stats, k) for k in expected_stats} == expected_stats


@settings(max_examples=200)
@given(wire_streams())
def test_port_reader_makes_the_readings_and_refusals_it_made_frame_by_frame(
    chunks: list[bytes],
) -> None:
    """Through ``PortReader.feed``: the same readings (values, clocks, stamps) and the same
    number of refused readings as the frame-by-frame reader."""
    frames, _stats = reference_decode(chunks)
    reader = PortReader(
        label="bus0", url="", opener=serial_opener(baudrate=9600), clock=lambda: NOW
    )
    refused_total = 0
    for chunk, chunk_frames in zip(chunks, frames, strict=True):
        expected, refused = reference_readings(chunk_frames, NOW)
        refused_total += refused
        assert reader.feed(chunk) == expected
    assert reader.rejected == refused_total


@settings(max_examples=400)
@given(st.sampled_from(list(SensorKind)).flatmap(lambda k: st.tuples(st.just(k), _rows(k))))
def test_rules_over_rows_match_the_per_reading_rules(
    case: tuple[SensorKind, list[tuple[int, ...]]],
) -> None:
    """``check_rows`` over a burst, ``check_row`` and ``check_values`` per reading: the same
    first broken rule, in the same words, as the rules over a dict always said."""
    kind, rows = case
    fields = KIND_FIELDS[kind]
    want = [reference_check_values(kind, dict(zip(fields, row, strict=True))) for row in rows]
    assert [check_row(kind, row) for row in rows] == want
    assert [check_values(kind, dict(zip(fields, row, strict=True))) for row in rows] == want
    assert check_rows(kind, rows) == [(i, b) for i, b in enumerate(want) if b is not None]


def test_a_clean_burst_is_decoded_in_one_pass() -> None:
    """25 good bed frames, as the bench's sensors write them to one port, take the burst
    path (not parse_frame per line) and come out as the frames that were sent."""
    ts = time.time_ns() // 1_000_000
    sent = [
        SerialFrame(f"bed-{i:03d}", SensorKind.BED, 7, ts, (40, i, i // 4, i // 8, 0))
        for i in range(25)
    ]
    burst = _strict_columns(b"".join(map(encode_frame, sent)), 160)
    assert isinstance(burst, FrameColumns)
    assert burst.frames() == sent
