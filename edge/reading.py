"""The edge's reading: a plain slots dataclass, validated once where it is made.

A frame becomes a reading in the serial reader after the frame decoder
(:class:`contract.serial_frame.FrameDecoder`) checked its id, kind, integer types and seq sign
and :func:`contract.payload.check_rows` its value rules over the burst: the contract's rules,
applied once. From then on the reading is data, not a model
to re-validate: building a pydantic ``Reading`` per frame (even with ``model_construct``) was a
third of the serial reader's cost, and validating the spooled JSON back into models on every
``take()`` the spool's biggest cost. :func:`encode_readings` gives exactly the bytes
``contract.payload.encode`` gives for the same readings (a unit test holds them equal), and
those bytes are what the spool stores and the agent publishes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel

from contract.payload import ClockSource, SensorKind


@dataclass(slots=True)
class EdgeReading:
    """One observation of one sensor; fields (and their order) as in ``contract.Reading``.

    Not ``frozen``: a frozen dataclass sets each field through ``object.__setattr__``, which
    made building one 4x dearer (1.7 us against 0.4 us, 2 000 per second on a big gateway);
    nothing changes a reading once it is made (it could not be hashed anyway: ``values`` is a
    dict)."""

    sensor: str
    kind: SensorKind
    ts: int
    seq: int
    values: dict[str, int]
    clock: ClockSource = ClockSource.SENSOR


def _as_json(obj: Any) -> Any:
    # Callers (tests, tools) may hand contract models; they serialise as encode() would.
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json", exclude_none=True)
    raise TypeError(f"cannot encode {type(obj).__name__} as a reading")


def encode_readings(readings: Iterable[object]) -> bytes:
    """``readings`` (:class:`EdgeReading` or ``contract.Reading``) as one compact JSON array,
    byte for byte what ``contract.payload.encode`` writes for each."""
    # orjson serialises a slots dataclass at 2.4 us, a dict of the same fields at 0.3 us (and
    # building the dict here costs 0.6): the fields in EdgeReading's order, which is the
    # contract Reading's (tests/unit/test_edge_wire.py holds the bytes equal to encode()).
    items = [
        {
            "sensor": r.sensor,
            "kind": r.kind,
            "ts": r.ts,
            "seq": r.seq,
            "values": r.values,
            "clock": r.clock,
        }
        if type(r) is EdgeReading
        else r
        for r in readings
    ]
    return orjson.dumps(items, default=_as_json)
