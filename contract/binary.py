"""Columnar binary batch, version 1: the compact form of a ``Batch`` for high-rate gateways.

Published on the same ``.../readings`` topic as the JSON batch; a receiver tells them apart by
the first bytes (:func:`is_binary`): JSON starts with ``{`` or whitespace, a binary batch with
the magic ``PNB1``. Byte layout (all integers little-endian) is in docs/protocol.md, section
"Binary batch"; in short: a fixed header, the gateway id, the sensor table, then one column per
reading field, each column padded to a multiple of 8 bytes so every column is aligned.

Decoding never copies a column: each is an ``np.frombuffer`` view of the payload. Every length
and offset is checked before it is used, so a truncated or garbage payload raises
:class:`~contract.errors.PayloadError` (never an ``IndexError`` or a numpy error). Only the
structure is checked here; the reading rules (``contract.payload.check_values`` and
``check_timestamp``) are applied by the receiver, exactly as for JSON readings.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from contract.errors import PayloadError, RejectReason
from contract.payload import KIND_FIELDS, MAX_PAYLOAD_BYTES, ClockSource
from contract.topics import is_valid_id

MAGIC = b"PNB1"
BINARY_VERSION = 1
#: Values per reading in the values column: the widest kind's field count; narrower kinds are
#: zero-padded (a non-zero pad is a schema violation, like an unknown JSON key).
VALUE_WIDTH = max(len(f) for f in KIND_FIELDS.values())
#: Readings per binary batch. Larger than the JSON limit (2 000) because a binary reading is
#: 35-61 bytes instead of ~150: 7 000 of the narrowest fit in MAX_PAYLOAD_BYTES, and fewer,
#: larger messages are what lets one ingester reach millions of readings/s.
MAX_BINARY_READINGS_PER_BATCH = 7000
#: Sensor table entries per batch (each reading refers to one by index).
MAX_BINARY_SENSORS = MAX_BINARY_READINGS_PER_BATCH

#: flags byte
FLAG_CLOCK_OFFSET = 0x01  # clock_offset_ms is meaningful
FLAG_SENSOR_U32 = 0x02  # sensor index column is u32 (else u16)
FLAG_SEQ_I64 = 0x04  # seq column is i64 (else u32)
FLAG_VALUES_I64 = 0x08  # values column is i64 (else i32)
_KNOWN_FLAGS = FLAG_CLOCK_OFFSET | FLAG_SENSOR_U32 | FLAG_SEQ_I64 | FLAG_VALUES_I64

#: clock column codes
CLOCK_CODES: dict[ClockSource, int] = {ClockSource.SENSOR: 0, ClockSource.GATEWAY: 1}

# magic(4) version(u8) flags(u8) gw_len(u8) reserved(u8)
_HEAD = struct.Struct("<4sBBBx")
# batch seq(u64) sent(i64) clock_offset_ms(i32) n_readings(u32) n_sensors(u32)
_FIXED = struct.Struct("<QqiII")
_ENTRY = struct.Struct("<BB")  # kind code, id length
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1
_U32_MAX = 2**32 - 1

I64 = npt.NDArray[np.int64]


def _bad(detail: str) -> PayloadError:
    return PayloadError(RejectReason.INVALID_BINARY, detail)


def readings_section(raw: bytes) -> bytes:
    """The bytes of a binary batch from its reading count on (offset 28 + G): the readings,
    without the envelope a gateway restamps on every resend (``sent``, ``clock_offset_ms``).
    For a payload too short to have one, the whole payload."""
    if len(raw) < 8:
        return raw
    return raw[28 + raw[6] :]


def is_binary(raw: bytes) -> bool:
    """True if ``raw`` claims to be a binary batch (starts with the magic)."""
    return raw[:4] == MAGIC


def _pad8(n: int) -> int:
    return (-n) % 8


@dataclass(frozen=True, slots=True)
class BinaryBatch:
    """A decoded binary batch: the envelope, the sensor table and one array per column.

    The column arrays are read-only views of the payload (``sensor``/``seq``/``values`` keep
    their wire width; widen with ``astype`` when needed)."""

    gw: str
    seq: int
    sent: int
    clock_offset_ms: int | None
    #: sensor table: ids and kind codes (``contract.KIND_CODES``; anything else is invalid)
    sensor_ids: tuple[str, ...]
    sensor_kinds: npt.NDArray[np.uint8]
    #: per reading: index into the sensor table
    sensor: npt.NDArray[np.uint16] | npt.NDArray[np.uint32]
    ts: I64
    seq_col: npt.NDArray[np.uint32] | I64
    #: per reading: 0 sensor, 1 gateway (``CLOCK_CODES``); anything else is invalid
    clock: npt.NDArray[np.uint8]
    #: (n, VALUE_WIDTH): the kind's fields in ``KIND_FIELDS`` order, zero past them
    values: npt.NDArray[np.int32] | I64

    def __len__(self) -> int:
        return len(self.ts)


def encode_binary_batch(
    *,
    gw: str,
    seq: int,
    sent: int,
    sensors: Sequence[str],
    kinds: Sequence[int],
    sensor: Sequence[int] | npt.NDArray[np.integer],
    ts: Sequence[int] | npt.NDArray[np.integer],
    reading_seq: Sequence[int] | npt.NDArray[np.integer],
    values: Sequence[Sequence[int]] | npt.NDArray[np.integer],
    clock: Sequence[int] | npt.NDArray[np.integer] | None = None,
    clock_offset_ms: int | None = None,
    wide: bool = False,
) -> bytes:
    """Encode a binary batch. ``sensors``/``kinds`` is the sensor table (kind codes from
    ``contract.KIND_CODES``); per reading ``sensor`` indexes that table, ``values`` holds the
    kind's fields in ``KIND_FIELDS`` order (rows may be shorter than ``VALUE_WIDTH``; they are
    zero-padded). The narrowest column widths that hold the data are chosen; ``wide`` forces
    the widest (flags ``0x0E``), as a firmware that does not choose widths per batch sends.

    Encodes what it is given, even readings the ingester will refuse (that is how tests build
    bad data); it only refuses what the format cannot express (raises ``ValueError``)."""
    gw_b = gw.encode("utf-8")
    if not 0 < len(gw_b) < 256:
        raise ValueError("gateway id must be 1..255 bytes of UTF-8")
    if len(sensors) != len(kinds):
        raise ValueError("sensors and kinds must have the same length")
    idx = np.asarray(sensor, dtype=np.int64).reshape(-1)
    n = len(idx)
    t = np.asarray(ts, dtype=np.int64).reshape(-1)
    sq = np.asarray(reading_seq, dtype=np.int64).reshape(-1)
    clk = (
        np.zeros(n, dtype=np.uint8)
        if clock is None
        else np.asarray(clock, dtype=np.int64).reshape(-1)
    )
    if isinstance(values, np.ndarray):
        vals = np.zeros((n, VALUE_WIDTH), dtype=np.int64)
        vals[:, : values.shape[1]] = values
    else:
        vals = np.zeros((n, VALUE_WIDTH), dtype=np.int64)
        for i, row in enumerate(values):
            vals[i, : len(row)] = row
    if not len(t) == len(sq) == len(clk) == len(vals) == n:
        raise ValueError("every column needs one entry per reading")
    if n and (idx.min() < 0 or idx.max() >= len(sensors)):
        raise ValueError("a sensor index is outside the sensor table")
    if n and (clk.min() < 0 or clk.max() > 255):
        raise ValueError("clock codes are one byte")
    flags = 0
    if clock_offset_ms is not None:
        flags |= FLAG_CLOCK_OFFSET
    if wide or len(sensors) > 0xFFFF:
        flags |= FLAG_SENSOR_U32
    if wide or (n and (sq.min() < 0 or sq.max() > _U32_MAX)):
        flags |= FLAG_SEQ_I64
    if wide or (n and (vals.min() < _I32_MIN or vals.max() > _I32_MAX)):
        flags |= FLAG_VALUES_I64
    parts = [
        _HEAD.pack(MAGIC, BINARY_VERSION, flags, len(gw_b)),
        gw_b,
        _FIXED.pack(seq, sent, clock_offset_ms or 0, n, len(sensors)),
    ]
    for sid, kind in zip(sensors, kinds, strict=True):
        sid_b = sid.encode("utf-8")
        if not 0 < len(sid_b) < 256:
            raise ValueError("sensor ids must be 1..255 bytes of UTF-8")
        parts += [_ENTRY.pack(kind, len(sid_b)), sid_b]
    size = sum(map(len, parts))
    parts.append(b"\0" * _pad8(size))
    columns = (
        idx.astype("<u4" if flags & FLAG_SENSOR_U32 else "<u2"),
        t.astype("<i8"),
        sq.astype("<i8" if flags & FLAG_SEQ_I64 else "<u4"),
        clk.astype("u1"),
        vals.astype("<i8" if flags & FLAG_VALUES_I64 else "<i4"),
    )
    for col in columns:
        data = col.tobytes()
        parts += [data, b"\0" * _pad8(len(data))]
    return b"".join(parts)


def _column(
    raw: bytes, offset: int, dtype: str, count: int, name: str
) -> tuple[npt.NDArray[np.generic], int]:
    """A zero-copy view of ``count`` items at ``offset``, and the offset past its padding."""
    size = np.dtype(dtype).itemsize * count
    end = offset + size
    if end > len(raw):
        raise _bad(f"truncated: column {name} needs bytes {offset}..{end}, payload has {len(raw)}")
    col = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
    return col, end + _pad8(size)


def decode_binary_batch(raw: bytes) -> BinaryBatch:
    """Decode a binary batch's structure into zero-copy columns.

    Raises :class:`PayloadError`: ``oversize`` above ``MAX_PAYLOAD_BYTES``,
    ``unsupported_version`` for another version, ``schema_violation`` for a reading count
    outside 1..``MAX_BINARY_READINGS_PER_BATCH`` or a bad gateway id, ``invalid_binary`` for
    anything structurally wrong (bad magic, unknown flags, truncated, trailing bytes, a sensor
    index outside the table, an id that is not UTF-8)."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise PayloadError(RejectReason.OVERSIZE, f"{len(raw)} bytes > {MAX_PAYLOAD_BYTES}")
    if len(raw) < _HEAD.size:
        raise _bad(f"truncated: {len(raw)} bytes is shorter than the {_HEAD.size}-byte header")
    magic, version, flags, gw_len = _HEAD.unpack_from(raw, 0)
    if magic != MAGIC:
        raise _bad(f"magic {magic!r} is not {MAGIC!r}")
    if version != BINARY_VERSION:
        raise PayloadError(
            RejectReason.UNSUPPORTED_VERSION, f"binary v={version}, this speaks v={BINARY_VERSION}"
        )
    if flags & ~_KNOWN_FLAGS:
        raise _bad(f"unknown flags 0x{flags:02x}")
    off = _HEAD.size
    if off + gw_len + _FIXED.size > len(raw):
        raise _bad("truncated in the header")
    gw = _utf8(raw[off : off + gw_len], "gateway id")
    if not is_valid_id(gw):
        raise PayloadError(RejectReason.SCHEMA_VIOLATION, "gw must be a gateway id")
    off += gw_len
    seq, sent, offset_ms, n, n_sensors = _FIXED.unpack_from(raw, off)
    off += _FIXED.size
    if not 1 <= n <= MAX_BINARY_READINGS_PER_BATCH:
        raise PayloadError(
            RejectReason.SCHEMA_VIOLATION,
            f"readings must be 1..{MAX_BINARY_READINGS_PER_BATCH}, got {n}",
        )
    if n_sensors > MAX_BINARY_SENSORS:
        raise _bad(f"sensor table of {n_sensors} entries exceeds {MAX_BINARY_SENSORS}")
    ids, sensor_kinds, off = _sensor_table(raw, off, gw, n_sensors)
    sensor, off = _column(raw, off, "<u4" if flags & FLAG_SENSOR_U32 else "<u2", n, "sensor")
    ts, off = _column(raw, off, "<i8", n, "ts")
    seq_col, off = _column(raw, off, "<i8" if flags & FLAG_SEQ_I64 else "<u4", n, "seq")
    clock, off = _column(raw, off, "u1", n, "clock")
    values, off = _column(
        raw, off, "<i8" if flags & FLAG_VALUES_I64 else "<i4", n * VALUE_WIDTH, "values"
    )
    if off != len(raw):
        raise _bad(f"{len(raw) - off} bytes after the last column")
    if int(sensor.max()) >= n_sensors:
        raise _bad(f"sensor index {int(sensor.max())} outside the table of {n_sensors}")
    return BinaryBatch(
        gw=gw,
        seq=seq,
        sent=sent,
        clock_offset_ms=offset_ms if flags & FLAG_CLOCK_OFFSET else None,
        sensor_ids=ids,
        sensor_kinds=sensor_kinds,
        sensor=sensor,  # type: ignore[arg-type]
        ts=ts,  # type: ignore[arg-type]
        seq_col=seq_col,  # type: ignore[arg-type]
        clock=clock,  # type: ignore[arg-type]
        values=values.reshape(n, VALUE_WIDTH),  # type: ignore[arg-type]
    )


#: gateway id -> its last sensor table (the raw bytes, the ids, the kinds). A gateway sends the
#: same table in every batch; parsing it in Python was most of a batch's decode time.
_TABLES: dict[str, tuple[bytes, tuple[str, ...], npt.NDArray[np.uint8]]] = {}
_MAX_CACHED_TABLES = 20_000


def _sensor_table(
    raw: bytes, off: int, gw: str, n_sensors: int
) -> tuple[tuple[str, ...], npt.NDArray[np.uint8], int]:
    """The sensor table at ``off`` (ids, kind codes) and the offset of the first column."""
    cached = _TABLES.get(gw)
    if cached is not None and len(cached[1]) == n_sensors and raw.startswith(cached[0], off):
        return cached[1], cached[2], off + len(cached[0])
    start = off
    ids: list[str] = []
    kinds = bytearray()
    for _ in range(n_sensors):
        if off + _ENTRY.size > len(raw):
            raise _bad("truncated in the sensor table")
        kind, id_len = _ENTRY.unpack_from(raw, off)
        off += _ENTRY.size
        if off + id_len > len(raw):
            raise _bad("truncated in the sensor table")
        ids.append(_utf8(raw[off : off + id_len], "sensor id"))
        kinds.append(kind)
        off += id_len
    off += _pad8(off)
    if off > len(raw):
        raise _bad("truncated in the sensor table")
    table = (tuple(ids), np.frombuffer(bytes(kinds), dtype=np.uint8))
    if len(_TABLES) >= _MAX_CACHED_TABLES:
        _TABLES.clear()  # more gateways than any city has: a spoofing flood, not a city
    _TABLES[gw] = (raw[start:off], *table)
    return (*table, off)


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad(f"{what} is not UTF-8: {exc.reason}") from None


__all__ = [
    "BINARY_VERSION",
    "CLOCK_CODES",
    "MAGIC",
    "MAX_BINARY_READINGS_PER_BATCH",
    "VALUE_WIDTH",
    "BinaryBatch",
    "decode_binary_batch",
    "encode_binary_batch",
    "is_binary",
]
