"""The bed rollups of the API's snapshot, rebuilt per state change without sorting, and only
for the rollup cells whose sensors changed.

Why: :func:`cloud.ingest.aggregate.bed_rollups` groups the reporting bed sensors afresh on
every call (``np.argsort`` over every sensor x level x bed type x facility membership, 90 000
of them for a province of 8 000 sensors): 10 to 30 ms, and the API rebuilt its snapshot that
way after every state delta, five times a second. Which sensor counts in which cell
(rollup group, bed type slot, facility) depends only on the registry, so :class:`BedCells`
sorts the memberships once per registry; per change, :meth:`BedCells.update` recomputes the
sums of the cells holding a changed sensor (contiguous ranges of that one sorted order) and
keeps every other cell's figures.

One formula: the cell membership is the ingester's (each bed sensor counts in 4 cells per
level: its bed type or ``all`` x its facility or ``all``), ``free`` and ``bor`` come from
:mod:`cloud.ingest.wards`, and ``tests/unit/test_api_bed_cells.py`` checks, for random states
and random sequences of changes, that the result is exactly ``bed_rollups``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cloud.ingest.aggregate import BedRollups, SensorState
from cloud.ingest.topology import BED_TYPE_SLOTS, ROLLUP_LEVELS, CityIndex
from cloud.ingest.wards import bor_percent, free_beds
from contract import KIND_CODES, SensorKind

I64 = npt.NDArray[np.int64]
Idx = npt.NDArray[np.intp]

_BED = KIND_CODES[SensorKind.BED]
#: a bed reading's wire fields: capacity, occupied, suspect, confirmed, waiting
_FIELDS = 5
_NO_MIN = np.iinfo(np.int64).max
_NO_MAX = np.iinfo(np.int64).min
_NO_SENSORS = np.zeros(0, np.intp)


@dataclass(frozen=True, slots=True)
class CellSums:
    """Every cell's figures (reporting sensors only), one entry per cell of a
    :class:`BedCells`; a cell with ``sensors`` 0 is not a rollup row."""

    sums: I64  # (cells, 5): capacity, occupied, suspect, confirmed, waiting
    sensors: I64
    oldest_ms: I64
    newest_ms: I64


@dataclass(frozen=True, kw_only=True)
class BedCells:
    """The registry's bed rollup cells and their members, sorted once. Build with
    :meth:`of`."""

    #: per cell, ascending: (group x BED_TYPE_SLOTS + bed type slot) x 3 + facility
    key: I64
    #: per cell: where its members start in ``member``
    starts: Idx
    #: per cell: how many members it has
    size: Idx
    #: sensor index of each membership, grouped by cell
    member: Idx
    #: sensor index -> the cells it counts in (a CSR list: ``cells[cell_start[s]:...[s+1]]``)
    cell_start: Idx
    cells: Idx

    @classmethod
    def of(cls, index: CityIndex) -> BedCells:
        """The cells of every bed sensor of ``index``, reported or not."""
        sensors = np.flatnonzero(index.sensor_kind == _BED)
        site = index.sensor_site[sensors]
        n_levels = len(ROLLUP_LEVELS)
        group = index.site_group[site].astype(np.int64)
        fac = index.site_facility[site].astype(np.int64)
        bt = index.sensor_bed_type[sensors].astype(np.int64)
        zero = np.zeros_like(bt)
        # The expansion of bed_rollups: 4 cells per level, (type | all) x (facility | all);
        # a site of another kind (facility 0) would count its "own facility" cells twice.
        g = np.repeat(group, 4, axis=1)
        bt_choice = np.tile(np.stack([bt, bt, zero, zero], axis=1), n_levels)
        fac_choice = np.tile(np.stack([fac, zero, fac, zero], axis=1), n_levels)
        valid = (g >= 0) & ~((fac[:, None] == 0) & np.tile([True, False, True, False], n_levels))
        src = np.broadcast_to(sensors[:, None], g.shape)[valid]
        keys = (g[valid] * BED_TYPE_SLOTS + bt_choice[valid]) * 3 + fac_choice[valid]
        order = np.argsort(keys, kind="stable")
        k = keys[order]
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]]) if len(k) else np.zeros(0, np.intp)
        cell_of_membership = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(k)]))
        member = src[order].astype(np.intp)
        # The inverse: for each sensor, the cells it is a member of.
        by_sensor = np.argsort(member, kind="stable")
        counts = np.bincount(member, minlength=index.n_sensors)
        return cls(
            key=k[starts],
            starts=starts.astype(np.intp),
            size=np.diff(np.r_[starts, len(k)]).astype(np.intp),
            member=member,
            cell_start=np.r_[0, np.cumsum(counts)].astype(np.intp),
            cells=cell_of_membership[by_sensor].astype(np.intp),
        )

    @property
    def n_cells(self) -> int:
        """How many cells the registry's bed sensors can fill."""
        return len(self.key)

    def compute(self, state: SensorState) -> CellSums:
        """Every cell's figures from ``state``."""
        return self._sums(state, self.member, self.starts, self.n_cells)

    def update(self, sums: CellSums, state: SensorState, changed: Idx) -> CellSums:
        """``sums`` with the cells of the ``changed`` sensors recomputed from ``state`` (a
        new object; ``sums`` is not modified)."""
        cells = self._cells_of(changed)
        if not len(cells):
            return sums
        size = self.size[cells]
        # The members of those cells: their ranges of ``member``, concatenated.
        offsets = np.r_[0, np.cumsum(size)[:-1]]
        pos = np.arange(int(size.sum())) - np.repeat(offsets - self.starts[cells], size)
        fresh = self._sums(state, self.member[pos], offsets.astype(np.intp), len(cells))
        out = CellSums(
            sums=sums.sums.copy(),
            sensors=sums.sensors.copy(),
            oldest_ms=sums.oldest_ms.copy(),
            newest_ms=sums.newest_ms.copy(),
        )
        out.sums[cells] = fresh.sums
        out.sensors[cells] = fresh.sensors
        out.oldest_ms[cells] = fresh.oldest_ms
        out.newest_ms[cells] = fresh.newest_ms
        return out

    def rollups(self, sums: CellSums) -> BedRollups:
        """The rollup rows (cells with a reporting sensor), in ``bed_rollups``' order."""
        rows = np.flatnonzero(sums.sensors > 0)
        key = self.key[rows]
        capacity = sums.sums[rows, 0]
        occupied = sums.sums[rows, 1]
        return BedRollups(
            group=(key // 3 // BED_TYPE_SLOTS).astype(np.intp),
            bed_type=(key // 3 % BED_TYPE_SLOTS).astype(np.intp),
            facility=(key % 3).astype(np.intp),
            capacity=capacity,
            occupied=occupied,
            free=free_beds(capacity, occupied),
            suspect=sums.sums[rows, 2],
            confirmed=sums.sums[rows, 3],
            waiting=sums.sums[rows, 4],
            sensors=sums.sensors[rows],
            bor=bor_percent(occupied, capacity),
            oldest_ms=sums.oldest_ms[rows],
            newest_ms=sums.newest_ms[rows],
        )

    def _cells_of(self, sensors: Idx) -> Idx:
        if not len(sensors):
            return np.zeros(0, np.intp)
        lo, hi = self.cell_start[sensors], self.cell_start[sensors + 1]
        n = hi - lo
        offsets = np.r_[0, np.cumsum(n)[:-1]]
        pos = np.arange(int(n.sum())) - np.repeat(offsets - lo, n)
        return np.unique(self.cells[pos])

    @staticmethod
    def _sums(state: SensorState, member: Idx, starts: Idx, n_cells: int) -> CellSums:
        if n_cells == 0:
            empty = np.zeros(0, np.int64)
            return CellSums(np.zeros((0, _FIELDS), np.int64), empty, empty, empty)
        ts = state.ts[member]
        known = state.known[member]
        vals = np.where(known[:, None], state.values[member, :_FIELDS], 0)
        return CellSums(
            sums=np.add.reduceat(vals, starts, axis=0).astype(np.int64),
            sensors=np.add.reduceat(known.astype(np.int64), starts),
            oldest_ms=np.minimum.reduceat(np.where(known, ts, _NO_MIN), starts),
            newest_ms=np.maximum.reduceat(np.where(known, ts, _NO_MAX), starts),
        )


class BedCellTracker:
    """The bed rollups of a changing state: only the cells of the sensors :meth:`mark`\\ ed
    since the last :meth:`rollups` are summed again. Not thread-safe (``LiveState`` calls it
    under its lock)."""

    def __init__(self, *, index: CityIndex) -> None:
        self.cells = BedCells.of(index)
        self._limit = index.n_sensors
        self._sums: CellSums | None = None  # None: compute every cell next time
        self._dirty: list[Idx] = []
        self._dirty_n = 0

    def mark(self, changed: Idx) -> None:
        """Sensors whose latest or previous reading changed."""
        if self._sums is None:
            return
        self._dirty.append(changed)
        self._dirty_n += len(changed)
        if self._dirty_n > self._limit:  # a whole city's worth: recompute every cell
            self._sums, self._dirty, self._dirty_n = None, [], 0

    def rollups(self, state: SensorState) -> BedRollups:
        """``bed_rollups(state)``, from the cells kept since the last call."""
        if self._sums is None:
            sums = self.cells.compute(state)
        else:
            changed = np.unique(np.concatenate(self._dirty)) if self._dirty else _NO_SENSORS
            sums = self.cells.update(self._sums, state, changed)
        self._sums, self._dirty, self._dirty_n = sums, [], 0
        return self.cells.rollups(sums)
