"""Columns of a binary batch: its sensor table resolved against the registry."""

from __future__ import annotations

from itertools import repeat

import numpy as np

from cloud.ingest.decode.rules import N_KINDS, USED, Columns
from cloud.ingest.topology import CityIndex
from contract import BinaryBatch
from contract.payload import MAX_COUNT


def binary_columns(b: BinaryBatch, index: CityIndex) -> Columns:
    """Columns of one binary batch (its sensor table resolved against the registry)."""
    pos = index.sensor_pos
    table_pos = np.fromiter(map(pos.get, b.sensor_ids, repeat(-1)), np.int32, len(b.sensor_ids))
    table_kind = np.where(b.sensor_kinds < N_KINDS, b.sensor_kinds, 0).astype(np.int8)
    kind = table_kind[b.sensor]
    values = np.clip(b.values, -1, MAX_COUNT + 1).astype(np.int64)
    return Columns(
        sensor=table_pos[b.sensor],
        kind=kind,
        ts=b.ts,
        seq=b.seq_col.astype(np.int64),
        values=values,
        # a non-zero value past the kind's fields is the binary form of an unknown JSON key
        keys_bad=(b.values != 0).any(axis=1, where=~USED[kind]),
        shape_bad=b.clock > 1,
    )
