"""The JSON batch as msgspec decodes it: typed structs straight from the bytes, no dicts.

``msgspec`` validates a batch in C while it parses: the key sets (unknown keys refused), the
integer types (JSON ``true`` and ``1.0`` are not integers), the kind (a tagged union on the
reading's ``kind`` picks the kind's own values struct, so a value key set that is not exactly
the kind's is refused too) and the clock. A reading costs two small structs that the cyclic GC
does not track (``gc=False``: they hold only strings, integers and enum members).

It is a *filter*, not a judge: whatever it refuses goes, whole, to the general path
(``envelope.admit`` then ``json_columns``), which says exactly what is wrong; whatever it
accepts is judged by ``rules.judge`` like every other form. So it may refuse more than the
contract does (an envelope integer beyond int64) but never accept a document the general path
would refuse as a message. A reading's integers are plain ``int``: a bound on each (int64) cost
about 10 % of the parse, so a reading integer beyond int64 passes here and ``struct_columns``
sends its message, whole, to the general path when numpy cannot hold it (as this filter used
to refuse it).

Every type here is derived from ``contract.payload`` (``KIND_FIELDS``, ``ClockSource``, the
models' field names, ``MAX_READINGS_PER_BATCH``); the field names are checked against the
models by tests/unit/test_ingest_decode_structs.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from contract import KIND_CODES, KIND_FIELDS, ClockSource, Reading
from contract.payload import MAX_PAYLOAD_BYTES, MAX_READINGS_PER_BATCH, SCHEMA_VERSION

#: int64: what the columns hold. An integer outside (orjson reads some of them as floats) is
#: not this filter's to judge: the general path does. Bounded in the envelope only (once per
#: message); a reading's integers are bounded by the columns (module docstring).
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_Natural = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


#: kind code -> the values struct of that kind: exactly its fields, in wire order, so
#: ``msgspec.structs.astuple`` gives them in the order of the value columns.
def _values_structs(field_type: Any, prefix: str) -> dict[int, type[msgspec.Struct]]:
    return {
        code: msgspec.defstruct(
            f"{prefix}{kind.value.title()}Values",
            [(f, field_type) for f in KIND_FIELDS[kind]],
            forbid_unknown_fields=True,
            gc=False,
        )
        for kind, code in KIND_CODES.items()
    }


VALUES = _values_structs(int, "")
#: the same, each integer bounded to int64: for a single reading, whose columns
#: (``single_columns``) have no fallback for a value numpy cannot hold; one bound per value
#: costs nothing next to a message's own cost
INT64_VALUES = _values_structs(Int64, "Int64")

#: the reading's fields other than the tag (``kind``) and ``values``, as msgspec types them
_READING_FIELDS: list[tuple[str, Any] | tuple[str, Any, Any]] = [
    ("sensor", str),
    ("ts", int),
    # a seq < 0 is accepted here and refused by judge, like every reading-level rule
    ("seq", int),
    ("clock", ClockSource, Reading.model_fields["clock"].default),
]

#: reading struct type -> kind code (the type is the kind: a tagged union on ``kind``)
KIND_OF_TYPE: dict[type[msgspec.Struct], int] = {
    msgspec.defstruct(
        f"{kind.value.title()}Reading",
        [*_READING_FIELDS[:3], ("values", VALUES[code]), _READING_FIELDS[3]],
        tag_field="kind",
        tag=kind.value,
        forbid_unknown_fields=True,
        gc=False,
    ): code
    for kind, code in KIND_CODES.items()
}


def union_of(structs: Iterable[type[msgspec.Struct]]) -> Any:
    """The union type of ``structs``, tagged on ``kind``, for a msgspec decoder."""
    union: Any = None
    for struct in structs:
        union = struct if union is None else union | struct
    return union


if TYPE_CHECKING:
    _Readings = list[Any]  # the union of KIND_OF_TYPE's keys, which mypy cannot name
else:
    _Readings = Annotated[
        list[union_of(KIND_OF_TYPE)], msgspec.Meta(min_length=1, max_length=MAX_READINGS_PER_BATCH)
    ]


class WireBatch(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A gateway batch (``contract.Batch``) whose envelope passed every message-level rule but
    the gateway's (which needs the topic and the registry)."""

    v: int
    gw: str
    seq: _Natural
    sent: Int64
    readings: _Readings
    clock_offset_ms: Int64 | None = None


_DECODER = msgspec.json.Decoder(WireBatch)


def decode_batch(payload: bytes) -> WireBatch | None:
    """The batch in ``payload`` if it is well-formed to the last reading (version 1, every key
    known, every envelope integer an int64, every reading's an integer); None if not (the
    general path then decides)."""
    batch: WireBatch | None = decode_version_1(_DECODER, payload)
    return batch


def decode_version_1(decoder: msgspec.json.Decoder[Any], payload: bytes) -> Any | None:
    """``payload`` decoded by ``decoder`` if it fits the contract's size and is version 1;
    None if not, or if msgspec refuses it (the general path then decides)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        doc = decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    # v is typed int, not Literal[1], so that a wrong version costs no exception here either
    return doc if doc.v == SCHEMA_VERSION else None
