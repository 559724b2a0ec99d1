"""Ward rows (``BedWard``) as plain dicts for ``/v1/beds`` and ``/v1/beds/{site_id}``: the
registry's part of each row made once per registry, the snapshot's figures picked with one
numpy gather per column per answer.

Why not one ``BedWard`` model per row: a province's kecamatan has hundreds of wards, and
validating and serialising a pydantic model per ward was 27 ms per answer, rebuilt after every
state change (docs/performance.md). The rows hold exactly the fields of
:class:`cloud.api.models.BedWard` (the OpenAPI schema; schemathesis and the route tests check
answers against it), and every figure is the ingester's (:mod:`cloud.ingest.wards`), read from
the snapshot, never recomputed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from city import Registry
from cloud.api.queries import format_ms_many, is_stale
from cloud.api.registry_views import bed_wards
from cloud.api.state import Snapshot
from contract.beds import BED_TYPES, bed_group, bor_band

_COUNTS = ("capacity", "occupied", "free", "suspect", "confirmed", "waiting")


@lru_cache(maxsize=4)
def _static(registry: Registry) -> tuple[tuple[Mapping[str, Any], dict[str, Any], int], ...]:
    """Per bed sensor: its registry metadata (for filters), the row's registry fields, and
    its index in the registry's sensor list."""
    pos = {s.id: i for i, s in enumerate(registry.doc.sensors)}
    out = []
    for meta in bed_wards(registry):
        code: int = meta["bed_type"]
        row = {
            "sensor": meta["sensor"],
            "site": meta["site"],
            "site_name": meta["site_name"],
            "site_kind": meta["site_kind"],
            "kelurahan": meta["kelurahan"],
            "kecamatan": meta["kecamatan"],
            "ward": meta["ward"],
            "bed_type": code,
            "bed_type_name": BED_TYPES.get(code, f"bed type {code}"),
            "bed_group": bed_group(code),
        }
        out.append((meta, row, pos[meta["sensor"]]))
    return tuple(out)


def ward_rows(
    registry: Registry,
    snap: Snapshot,
    keep: Callable[[Mapping[str, Any]], bool],
    *,
    now: int,
    after: float,
) -> list[dict[str, Any]]:
    """The rows of the wards whose metadata ``keep`` accepts, in registry order; a ward that
    never reported has null figures and ``stale: true``."""
    chosen = [(row, pos) for meta, row, pos in _static(registry) if keep(meta)]
    if not chosen:
        return []
    w = snap.wards
    positions = np.array([pos for _, pos in chosen], dtype=np.intp)
    if len(w.sensor):
        # ``wards.sensor`` is ascending (the reporting bed sensors): each ward's row in it.
        at = np.minimum(np.searchsorted(w.sensor, positions), len(w.sensor) - 1)
        found = w.sensor[at] == positions
    else:  # nothing reported yet: every ward's row is nulls
        at, found = np.zeros(0, np.intp), np.zeros(len(positions), bool)
    columns = [getattr(w, name)[at].tolist() for name in _COUNTS]
    bors = w.bor[at].tolist()
    stamps = w.ts[at].tolist()
    stamps_iso = format_ms_many(w.ts[at])
    out = []
    for i, ((static, _), reported) in enumerate(zip(chosen, found.tolist(), strict=True)):
        row = dict(static)
        observed: int | None = stamps[i] if reported else None
        bor = (None if math.isnan(bors[i]) else bors[i]) if reported else None
        for name, column in zip(_COUNTS, columns, strict=True):
            row[name] = column[i] if reported else None
        row["bor"] = bor
        row["band"] = bor_band(bor)
        row["observed_at"] = stamps_iso[i] if reported else None
        row["observed_at_ms"] = observed
        row["stale"] = is_stale(observed, now=now, stale_after_s=after)
        out.append(row)
    return out
