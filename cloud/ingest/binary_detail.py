"""Dead-letter details for refused readings of a binary (PNB1) batch, in the format's own terms.

A device maker who built a PNB1 encoder byte by byte needs to know *which bytes* were wrong: the
reading's index, the column or table entry, and the byte offset of the offending value in the
payload (docs/protocol.md, "Binary batch"). The reason itself is decided elsewhere (the
vectorised judge in ``decode/rules.py``); this module only words it, and runs only for refused rows.
Where the contract has words for a rule (``check_values``, ``check_timestamp``) they are used,
prefixed with where the value sits.
"""

from __future__ import annotations

from dataclasses import dataclass

from cloud.ingest.topology import KIND_BY_CODE
from contract import KIND_FIELDS, RejectReason, SensorKind, check_timestamp, check_values
from contract.binary import CLOCK_CODES, VALUE_WIDTH, BinaryBatch
from contract.payload import MAX_COUNT

#: magic(4) version flags gw_len reserved, then after the gateway id: seq sent offset N S
_HEAD_BYTES = 8
_FIXED_BYTES = 28
_KIND_NAMES = ", ".join(f"{code} ({kind.value})" for code, kind in sorted(KIND_BY_CODE.items()))
_CLOCK_NAMES = " or ".join(f"{code} ({clock.value})" for clock, code in CLOCK_CODES.items())


@dataclass(frozen=True, slots=True)
class BinaryRow:
    """Reading ``index`` of a decoded binary batch (what a refused row points back to)."""

    batch: BinaryBatch
    index: int


def _pad8(n: int) -> int:
    return n + (-n) % 8


def column_offsets(b: BinaryBatch) -> dict[str, int]:
    """Where each column starts in the payload, derived from the layout (header, gateway id,
    sensor table, then each column padded to a multiple of 8 from the payload start)."""
    off = _HEAD_BYTES + len(b.gw.encode("utf-8")) + _FIXED_BYTES
    off += sum(2 + len(s.encode("utf-8")) for s in b.sensor_ids)
    off = _pad8(off)
    out: dict[str, int] = {}
    for name, col in (
        ("sensor", b.sensor),
        ("ts", b.ts),
        ("seq", b.seq_col),
        ("clock", b.clock),
        ("values", b.values),
    ):
        out[name] = off
        off = _pad8(off + col.nbytes)
    return out


def binary_detail(row: BinaryRow, reason: RejectReason, now_ms: int) -> str:
    """One sentence naming reading ``row.index``, the field and its byte offset, and the rule
    it breaks (``reason`` is the verdict already reached)."""
    b, i = row.batch, row.index
    at = column_offsets(b)
    entry = int(b.sensor[i])
    sensor_id = b.sensor_ids[entry]
    code = int(b.sensor_kinds[entry])
    kind = KIND_BY_CODE.get(code)
    head = f"reading {i}"
    sensor_at = at["sensor"] + i * b.sensor.itemsize
    if reason is RejectReason.UNKNOWN_SENSOR:
        return (
            f"{head}: sensor {sensor_id!r} (table entry {entry}, index at byte {sensor_at})"
            " is not registered to this gateway"
        )
    if reason is RejectReason.KIND_MISMATCH:
        kind_name = kind.value if kind is not None else code
        return f"{head}: sensor {sensor_id!r} (table entry {entry}) is not a {kind_name!r} sensor"
    if reason in (RejectReason.FUTURE_TIMESTAMP, RejectReason.ANCIENT_TIMESTAMP):
        broken = check_timestamp(int(b.ts[i]), now_ms)
        words = broken[1] if broken else reason.value
        return f"{head}: ts at byte {at['ts'] + i * 8}: {words}"
    if kind is None:
        return (
            f"{head}: sensor table entry {entry} ({sensor_id!r}) has kind code {code},"
            f" not {_KIND_NAMES}"
        )
    clock = int(b.clock[i])
    if clock not in CLOCK_CODES.values():
        return f"{head}: clock code {clock} at byte {at['clock'] + i} is not {_CLOCK_NAMES}"
    seq = int(b.seq_col[i])
    if seq < 0:
        return f"{head}: seq {seq} at byte {at['seq'] + i * b.seq_col.itemsize} is negative"
    return _values_detail(b, i, kind, values_at=at["values"])


def _values_detail(b: BinaryBatch, i: int, kind: SensorKind, *, values_at: int) -> str:
    kind_fields = KIND_FIELDS[kind]
    width = b.values.itemsize
    row_at = values_at + i * VALUE_WIDTH * width
    row = [int(v) for v in b.values[i]]
    for j in range(len(kind_fields), VALUE_WIDTH):
        if row[j]:
            return (
                f"reading {i}: values[{j}] = {row[j]} at byte {row_at + j * width} is past the"
                f" {len(kind_fields)} fields of a {kind.value} reading (must be 0)"
            )
    for j, name in enumerate(kind_fields):
        if row[j] < 0 or row[j] > MAX_COUNT:
            broken = check_values(kind, dict(zip(kind_fields, row, strict=False)))
            words = broken[1] if broken else f"{name} is {row[j]}"
            return f"reading {i}: values[{j}] ({name}) at byte {row_at + j * width}: {words}"
    broken = check_values(kind, dict(zip(kind_fields, row, strict=False)))
    words = broken[1] if broken else "values break the schema"
    return f"reading {i}: values at bytes {row_at}..{row_at + VALUE_WIDTH * width}: {words}"


__all__ = ["BinaryRow", "binary_detail", "column_offsets"]
