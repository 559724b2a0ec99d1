"""Serial framing between a sensor's firmware and its gateway.

One reading per line of printable ASCII, so a technician can read the stream in any terminal::

    $PNT1,<sensor>,<kind>,<seq>,<ts_ms or empty>,<v1>,...,<vn>*<CRC16 hex>\\r\\n

The CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over the bytes between ``$`` and ``*``
(``binascii.crc_hqx``). ``$`` never appears inside a frame, so after garbage or a truncated
frame the decoder resynchronises on the next ``$`` without losing the frame that follows.
Full description: docs/serial-protocol.md.
"""

from __future__ import annotations

import binascii
import operator
import re
from dataclasses import dataclass, field
from itertools import islice, repeat

from contract.errors import FrameError
from contract.payload import KIND_FIELDS, SensorKind
from contract.topics import ID_PATTERN, is_valid_id

FRAME_TAG = "PNT1"
START = ord("$")
#: No valid frame is longer than this; a longer run without a line end is garbage.
MAX_FRAME_BYTES = 160


@dataclass(frozen=True, slots=True)
class SerialFrame:
    """One decoded reading as the sensor sent it."""

    sensor: str
    kind: SensorKind
    seq: int
    ts_ms: int | None  # None: the sensor has no clock; the gateway stamps it
    values: tuple[int, ...]

    def values_dict(self) -> dict[str, int]:
        """Values by field name, in the contract's field order."""
        return dict(zip(KIND_FIELDS[self.kind], self.values, strict=True))


def crc16(body: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``body``."""
    return binascii.crc_hqx(body, 0xFFFF)


def encode_frame(frame: SerialFrame) -> bytes:
    """The bytes a sensor writes for ``frame``."""
    ts = "" if frame.ts_ms is None else str(frame.ts_ms)
    fields = [FRAME_TAG, frame.sensor, frame.kind.value, str(frame.seq), ts]
    fields += [str(v) for v in frame.values]
    body = ",".join(fields).encode("ascii")
    return b"$" + body + b"*" + f"{crc16(body):04X}".encode("ascii") + b"\r\n"


_HEX_DIGITS = b"0123456789ABCDEFabcdef"


def parse_frame(line: bytes) -> SerialFrame:
    """Parse one line that starts with ``$`` (line end already removed)."""
    star = line.rfind(b"*")
    if not line.startswith(b"$") or star < 0 or len(line) - star - 1 != 4:
        raise FrameError("no '$...*XXXX' envelope", raw=line)
    body = line[1:star]
    crc_text = line[star + 1 :]
    # int(_, 16) alone would also take "+E50", " E50" and "E_50": exactly 4 hex digits, either
    # case, is what docs/serial-protocol.md promises.
    if crc_text.strip(_HEX_DIGITS):
        raise FrameError("checksum is not 4 hex digits", raw=line)
    sent_crc = int(crc_text, 16)
    if crc16(body) != sent_crc:
        raise FrameError("checksum mismatch", raw=line)
    try:
        parts = body.decode("ascii").split(",")
    except UnicodeDecodeError:
        raise FrameError("non-ASCII byte in frame", raw=line) from None
    if len(parts) < 5 or parts[0] != FRAME_TAG:
        raise FrameError("unknown frame tag", raw=line)
    _, sensor, kind_s, seq_s, ts_s, *value_s = parts
    try:
        kind = SensorKind(kind_s)
    except ValueError:
        raise FrameError(f"unknown kind {kind_s!r}", raw=line) from None
    if not is_valid_id(sensor):
        raise FrameError("invalid sensor id", raw=line)
    if len(value_s) != len(KIND_FIELDS[kind]):
        raise FrameError(f"{kind.value} frame needs {len(KIND_FIELDS[kind])} values", raw=line)
    try:
        seq = int(seq_s)
        ts = int(ts_s) if ts_s else None
        values = tuple(int(v) for v in value_s)
    except ValueError:
        raise FrameError("non-integer field", raw=line) from None
    if seq < 0:
        raise FrameError("negative sequence number", raw=line)
    return SerialFrame(sensor=sensor, kind=kind, seq=seq, ts_ms=ts, values=values)


#: One frame in its plainest form, every field already of the type ``parse_frame`` requires:
#: an id, a known kind, digits only (no sign, space or ``_``), upper- or lower-case hex, one
#: ``\r`` at most. Groups: body, sensor, kind, seq, ts, values, CRC.
_STRICT = (
    rb"\$("
    + FRAME_TAG.encode()
    + rb",("
    + ID_PATTERN.encode()
    + rb"),("
    + b"|".join(re.escape(k.value.encode()) for k in SensorKind)
    + rb"),([0-9]+),([0-9]*),([0-9]+(?:,[0-9]+)*))\*([0-9A-Fa-f]{4})\r?\n"
)
_FRAME = re.compile(_STRICT)
_FRAMES = re.compile(rb"(?:" + _STRICT + rb")*")
_KIND_OF = {k.value.encode(): k for k in SensorKind}
_COMMAS = {k.value.encode(): len(KIND_FIELDS[k]) - 1 for k in SensorKind}
#: What a strict frame adds to its body: "$", "*" and the 4 CRC digits.
_ENVELOPE = 6


@dataclass(slots=True)
class FrameColumns:
    """Decoded frames as columns, in arrival order: frame ``i`` is ``sensors[i]``,
    ``kinds[i]``... and ``values[i]`` its values in the kind's field order."""

    sensors: list[str] = field(default_factory=list)
    kinds: list[SensorKind] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    ts_ms: list[int | None] = field(default_factory=list)
    values: list[tuple[int, ...]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sensors)

    def append(self, frame: SerialFrame) -> None:
        """Add one frame at the end."""
        self.sensors.append(frame.sensor)
        self.kinds.append(frame.kind)
        self.seqs.append(frame.seq)
        self.ts_ms.append(frame.ts_ms)
        self.values.append(frame.values)

    def frames(self) -> list[SerialFrame]:
        """The same frames as :class:`SerialFrame` objects."""
        return list(map(SerialFrame, self.sensors, self.kinds, self.seqs, self.ts_ms, self.values))


def _strict_columns(chunk: bytes, max_frame: int) -> FrameColumns | None:
    """``chunk`` (whole lines) decoded at once, if every line in it is a strict frame with a
    good checksum, the kind's number of values and at most ``max_frame`` bytes; else None.

    Such a chunk is what a healthy sensor bus carries, and every check ``parse_frame`` makes
    holds for it by the pattern or by a check over all its frames at once (the loops are in
    C: ``re``, ``map``, ``zip``), so it decodes to exactly the frames ``parse_frame`` would
    give, line by line. Anything else goes the line-by-line way."""
    if _FRAMES.fullmatch(chunk) is None:
        return None
    found = _FRAME.findall(chunk)
    if not found:
        return None
    bodies, sensors, kinds, seqs, stamps, texts, crcs = zip(*found, strict=True)
    if max(map(len, bodies)) + _ENVELOPE > max_frame:
        return None
    sums = map(binascii.crc_hqx, bodies, repeat(0xFFFF))
    if not all(map(operator.eq, sums, map(int, crcs, repeat(16)))):
        return None
    commas = list(map(bytes.count, texts, repeat(b",")))
    if commas != list(map(_COMMAS.__getitem__, kinds)):
        return None
    flat = map(int, b",".join(texts).split(b","))
    if kinds.count(kinds[0]) == len(kinds):
        rows = list(zip(*[flat] * (commas[0] + 1), strict=True))
    else:
        rows = [tuple(islice(flat, n + 1)) for n in commas]
    return FrameColumns(
        sensors=list(map(bytes.decode, sensors)),
        kinds=list(map(_KIND_OF.__getitem__, kinds)),
        seqs=list(map(int, seqs)),
        ts_ms=[int(t) if t else None for t in stamps] if b"" in stamps else list(map(int, stamps)),
        values=rows,
    )


@dataclass(slots=True)
class FrameStats:
    """What the decoder has seen; every byte is accounted for in one of these."""

    frames: int = 0
    bad_checksum: int = 0
    malformed: int = 0
    truncated: int = 0
    overlong: int = 0
    garbage_bytes: int = 0


@dataclass(slots=True)
class FrameDecoder:
    """Incremental decoder: feed it whatever the port returned, get whole frames back."""

    max_frame: int = MAX_FRAME_BYTES
    stats: FrameStats = field(default_factory=FrameStats)
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[SerialFrame]:
        """Consume ``data``; return the frames it completed, in order. Never raises for bad
        input: faults are counted in :attr:`stats`."""
        return self.feed_columns(data).frames()

    def feed_columns(self, data: bytes) -> FrameColumns:
        """:meth:`feed`, the frames as columns: what a burst of frames costs least as."""
        self._buf += data
        buf = self._buf
        if buf[:1] == b"$":
            end = buf.rfind(b"\n") + 1
            if end:
                fast = _strict_columns(bytes(buf[:end]), self.max_frame)
                if fast is not None:
                    del buf[:end]
                    self.stats.frames += len(fast)
                    self._scan(fast)  # the partial frame after the last line end
                    return fast
        frames = FrameColumns()
        self._scan(frames)
        return frames

    def _scan(self, frames: FrameColumns) -> None:
        """Decode the buffer line by line with :func:`parse_frame`, resynchronising on ``$``;
        append the frames to ``frames``."""
        buf = self._buf
        while True:
            start = buf.find(b"$")
            if start < 0:
                self.stats.garbage_bytes += len(buf)
                buf.clear()
                break
            if start:
                self.stats.garbage_bytes += start
                del buf[:start]
            end = buf.find(b"\n")
            restart = buf.find(b"$", 1, end if end >= 0 else len(buf))
            if restart > 0:  # a new frame began before this one ended: the first was cut off
                self.stats.truncated += 1
                del buf[:restart]
                continue
            if end < 0:
                if len(buf) > self.max_frame:
                    self.stats.overlong += 1
                    buf.clear()
                break
            line = bytes(buf[:end]).rstrip(b"\r")
            del buf[: end + 1]
            if len(line) > self.max_frame:
                self.stats.overlong += 1
                continue
            try:
                frames.append(parse_frame(line))
            except FrameError as exc:
                if exc.detail == "checksum mismatch":
                    self.stats.bad_checksum += 1
                else:
                    self.stats.malformed += 1
            else:
                self.stats.frames += 1
