"""Picking the ingester's bed rollups out of a snapshot, for every route that shows beds of a
region or site: which rows hold a (level, code)'s bed types, and their counts summed.

Summing counts (capacity, occupied, free, waiting, ...) over bed types is how a group (ICU,
HCU, isolation) is formed; a BOR of such a sum goes through the one formula
(:func:`cloud.ingest.wards.bor_percent`), never a division here.
"""

from __future__ import annotations

from collections.abc import Iterable

from cloud.api.state import LiveState, Snapshot

#: ``bed_rollup``'s facility slot for hospitals and isolation centres together
ALL_FACILITIES = 0
#: the bed type slot that sums every bed type
ALL_BED_TYPES = 0


def rollup_rows(
    live: LiveState,
    snap: Snapshot,
    level: str,
    code: str,
    bed_types: Iterable[int],
    facility: int = ALL_FACILITIES,
) -> list[int]:
    """Rows of ``snap.beds`` for region (or site) ``code`` at ``level``, one per bed type slot
    in ``bed_types`` that has a rollup (none: no sensor of them reported yet)."""
    gid = live.group_ids.get((level, code))
    if gid is None:
        return []
    get = snap.bed_row.get
    return [r for slot in bed_types if (r := get((gid, slot, facility))) is not None]


def sum_rows(snap: Snapshot, rows: list[int], names: Iterable[str]) -> dict[str, int] | None:
    """The ``names`` counts of ``rows`` summed; None for no rows."""
    if not rows:
        return None
    # Plain ints: summing numpy scalars one by one was most of /v1/hospitals' build for a
    # province, and a numpy gather per figure costs more than that for a few rows.
    cols = snap.bed_columns
    return {name: sum(cols[name][r] for r in rows) for name in names}
