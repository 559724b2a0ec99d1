"""The binary batch round-trips exactly, and nothing but PayloadError ever escapes its decoder."""

from __future__ import annotations

import contextlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import (
    MAX_BINARY_READINGS_PER_BATCH,
    MAX_PAYLOAD_BYTES,
    PayloadError,
    RejectReason,
    decode_binary_batch,
    encode_binary_batch,
    is_binary,
)
from contract.binary import MAGIC, VALUE_WIDTH

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)
i64 = st.integers(-(2**63), 2**63 - 1)


@st.composite
def batches(draw: st.DrawFn) -> dict[str, object]:
    n_sensors = draw(st.integers(1, 6))
    n = draw(st.integers(1, 40))
    narrow = draw(st.booleans())  # exercise both column widths
    value = st.integers(0, 10**6) if narrow else i64
    seq = st.integers(0, 2**32 - 1) if narrow else i64
    return {
        "gw": draw(ids),
        "seq": draw(st.integers(0, 2**64 - 1)),
        "sent": draw(i64),
        "clock_offset_ms": draw(st.none() | st.integers(-(2**31), 2**31 - 1)),
        "sensors": draw(st.lists(ids, min_size=n_sensors, max_size=n_sensors)),
        "kinds": draw(st.lists(st.integers(0, 255), min_size=n_sensors, max_size=n_sensors)),
        "sensor": draw(st.lists(st.integers(0, n_sensors - 1), min_size=n, max_size=n)),
        "ts": draw(st.lists(i64, min_size=n, max_size=n)),
        "reading_seq": draw(st.lists(seq, min_size=n, max_size=n)),
        "clock": draw(st.lists(st.integers(0, 255), min_size=n, max_size=n)),
        "values": draw(
            st.lists(
                st.lists(value, min_size=VALUE_WIDTH, max_size=VALUE_WIDTH), min_size=n, max_size=n
            )
        ),
    }


@settings(max_examples=200, deadline=None)
@given(batch=batches())
def test_every_batch_round_trips_exactly(batch: dict[str, object]) -> None:
    raw = encode_binary_batch(**batch)  # type: ignore[arg-type]
    assert is_binary(raw)
    assert len(raw) % 8 == 0
    got = decode_binary_batch(raw)
    assert (got.gw, got.seq, got.sent, got.clock_offset_ms) == (
        batch["gw"],
        batch["seq"],
        batch["sent"],
        batch["clock_offset_ms"],
    )
    assert list(got.sensor_ids) == batch["sensors"]
    assert got.sensor_kinds.tolist() == batch["kinds"]
    assert got.sensor.tolist() == batch["sensor"]
    assert got.ts.tolist() == batch["ts"]
    assert got.seq_col.tolist() == batch["reading_seq"]
    assert got.clock.tolist() == batch["clock"]
    assert got.values.tolist() == batch["values"]


def _sample() -> bytes:
    return encode_binary_batch(
        gw="gw-kariadi",
        seq=7,
        sent=1_795_000_000_000,
        clock_offset_ms=-12,
        sensors=["bed-kariadi-icu", "q-kariadi-poli"],
        kinds=[1, 3],
        sensor=[0, 1, 0],
        ts=[1_795_000_000_000, 1_795_000_000_500, 1_795_000_001_000],
        reading_seq=[1, 2, 3],
        values=[[24, 20, 3, 5, 2], [40, 31, 2], [24, 21, 3, 5, 2]],
        clock=[0, 1, 0],
    )


def test_columns_are_zero_copy_views_of_the_payload() -> None:
    raw = _sample()
    got = decode_binary_batch(raw)
    for col in (got.sensor, got.ts, got.seq_col, got.clock, got.values):
        assert not col.flags.owndata
        assert not col.flags.writeable  # a view of the immutable payload bytes
        assert col.ctypes.data % col.dtype.itemsize == 0  # and aligned
    assert got.values.dtype == np.int32
    assert got.values.tolist()[1] == [40, 31, 2, 0, 0]


def test_truncation_at_every_offset_is_a_payload_error() -> None:
    raw = _sample()
    for cut in range(len(raw)):
        with pytest.raises(PayloadError) as info:
            decode_binary_batch(raw[:cut])
        assert info.value.reason is RejectReason.INVALID_BINARY, cut


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b"PNB2" + b[4:], RejectReason.INVALID_BINARY),
        (lambda b: b[:4] + b"\x02" + b[5:], RejectReason.UNSUPPORTED_VERSION),
        (lambda b: b[:5] + b"\x80" + b[6:], RejectReason.INVALID_BINARY),
        (lambda b: b + b"\0" * 8, RejectReason.INVALID_BINARY),
        (lambda b: b + b"\0" * MAX_PAYLOAD_BYTES, RejectReason.OVERSIZE),
    ],
    ids=["magic", "version", "flags", "trailing", "oversize"],
)
def test_structural_faults_have_their_reason(mutate: object, reason: RejectReason) -> None:
    with pytest.raises(PayloadError) as info:
        decode_binary_batch(mutate(_sample()))  # type: ignore[operator]
    assert info.value.reason is reason


def test_reading_count_limits_are_schema_violations() -> None:
    raw = bytearray(_sample())
    n_at = 8 + len("gw-kariadi") + 8 + 8 + 4  # header, gw, seq, sent, offset
    for n in (0, MAX_BINARY_READINGS_PER_BATCH + 1):
        struct.pack_into("<I", raw, n_at, n)
        with pytest.raises(PayloadError) as info:
            decode_binary_batch(bytes(raw))
        assert info.value.reason is RejectReason.SCHEMA_VIOLATION


def test_a_sensor_index_outside_the_table_is_refused() -> None:
    raw = encode_binary_batch(
        gw="gw-a", seq=0, sent=0, sensors=["s"], kinds=[1], sensor=[0], ts=[0],
        reading_seq=[0], values=[[0]],
    )  # fmt: skip
    table_end = 8 + 4 + 28 + 2 + 1
    bad = bytearray(raw)
    bad[table_end + (-table_end) % 8] = 1  # first sensor index -> 1, table has 1 entry
    with pytest.raises(PayloadError) as info:
        decode_binary_batch(bytes(bad))
    assert info.value.reason is RejectReason.INVALID_BINARY


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400), prefix=st.booleans())
def test_random_bytes_only_ever_raise_payload_error(data: bytes, prefix: bool) -> None:
    raw = MAGIC + b"\x01" + data if prefix else data
    with contextlib.suppress(PayloadError):
        decode_binary_batch(raw)


@settings(max_examples=300, deadline=None)
@given(batch=batches(), flips=st.lists(st.tuples(st.integers(0), st.integers(0, 7)), max_size=4))
def test_bit_flips_only_ever_raise_payload_error(
    batch: dict[str, object], flips: list[tuple[int, int]]
) -> None:
    raw = bytearray(encode_binary_batch(**batch))  # type: ignore[arg-type]
    for at, bit in flips:
        raw[at % len(raw)] ^= 1 << bit
    try:
        got = decode_binary_batch(bytes(raw))
    except PayloadError:
        return
    # what decodes is self-consistent: every column has one entry per reading
    n = len(got)
    assert len(got.sensor) == len(got.seq_col) == len(got.clock) == n
    assert got.values.shape == (n, VALUE_WIDTH)
    assert int(got.sensor.max()) < len(got.sensor_ids)


def test_a_gateways_sensor_table_is_reused_only_while_it_is_byte_identical() -> None:
    """The decoder keeps each gateway's last sensor table: the same table is not parsed again
    (the very same ids come back), and a changed table of the same size is read afresh."""

    def batch(sensors: list[str], kinds: list[int]) -> bytes:
        return encode_binary_batch(
            gw="gw-cache", seq=1, sent=1_764_000_000_000, sensors=sensors, kinds=kinds,
            sensor=[0, 1], ts=[1_764_000_000_000] * 2, reading_seq=[1, 2],
            values=[[10, 5, 1, 1, 0], [10, 5, 1, 1, 0]],
        )  # fmt: skip

    first = decode_binary_batch(batch(["bed-a", "bed-b"], [1, 1]))
    again = decode_binary_batch(batch(["bed-a", "bed-b"], [1, 1]))
    assert again.sensor_ids is first.sensor_ids
    renamed = decode_binary_batch(batch(["bed-a", "bed-c"], [1, 1]))
    assert renamed.sensor_ids == ("bed-a", "bed-c")
    rekinded = decode_binary_batch(batch(["bed-a", "bed-c"], [1, 3]))
    assert rekinded.sensor_kinds.tolist() == [1, 3]
    assert decode_binary_batch(batch(["bed-a", "bed-b"], [1, 1])).sensor_ids == ("bed-a", "bed-b")
