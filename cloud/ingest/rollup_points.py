"""The rollup points of a state (``bed_rollup``, ``crowd_site``, ``queue_site``; docs/schema.md),
formatted column-wise, and within a bucket only for the cells whose fields changed.

A rollup point is stamped at the start of its bucket and rewritten in place until the bucket
ends, so InfluxDB keeps, per cell and bucket, the last fields written in that bucket. Writing
every cell after every window formatted about 900 lines per window for 8 000 sensors, most of
them the same fields the bucket already held, and that was most of a single-reading window's
CPU (docs/performance.md, issue 14). So:

* the first write in a bucket is whole: every cell of a reporting sensor gets its point in
  every bucket the ingester writes in, as before (Grafana's per-bucket queries and any
  ``time > now() - ...`` query find every cell in the current bucket);
* later writes in the same bucket carry only the cells whose fields differ from what this
  process last wrote in that bucket. A cell's stored point is then the same as before: the
  fields of the last window in the bucket, written by the last window that changed them.

What was written is remembered only once InfluxDB has accepted it (:meth:`RollupPoints.forget`
/ :meth:`RollupPoints.remember`): after a failed write the next one is whole again. Past
buckets rewritten for late data are always whole (:meth:`RollupPoints.lines`). See
docs/adr/0027-per-message-path-and-changed-rollups.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cloud.influx import series_key
from cloud.ingest.aggregate import (
    BedLayouts,
    SensorState,
    bed_rollups,
    crowd_sites,
    queue_sites,
)
from cloud.ingest.raw_lines import rows_at
from cloud.ingest.topology import BED_TYPE_SLOTS, FACILITIES, CityIndex
from cloud.storage_schema import BED_ROLLUP_INTS, CROWD_SITE_INTS, QUEUE_SITE_INTS, Measurement

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

_TIMES = ("oldest_ms", "newest_ms")
#: Per measurement: the integer fields in the order they are written, then the float field
#: (absent where undefined), as docs/schema.md lists them.
_FIELDS: dict[Measurement, tuple[tuple[str, ...], str]] = {
    Measurement.BED_ROLLUP: ((*BED_ROLLUP_INTS, *_TIMES), "bor"),
    Measurement.CROWD_SITE: ((*CROWD_SITE_INTS, *_TIMES), "ratio"),
    Measurement.QUEUE_SITE: ((*QUEUE_SITE_INTS, *_TIMES), "wait_s"),
}


@dataclass(frozen=True, slots=True)
class Table:
    """One measurement's rollup rows: the cell of each row (bed: (group x BED_TYPE_SLOTS +
    bed type) x 3 + facility; sites: the site), its integer fields and its float field."""

    cells: I64
    ints: I64
    floats: F64

    def changed_since(self, before: Table | None) -> Bools:
        """Which rows differ from ``before`` (all of them if the cells are not the same)."""
        if before is None or not np.array_equal(before.cells, self.cells):
            return np.ones(len(self.cells), dtype=bool)
        nan = np.isnan(self.floats)
        same_float = (before.floats == self.floats) | (nan & np.isnan(before.floats))
        differs: Bools = np.any(before.ints != self.ints, axis=1) | ~same_float
        return differs


@dataclass(frozen=True, slots=True)
class Written:
    """What a write carried: the bucket and each measurement's rows as of that write."""

    stamp_ms: int
    tables: dict[Measurement, Table]


class RollupPoints:
    """Formats the rollup points of one city's state. Series keys are built once per cell;
    the bed cells' sort is kept between windows (``aggregate.BedLayouts``)."""

    def __init__(self, *, index: CityIndex) -> None:
        self.index = index
        self.layouts = BedLayouts(index=index)
        #: per measurement, cell -> series key (built once per cell)
        self._keys: dict[Measurement, dict[int, str]] = {m: {} for m in _FIELDS}
        #: what InfluxDB holds of the current bucket from this process (None: unknown)
        self._written: Written | None = None

    def tables(self, state: SensorState) -> dict[Measurement, Table]:
        """Every rollup row of ``state``, per measurement, in writing order."""
        bed = bed_rollups(state, self.index, self.layouts)
        crowd = crowd_sites(state, self.index)
        queue = queue_sites(state, self.index)
        out: dict[Measurement, Table] = {}
        cells = (bed.group.astype(np.int64) * BED_TYPE_SLOTS + bed.bed_type) * 3 + bed.facility
        for m, r, c, f in (
            (Measurement.BED_ROLLUP, bed, cells, bed.bor),
            (Measurement.CROWD_SITE, crowd, crowd.site.astype(np.int64), crowd.ratio),
            (Measurement.QUEUE_SITE, queue, queue.site.astype(np.int64), queue.wait_s),
        ):
            names = _FIELDS[m][0]
            ints = np.column_stack([getattr(r, n) for n in names]) if len(c) else None
            out[m] = Table(
                cells=c,
                ints=ints if ints is not None else np.zeros((0, len(names)), np.int64),
                floats=f,
            )
        return out

    def lines(self, state: SensorState, stamp_ms: int) -> list[str]:
        """Every rollup point of ``state`` stamped ``stamp_ms`` (a past bucket rewritten)."""
        out: list[str] = []
        for m, t in self.tables(state).items():
            out += self._format(m, t, np.ones(len(t.cells), dtype=bool), stamp_ms)
        return out

    def changed(self, state: SensorState, stamp_ms: int) -> tuple[list[str], Written]:
        """The points of the bucket ``stamp_ms`` that differ from what this process last
        wrote in it (all of them in a bucket not written yet), and what they carry: pass that
        to :meth:`remember` once InfluxDB has accepted them."""
        tables = self.tables(state)
        before = self._written
        out: list[str] = []
        for m, t in tables.items():
            prior = before.tables.get(m) if before and before.stamp_ms == stamp_ms else None
            out += self._format(m, t, t.changed_since(prior), stamp_ms)
        return out, Written(stamp_ms=stamp_ms, tables=tables)

    def forget(self) -> None:
        """Nothing is known written (a write is under way): the next change is whole."""
        self._written = None

    def remember(self, written: Written) -> None:
        """InfluxDB has accepted what :meth:`changed` returned with ``written``."""
        self._written = written

    def _format(self, m: Measurement, t: Table, rows: Bools, stamp_ms: int) -> list[str]:
        if not rows.any():
            return []
        names, float_name = _FIELDS[m]
        cells = t.cells[rows].tolist()
        known = self._keys[m]
        try:  # C-level lookups: a window writes hundreds of lines, every cell's key is known
            keys = list(map(known.__getitem__, cells))
        except KeyError:
            keys = [self._key(m, cell) for cell in cells]
        return rows_at(keys, names, t.ints[rows], float_name, t.floats[rows], stamp_ms * 1000)

    def _key(self, m: Measurement, cell: int) -> str:
        key = self._keys[m].get(cell)
        if key is None:
            key = self._keys[m][cell] = series_key(m, self._tags(m, cell))
        return key

    def _tags(self, m: Measurement, cell: int) -> dict[str, str]:
        if m is Measurement.BED_ROLLUP:
            group = self.index.groups[cell // 3 // BED_TYPE_SLOTS]
            bed_type = cell // 3 % BED_TYPE_SLOTS
            return {
                "level": group.level,
                "code": group.code,
                "name": group.name,
                "bed_type": str(bed_type) if bed_type else "all",
                "facility": FACILITIES[cell % 3],
            }
        reg = self.index.registry
        site = reg.doc.sites[cell]
        return {
            "site": site.id,
            "site_name": site.name,
            "kelurahan": site.kelurahan,
            "kecamatan": reg.kecamatan_of_kelurahan[site.kelurahan].code,
            "site_kind": site.kind.value,
        }
