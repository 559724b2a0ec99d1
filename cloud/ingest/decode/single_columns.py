"""A window's single readings (``single_structs``) as one segment of columns: no per-reading
Python code, only C-level ``map``/``attrgetter`` over the structs into ``numpy.fromiter``, once
per window. Every rule but the types and key sets (which msgspec checked) is ``rules.judge``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain, repeat
from operator import attrgetter
from typing import Any

import numpy as np
import orjson
from msgspec.structs import astuple

from cloud.ingest.decode.rules import USED, Columns
from cloud.ingest.decode.segments import Segment
from cloud.ingest.decode.single_structs import (
    SINGLE_KIND_OF_TYPE,
    AdmittedSingle,
    decode_single,
    single_reading,
)
from cloud.ingest.decode.types import Message
from cloud.ingest.topology import MAX_FIELDS, CityIndex
from contract.payload import MAX_COUNT

_SENSOR, _TS, _SEQ, _VALUES = map(attrgetter, ("sensor", "ts", "seq", "values"))
#: fields per kind code (row 0, no kind, has none)
_WIDTH = USED.sum(axis=1)


class SingleColumns:
    """A window's struct-decoded single readings, in the order they were added."""

    def __init__(self) -> None:
        self.messages: list[int] = []
        self.gateways: list[int] = []
        self.readings: list[Any] = []
        #: topic -> gateway, of the topics whose envelope ``envelope.admit`` passed in this
        #: window (the topic alone decides it, for one registry: a window has one)
        self._topics: dict[str, int] = {}

    def add(self, m: int, topic: str, single: AdmittedSingle) -> None:
        """Take message ``m``'s reading, which ``envelope.admit`` admitted on ``topic``."""
        self._topics[topic] = single.gateway
        self.messages.append(m)
        self.gateways.append(single.gateway)
        self.readings.append(single.reading)

    def add_known(self, m: int, msg: Message) -> bool:
        """Take ``msg`` if its topic was admitted earlier in the window and its payload is a
        well-formed single reading: exactly what ``envelope.admit`` would hand back, without
        judging the topic again (at one reading per message, that was half the decode's
        Python). False: ``envelope.admit`` decides, as for any message."""
        gateway = self._topics.get(msg.topic)
        if gateway is None:
            return False
        reading = decode_single(msg.payload)
        if reading is None:
            return False
        self.messages.append(m)
        self.gateways.append(gateway)
        self.readings.append(reading)
        return True

    def segment(self, index: CityIndex, messages: Sequence[Message]) -> Segment:
        """The readings as one segment (position -1: a single reading is not in a batch)."""
        rs, k = self.readings, len(self.readings)
        kind = np.fromiter(map(SINGLE_KIND_OF_TYPE.__getitem__, map(type, rs)), np.int8, count=k)
        flat = np.fromiter(
            chain.from_iterable(map(astuple, map(_VALUES, rs))),
            np.int64,
            count=int(_WIDTH[kind].sum()),
        )
        values = np.zeros((k, MAX_FIELDS), dtype=np.int64)
        values[USED[kind]] = flat  # row-major: each row's first WIDTH columns, wire order
        message = np.array(self.messages, dtype=np.int32)
        ts = list(map(_TS, rs))
        if None in ts:  # devices without a clock: stamped on receipt
            got = zip(self.messages, ts, strict=True)
            ts = [messages[m].received_ms if t is None else t for m, t in got]
        pos = index.sensor_pos
        cols = Columns(
            sensor=np.fromiter(map(pos.get, map(_SENSOR, rs), repeat(-1)), np.int32, count=k),
            kind=kind,
            ts=np.array(ts, dtype=np.int64),
            seq=np.fromiter(map(_SEQ, rs), np.int64, count=k),
            values=np.clip(values, -1, MAX_COUNT + 1),
        )

        def source(row: int) -> Any:
            # Only for refused readings: parse the payload again rather than keep documents.
            msg = messages[self.messages[row]]
            return single_reading(orjson.loads(msg.payload), msg.received_ms)

        return Segment(
            cols=cols,
            message=message,
            index=np.full(k, -1, dtype=np.int32),
            gateway=np.array(self.gateways, dtype=np.int32),
            source=source,
        )
