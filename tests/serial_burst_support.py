"""The serial decoding as it was before issue 14's burst decoder, kept as the reference the
burst form is held to (tests/unit/test_serial_burst.py), and wire streams of good and bad
frames to feed both.

``reference_decode`` is the line-by-line decoder (``parse_frame`` per line, resynchronising on
``$``) and ``reference_check_values`` the value rules as one function over a dict, both as
they stood at commit 7e6cf87; ``reference_readings`` is what ``PortReader`` made of a frame.
"""

from __future__ import annotations

from dataclasses import asdict

from hypothesis import strategies as st

from contract import KIND_FIELDS, SensorKind, SerialFrame, encode_frame, parse_frame
from contract.errors import FrameError, RejectReason
from contract.payload import CROSS_FIELD_RULES, MAX_COUNT, ClockSource
from contract.serial_frame import MAX_FRAME_BYTES, FrameStats, crc16
from edge.reading import EdgeReading


def reference_decode(
    chunks: list[bytes], max_frame: int = MAX_FRAME_BYTES
) -> tuple[list[list[SerialFrame]], dict[str, int]]:
    """Frames per chunk and the final stats, decoded line by line."""
    stats = FrameStats()
    buf = bytearray()
    out: list[list[SerialFrame]] = []
    for data in chunks:
        buf += data
        frames: list[SerialFrame] = []
        while True:
            start = buf.find(b"$")
            if start < 0:
                stats.garbage_bytes += len(buf)
                buf.clear()
                break
            if start:
                stats.garbage_bytes += start
                del buf[:start]
            end = buf.find(b"\n")
            restart = buf.find(b"$", 1, end if end >= 0 else len(buf))
            if restart > 0:
                stats.truncated += 1
                del buf[:restart]
                continue
            if end < 0:
                if len(buf) > max_frame:
                    stats.overlong += 1
                    buf.clear()
                break
            line = bytes(buf[:end]).rstrip(b"\r")
            del buf[: end + 1]
            if len(line) > max_frame:
                stats.overlong += 1
                continue
            try:
                frames.append(parse_frame(line))
            except FrameError as exc:
                if exc.detail == "checksum mismatch":
                    stats.bad_checksum += 1
                else:
                    stats.malformed += 1
            else:
                stats.frames += 1
        out.append(frames)
    return out, asdict(stats)


def reference_check_values(
    kind: SensorKind, values: dict[str, int]
) -> tuple[RejectReason, str] | None:
    """``contract.payload.check_values`` as it stood before the row form."""
    expected = KIND_FIELDS[kind]
    if set(values) != set(expected):
        return RejectReason.SCHEMA_VIOLATION, f"{kind.value} needs exactly {list(expected)}"
    for name in expected:
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, int):
            return RejectReason.SCHEMA_VIOLATION, f"{name} must be an integer"
        if value < 0:
            return RejectReason.NEGATIVE_COUNT, f"{name} is {value}"
        if value > MAX_COUNT:
            return RejectReason.SCHEMA_VIOLATION, f"{name} exceeds {MAX_COUNT}"
    for rule in CROSS_FIELD_RULES[kind]:
        if sum(values[p] for p in rule.parts) > values[rule.whole]:
            return rule.reason, rule.detail.format(**values)
    return None


def reference_readings(frames: list[SerialFrame], now_ms: int) -> tuple[list[EdgeReading], int]:
    """The readings ``PortReader`` made of ``frames`` one by one, and how many it refused."""
    readings: list[EdgeReading] = []
    refused = 0
    for frame in frames:
        values = dict(zip(KIND_FIELDS[frame.kind], frame.values, strict=True))
        if reference_check_values(frame.kind, values) is not None:
            refused += 1
            continue
        if frame.ts_ms is None:
            readings.append(
                EdgeReading(
                    frame.sensor, frame.kind, now_ms, frame.seq, values, ClockSource.GATEWAY
                )
            )
        else:
            readings.append(EdgeReading(frame.sensor, frame.kind, frame.ts_ms, frame.seq, values))
    return readings, refused


def _framed(body: bytes, *, lower: bool = False, crs: int = 1) -> bytes:
    crc = f"{crc16(body):04x}" if lower else f"{crc16(body):04X}"
    return b"$" + body + b"*" + crc.encode() + b"\r" * crs + b"\n"


#: Value texts a device might send: plain, leading zeros, signs, spaces, underscores, junk.
_ODD_VALUES = st.sampled_from(["-1", "+3", " 4", "1_0", "007", "", "x", "10000001", "-0"])


@st.composite
def frame_bytes(draw: st.DrawFn) -> bytes:
    """One frame on the wire: mostly good, often breaking a value rule, sometimes damaged in
    a way only the line-by-line checks see (odd digits, wrong counts, bad CRC, cut off...)."""
    kind = draw(st.sampled_from(list(SensorKind)))
    n = len(KIND_FIELDS[kind])
    values = draw(st.lists(st.integers(0, 60), min_size=n, max_size=n))
    if draw(st.integers(0, 9)) == 0:
        values[draw(st.integers(0, n - 1))] = draw(st.sampled_from([-5, MAX_COUNT, MAX_COUNT + 1]))
    sensor = draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,12}", fullmatch=True))
    frame = SerialFrame(
        sensor=sensor,
        kind=kind,
        seq=draw(st.integers(0, 10**6)),
        ts_ms=draw(st.none() | st.integers(1_700_000_000_000, 1_800_000_000_000)),
        values=tuple(values),
    )
    raw = encode_frame(frame)
    damage = draw(st.integers(0, 12))
    if damage == 1:  # a bit flip: checksum mismatch
        i = draw(st.integers(1, len(raw) - 8))
        return raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1 :]
    if damage == 2:  # cut off by a reset
        return raw[: draw(st.integers(1, len(raw) - 1))]
    body = raw[1 : raw.rindex(b"*")]
    parts = body.split(b",")
    if damage == 3:  # an odd value text, well checksummed
        parts[5 + draw(st.integers(0, n - 1))] = draw(_ODD_VALUES).encode()
        return _framed(b",".join(parts))
    if damage == 4:  # one value too many or too few
        parts = parts[:-1] if draw(st.booleans()) else [*parts, b"1"]
        return _framed(b",".join(parts))
    if damage == 5:  # lower-case checksum, extra carriage returns
        return _framed(body, lower=True, crs=draw(st.integers(0, 3)))
    if damage == 6:  # an odd seq or ts text
        parts[draw(st.sampled_from([3, 4]))] = draw(_ODD_VALUES).encode()
        return _framed(b",".join(parts))
    if damage == 7:  # an unknown kind or tag, or an invalid id
        i, text = draw(st.sampled_from([(2, b"heat"), (0, b"PNT2"), (1, b"a b"), (1, b"")]))
        parts[i] = text
        return _framed(b",".join(parts))
    if damage == 8:  # a sensor id too long for the line
        parts[1] = b"s" * 64
        return _framed(b",".join(parts))
    return raw


def wire_streams() -> st.SearchStrategy[list[bytes]]:
    """A sensor bus's bytes, cut into reads at random points: frames of mixed kinds with
    garbage between some of them."""
    garbage = st.binary(max_size=12) | st.sampled_from([b"\r", b"\n", b"$", b"\r\n", b"$$"])
    piece = st.tuples(st.sampled_from([b""] * 6) | garbage, frame_bytes())
    return st.builds(
        _cut,
        st.lists(piece, max_size=30),
        st.lists(st.integers(1, 600), min_size=1, max_size=8),
    )


def _cut(pieces: list[tuple[bytes, bytes]], sizes: list[int]) -> list[bytes]:
    stream = b"".join(g + f for g, f in pieces)
    chunks: list[bytes] = []
    pos = i = 0
    while pos < len(stream):
        size = sizes[i % len(sizes)]
        chunks.append(stream[pos : pos + size])
        pos += size
        i += 1
    return chunks
