"""A direct device's single reading (``.../reading``) as msgspec decodes it; a window's single
readings become columns in ``single_columns``.

One reading per message is issue 14's mode (a): there, the general path (``orjson`` to a dict,
a copy without ``v``, then ``json_columns`` over a list of one-key-at-a-time lookups) was most
of the decode's CPU per message. msgspec checks the key set, the integer types, the kind (a
tagged union on ``kind`` picks the kind's values struct, the one ``json_structs`` derives from
``contract.KIND_FIELDS``) in C while it parses, and the window's structs become columns with
C-level ``map`` into ``numpy.fromiter``, once per window (``single_columns``).

Like ``json_structs`` it is a *filter*, not a judge: what it refuses (a fault anywhere, an
integer beyond int64, a ``clock`` key, which a single reading may not have) goes whole to the
general path (``envelope.admit`` then ``json_columns``), which says exactly what is wrong; what
it accepts is judged by ``rules.judge`` like every form. A reading without ``ts`` (or with
``"ts": null``) is stamped on receipt, as the general path does (:func:`single_reading`).
Single readings are not deduplicated (they carry no batch seq). The struct's fields are checked
against ``contract.SingleReading`` by tests/unit/test_ingest_decode_single.py, and the verdicts
against the general path by a differential hypothesis test there. docs/adr/0029.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from cloud.ingest.decode.json_structs import INT64_VALUES, Int64, decode_version_1, union_of
from contract import KIND_CODES, SingleReading

#: reading struct type -> kind code (the type is the kind: a tagged union on ``kind``); the
#: fields are SingleReading's, its defaults too (no ts: stamped on receipt; no seq: 0)
SINGLE_KIND_OF_TYPE: dict[type[msgspec.Struct], int] = {
    msgspec.defstruct(
        f"Single{kind.value.title()}Reading",
        [
            ("v", int),
            ("sensor", str),
            ("values", INT64_VALUES[code]),
            ("ts", Int64 | None, SingleReading.model_fields["ts"].default),
            ("seq", Int64, SingleReading.model_fields["seq"].default),
        ],
        tag_field="kind",
        tag=kind.value,
        forbid_unknown_fields=True,
        gc=False,
    ): code
    for kind, code in KIND_CODES.items()
}


_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder(union_of(SINGLE_KIND_OF_TYPE))


def decode_single(payload: bytes) -> Any | None:
    """The single reading in ``payload`` if it is well-formed (version 1, every key known and
    every integer an int64); None if not (the general path then decides)."""
    return decode_version_1(_DECODER, payload)


def single_reading(doc: dict[str, Any], received_ms: int) -> dict[str, Any]:
    """A single-reading document as a batch reading (any JSON values): without ``v``, ``seq``
    0 if absent, and stamped on receipt with clock ``gateway`` if it has no ``ts``. The
    general path judges this; the struct path's refused rows report it in their detail."""
    reading = {k: v for k, v in doc.items() if k != "v"}
    reading.setdefault("seq", 0)
    if reading.get("ts") is None:  # a device without a clock: stamp on receipt
        reading["ts"] = received_ms
        reading["clock"] = "gateway"
    return reading


@dataclass(frozen=True, slots=True)
class AdmittedSingle:
    """An admitted single reading as :func:`decode_single` decoded it."""

    gateway: int
    reading: Any
