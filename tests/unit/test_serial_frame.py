"""The serial framing: exact round trips, and a decoder that survives anything on the wire."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import KIND_FIELDS, FrameDecoder, SensorKind, SerialFrame, encode_frame, parse_frame
from contract.errors import FrameError
from contract.serial_frame import crc16

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)


@st.composite
def frames(draw: st.DrawFn) -> SerialFrame:
    kind = draw(st.sampled_from(list(SensorKind)))
    n = len(KIND_FIELDS[kind])
    return SerialFrame(
        sensor=draw(ids),
        kind=kind,
        seq=draw(st.integers(0, 2**40)),
        ts_ms=draw(st.none() | st.integers(0, 2**45)),
        values=tuple(draw(st.lists(st.integers(0, 10_000_000), min_size=n, max_size=n))),
    )


def test_crc_is_ccitt_false() -> None:
    """CRC-16/CCITT-FALSE check value for '123456789' is 0x29B1."""
    assert crc16(b"123456789") == 0x29B1


@given(frames())
def test_encode_parse_round_trip(frame: SerialFrame) -> None:
    """Every frame a sensor can send parses back to itself."""
    raw = encode_frame(frame)
    assert raw.endswith(b"\r\n")
    assert len(raw) <= 160
    assert parse_frame(raw.rstrip(b"\r\n")) == frame


def test_checksum_error_is_rejected_and_next_frame_kept() -> None:
    """A corrupted frame is counted; the frame after it still decodes."""
    good = SerialFrame(
        sensor="bed-a", kind=SensorKind.BED, seq=7, ts_ms=None, values=(10, 4, 1, 1, 0)
    )
    bad = bytearray(encode_frame(good))
    bad[12] ^= 0x01  # a bit flip inside the body
    decoder = FrameDecoder()
    out = decoder.feed(bytes(bad) + encode_frame(good))
    assert out == [good]
    assert decoder.stats.bad_checksum == 1
    assert decoder.stats.frames == 1


def test_truncated_frame_then_good_frame() -> None:
    """A frame cut off by a sensor reset is dropped at the next '$', which is kept."""
    good = SerialFrame(sensor="q-1", kind=SensorKind.QUEUE, seq=1, ts_ms=5, values=(3, 1, 2))
    raw = encode_frame(good)
    decoder = FrameDecoder()
    assert decoder.feed(raw[:15] + raw) == [good]
    assert decoder.stats.truncated == 1


@pytest.mark.parametrize(
    ("line", "detail"),
    [
        (b"$PNT1,a,bed,1,,1,2,3,4,5", "no '$...*XXXX' envelope"),
        (b"$PNT1,a,bed,1,,1,2,3,4,5*ZZZZ", "checksum is not 4 hex digits"),
    ],
)
def test_parse_frame_says_what_is_wrong(line: bytes, detail: str) -> None:
    with pytest.raises(FrameError) as err:
        parse_frame(line)
    assert err.value.detail == detail


def _framed(body: bytes) -> bytes:
    return b"$" + body + b"*" + f"{crc16(body):04X}".encode() + b"\r\n"


@pytest.mark.parametrize(
    "body",
    [
        b"PNT9,a,bed,1,,1,2,3,4,5",  # unknown tag
        b"PNT1,a,heat,1,,1",  # unknown kind
        b"PNT1,a,bed,1,,1,2,3",  # too few values
        b"PNT1,a,bed,x,,1,2,3,4,5",  # non-integer seq
        b"PNT1,a b,bed,1,,1,2,3,4,5",  # invalid id
        b"PNT1,a,bed,-1,,1,2,3,4,5",  # negative seq
    ],
)
def test_well_checksummed_but_malformed_frames_are_counted(body: bytes) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(_framed(body)) == []
    assert decoder.stats.malformed == 1


@settings(max_examples=300)
@given(
    st.lists(frames(), min_size=1, max_size=8),
    st.lists(st.binary(max_size=40).filter(lambda b: b"$" not in b), min_size=9, max_size=9),
    st.lists(st.integers(1, 64), min_size=1, max_size=10),
)
def test_garbage_between_frames_never_loses_a_good_frame(
    good: list[SerialFrame], garbage: list[bytes], chunk_sizes: list[int]
) -> None:
    """Garbage without '$' between frames, delivered in arbitrary chunk sizes: every good frame
    decodes, in order, and the garbage bytes are all accounted for."""
    stream = b"".join(g + encode_frame(f) for g, f in zip(garbage, good, strict=False))
    decoder = FrameDecoder()
    out: list[SerialFrame] = []
    pos = i = 0
    while pos < len(stream):
        size = chunk_sizes[i % len(chunk_sizes)]
        out += decoder.feed(stream[pos : pos + size])
        pos += size
        i += 1
    assert out == good
    assert decoder.stats.frames == len(good)
    stray = sum(len(g) for g in garbage[: len(good)])
    lost = decoder.stats.malformed + decoder.stats.bad_checksum + decoder.stats.overlong
    # Garbage that happens to contain a line end splits into 'garbage' and nothing else.
    assert lost == 0
    assert decoder.stats.garbage_bytes == stray


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_decoder_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    """Random bytes (fuzz): no exception, and the buffer stays bounded."""
    decoder = FrameDecoder()
    decoder.feed(data)
    assert len(decoder._buf) <= decoder.max_frame + 1
