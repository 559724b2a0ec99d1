"""Segments: the readings of a group of messages of one form (struct-decoded JSON batches,
general JSON, binary) as columns, with where each row came from; and their concatenation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from cloud.ingest.binary_detail import BinaryRow
from cloud.ingest.decode.binary_columns import binary_window_columns
from cloud.ingest.decode.envelope import AdmittedBinary, AdmittedJson
from cloud.ingest.decode.json_columns import json_columns
from cloud.ingest.decode.json_native import NativeColumns
from cloud.ingest.decode.rules import Columns
from cloud.ingest.decode.struct_columns import StructColumns
from cloud.ingest.decode.types import I32, Bools, Message
from cloud.ingest.topology import MAX_FIELDS, CityIndex


@dataclass(kw_only=True)
class Segment:
    """Readings of some messages of a window, in columns, with where each row came from."""

    cols: Columns
    message: I32
    index: I32
    gateway: I32
    #: row -> the reading as parsed JSON, or a BinaryRow (for dead-letter details of refused rows)
    source: Callable[[int], Any]


def struct_segment(structs: StructColumns | NativeColumns, messages: Sequence[Message]) -> Segment:
    """The segment of the window's struct-decoded (or natively decoded) JSON batches."""
    counts = np.array([k for _, _, k in structs.items], dtype=np.intp)
    ends = np.cumsum(counts)
    starts = ends - counts

    def source(row: int) -> Any:
        # Only for refused readings: parse the payload again rather than keep every document.
        at = int(np.searchsorted(ends, row, side="right"))
        doc = orjson.loads(messages[structs.items[at][0]].payload)
        return doc["readings"][row - int(starts[at])]

    return Segment(
        cols=structs.columns(),
        message=np.repeat(np.array([m for m, _, _ in structs.items], dtype=np.int32), counts),
        index=np.arange(structs.n, dtype=np.int32) - np.repeat(starts.astype(np.int32), counts),
        gateway=np.repeat(np.array([g for _, g, _ in structs.items], dtype=np.int32), counts),
        source=source,
    )


def json_segment(items: list[tuple[int, AdmittedJson]], index: CityIndex) -> Segment:
    """The segment of JSON messages ``items`` (the general path)."""
    raw: list[Any] = []
    for _, j in items:
        raw += j.readings
    counts = np.array([len(j.readings) for _, j in items], dtype=np.intp)
    cols = json_columns(raw, index)
    if all(j.is_batch for _, j in items):
        positions = np.arange(len(raw), dtype=np.int32) - np.repeat(
            (np.cumsum(counts) - counts).astype(np.int32), counts
        )
    else:
        positions = np.concatenate(
            [
                np.arange(len(j.readings), dtype=np.int32)
                if j.is_batch
                else np.full(len(j.readings), -1, np.int32)
                for _, j in items
            ]
        )
    return Segment(
        cols=cols,
        message=np.repeat(np.array([m for m, _ in items], dtype=np.int32), counts),
        index=positions,
        gateway=np.repeat(np.array([j.gateway for _, j in items], dtype=np.int32), counts),
        source=raw.__getitem__,
    )


def binary_segment(items: list[tuple[int, AdmittedBinary]], index: CityIndex) -> Segment:
    """The segment of binary batches ``items``: one set of columns for all of them
    (``binary_columns``), and where each row came from."""
    counts = np.fromiter((len(b.batch) for _, b in items), np.intp, len(items))
    starts = np.r_[0, np.cumsum(counts)]

    def source(row: int) -> Any:
        k = int(np.searchsorted(starts, row, side="right")) - 1
        return BinaryRow(items[k][1].batch, row - int(starts[k]))

    first = np.repeat(starts[:-1].astype(np.int32), counts)
    return Segment(
        cols=binary_window_columns([(b.batch, b.gateway) for _, b in items], index),
        message=np.repeat(np.array([m for m, _ in items], dtype=np.int32), counts),
        index=np.arange(len(first), dtype=np.int32) - first,
        gateway=np.repeat(np.array([b.gateway for _, b in items], dtype=np.int32), counts),
        source=source,
    )


def concat(parts: Sequence[Columns]) -> Columns:
    """One Columns of several, in order."""
    if len(parts) == 1:
        return parts[0]
    n = [len(p.sensor) for p in parts]

    def opt(name: str, fill: bool, shape: tuple[int, ...]) -> Bools | None:
        got = [getattr(p, name) for p in parts]
        if all(g is None for g in got):
            return None
        return np.concatenate(
            [
                g if g is not None else np.full((k, *shape), fill, dtype=bool)
                for g, k in zip(got, n, strict=True)
            ]
        )

    return Columns(
        sensor=np.concatenate([p.sensor for p in parts]),
        kind=np.concatenate([p.kind for p in parts]),
        ts=np.concatenate([p.ts for p in parts]),
        seq=np.concatenate([p.seq for p in parts]),
        values=np.concatenate([p.values for p in parts]),
        field_ok=opt("field_ok", True, (MAX_FIELDS,)),
        shape_bad=opt("shape_bad", False, ()),
        keys_bad=opt("keys_bad", False, ()),
        # only where every part knows it: the others are judged against the registry
        registry_ok=(
            None
            if any(p.registry_ok is None for p in parts)
            else np.concatenate([p.registry_ok for p in parts if p.registry_ok is not None])
        ),
    )
