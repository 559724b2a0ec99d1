"""The rollups computed from the latest state of every sensor: pure numpy, no I/O.

Rollups, from the latest state of every sensor that has reported:

* ``bed_rollup`` per (level, region or site) x bed type (each SIRANAP code and ``all``) x
  facility (``all``, ``hospital``, ``isolation_centre``): sums of capacity, occupied, free
  (capacity - occupied), suspect, confirmed, waiting; ``sensors`` (how many contributed);
  ``bor`` = occupied x 100 / capacity (NaN, i.e. not written, when capacity is 0); ``oldest_ms``
  and ``newest_ms``, the observation times of the oldest and newest contributing reading.
* ``crowd_site`` per site: sums of occupancy, entries, exits over its gates; ``gates``; the
  registry's health-protocol ``capacity``; ``ratio`` = occupancy / capacity.
* ``queue_site`` per site: ``waiting`` = sum over kiosks of (issued - served); issued, served,
  counters_open sums; ``kiosks``; and ``wait_s`` by Little's law (L = lambda W, so W = L /
  lambda)::

      rate_k  = (served_k - served_k_prev) * 1000 / (ts_k - ts_k_prev)   [tickets per second]
      wait_s  = waiting / sum_k rate_k

  where ``_prev`` is kiosk k's previous reading. ``wait_s`` is NaN (absent) unless *every*
  kiosk of the site has a known rate (a previous reading, a later time, and ``served`` not
  lower than before, which would mean the daily reset) and the summed rate is above zero: a
  partial or zero rate would claim a precision the data does not have.

Everything is grouped with ``np.unique``/``np.lexsort`` and reduced with ``ufunc.reduceat``;
no Python loop runs per reading or per sensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cloud.ingest.aggregate.state import NO_TIME, SensorState
from cloud.ingest.topology import BED_TYPE_SLOTS, ROLLUP_LEVELS, CityIndex
from cloud.ingest.wards import bor_percent, free_beds
from contract import KIND_CODES, SensorKind

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Idx = npt.NDArray[np.intp]

_BED = KIND_CODES[SensorKind.BED]
_CROWD = KIND_CODES[SensorKind.CROWD]
_QUEUE = KIND_CODES[SensorKind.QUEUE]


@dataclass(frozen=True, kw_only=True)
class BedRollups:
    """One row per (group, bed type, facility). ``group`` indexes ``CityIndex.groups``;
    ``bed_type`` 0 is "all"; ``facility`` indexes ``topology.FACILITIES``."""

    group: Idx
    bed_type: Idx
    facility: Idx
    capacity: I64
    occupied: I64
    free: I64
    suspect: I64
    confirmed: I64
    waiting: I64
    sensors: I64
    bor: F64
    oldest_ms: I64
    newest_ms: I64


@dataclass(frozen=True, kw_only=True)
class CrowdSites:
    """One row per crowd site with at least one gate reporting; ``site`` indexes sites."""

    site: Idx
    occupancy: I64
    entries: I64
    exits: I64
    gates: I64
    capacity: I64
    ratio: F64
    oldest_ms: I64
    newest_ms: I64


@dataclass(frozen=True, kw_only=True)
class QueueSites:
    """One row per site with at least one kiosk reporting; ``wait_s`` NaN when unknown."""

    site: Idx
    waiting: I64
    issued: I64
    served: I64
    counters_open: I64
    kiosks: I64
    wait_s: F64
    oldest_ms: I64
    newest_ms: I64


def _groups(keys: I64) -> tuple[Idx, Idx, I64]:
    """(sort order, start offsets of each distinct key in that order, the distinct keys)."""
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]]) if len(k) else np.zeros(0, np.intp)
    return order, starts, k[starts]


def _sum(col: I64, order: Idx, starts: Idx) -> I64:
    if len(starts) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.add.reduceat(col[order], starts).astype(np.int64)


@dataclass(frozen=True, kw_only=True)
class BedLayout:
    """Which reporting bed sensor counts in which rollup cell: what :func:`bed_rollups` sorts,
    which depends only on *which* bed sensors have reported. Two stages: sensors are summed
    into *base* cells (site x bed type), and base cells into every rollup cell, so the wide
    stage (each level x type x facility) runs over a few hundred base cells, not every
    sensor."""

    #: the bed sensors that have reported, ascending
    sensors: Idx
    #: the sensors in base-cell order, and where each base cell starts there
    base_members: Idx
    base_starts: Idx
    #: per rollup-cell member, in cell order: the base cell; where each cell starts there
    members: Idx
    starts: Idx
    #: each cell's key: (group x BED_TYPE_SLOTS + bed type) x 3 + facility
    cells: I64


def bed_layout(sensors: Idx, index: CityIndex) -> BedLayout:
    """The cells of ``sensors`` (reporting bed sensors, ascending) at every level."""
    base_key = index.sensor_site[sensors].astype(np.int64) * BED_TYPE_SLOTS
    base_key += index.sensor_bed_type[sensors]
    base_order, base_starts, base_keys = _groups(base_key)
    site = base_keys // BED_TYPE_SLOTS
    bt = base_keys % BED_TYPE_SLOTS
    n_levels = len(ROLLUP_LEVELS)
    group = index.site_group[site]  # (n, levels)
    fac = index.site_facility[site].astype(np.int64)
    # Each base cell counts in 4 cells per level: (its type | all) x (its facility | all).
    g = np.repeat(group.astype(np.int64), 4, axis=1)  # (n, levels*4)
    bt_choice = np.tile(np.stack([bt, bt, np.zeros_like(bt), np.zeros_like(bt)], axis=1), n_levels)
    fac_choice = np.tile(
        np.stack([fac, np.zeros_like(fac), fac, np.zeros_like(fac)], axis=1), n_levels
    )
    # A site of another kind (fac 0) would put its "own facility" cell into "all" twice.
    valid = (g >= 0) & ~((fac[:, None] == 0) & np.tile([True, False, True, False], n_levels))
    src = np.broadcast_to(np.arange(len(base_keys))[:, None], g.shape)[valid]
    keys = (g[valid] * BED_TYPE_SLOTS + bt_choice[valid]) * 3 + fac_choice[valid]
    order, starts, uniq = _groups(keys)
    return BedLayout(
        sensors=sensors,
        base_members=sensors[base_order],
        base_starts=base_starts,
        members=src[order],
        starts=starts,
        cells=uniq,
    )


class BedLayouts:
    """The last :class:`BedLayout`, reused while the same bed sensors have reported (after
    the first minutes of a run, always): the sort is most of :func:`bed_rollups`' work."""

    def __init__(self, *, index: CityIndex) -> None:
        self.index = index
        self._last: BedLayout | None = None

    def of(self, sensors: Idx) -> BedLayout:
        """The layout of ``sensors`` (reporting bed sensors, ascending)."""
        last = self._last
        if last is None or not np.array_equal(last.sensors, sensors):
            last = self._last = bed_layout(sensors, self.index)
        return last


def bed_rollups(
    state: SensorState, index: CityIndex, layouts: BedLayouts | None = None
) -> BedRollups:
    """Bed rollups at every level, bed type and facility, from the latest state; with
    ``layouts`` (of the same ``index``) the cells are sorted once, not on every call."""
    sensors = np.flatnonzero(state.known & (index.sensor_kind == _BED))
    layout = layouts.of(sensors) if layouts is not None else bed_layout(sensors, index)
    starts, uniq, members = layout.starts, layout.cells, layout.members
    if len(starts):  # the five bed fields, per base cell, then per cell
        b_rows, b_starts = layout.base_members, layout.base_starts
        b_ts = state.ts[b_rows]
        b_sums = np.add.reduceat(state.values[b_rows, :5], b_starts, axis=0)
        b_count = np.diff(np.r_[b_starts, len(b_rows)])
        sums = np.add.reduceat(b_sums[members], starts, axis=0).astype(np.int64)
        counts = np.add.reduceat(b_count[members], starts).astype(np.int64)
        oldest = np.minimum.reduceat(np.minimum.reduceat(b_ts, b_starts)[members], starts)
        newest = np.maximum.reduceat(np.maximum.reduceat(b_ts, b_starts)[members], starts)
    else:
        sums = np.zeros((0, 5), dtype=np.int64)
        counts = oldest = newest = np.zeros(0, dtype=np.int64)
    capacity, occupied = sums[:, 0], sums[:, 1]
    return BedRollups(
        group=(uniq // 3 // BED_TYPE_SLOTS).astype(np.intp),
        bed_type=(uniq // 3 % BED_TYPE_SLOTS).astype(np.intp),
        facility=(uniq % 3).astype(np.intp),
        capacity=capacity,
        occupied=occupied,
        free=free_beds(capacity, occupied),
        suspect=sums[:, 2],
        confirmed=sums[:, 3],
        waiting=sums[:, 4],
        sensors=counts,
        bor=bor_percent(occupied, capacity),
        oldest_ms=oldest,
        newest_ms=newest,
    )


def crowd_sites(state: SensorState, index: CityIndex) -> CrowdSites:
    """Crowd per site: gates summed, ratio to the registry's health-protocol capacity."""
    sensors = np.flatnonzero(state.known & (index.sensor_kind == _CROWD))
    order, starts, site = _groups(index.sensor_site[sensors].astype(np.int64))
    vals = state.values[sensors]
    ts = state.ts[sensors][order]
    occupancy = _sum(vals[:, 2], order, starts)
    capacity = index.site_capacity[site]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(capacity > 0, occupancy / np.maximum(capacity, 1), np.nan)
    return CrowdSites(
        site=site.astype(np.intp),
        occupancy=occupancy,
        entries=_sum(vals[:, 0], order, starts),
        exits=_sum(vals[:, 1], order, starts),
        gates=np.diff(np.r_[starts, len(order)]).astype(np.int64),
        capacity=capacity,
        ratio=ratio,
        oldest_ms=np.minimum.reduceat(ts, starts) if len(starts) else ts,
        newest_ms=np.maximum.reduceat(ts, starts) if len(starts) else ts,
    )


def queue_sites(state: SensorState, index: CityIndex) -> QueueSites:
    """Queues per site, with the Little's-law wait estimate of the module docstring."""
    sensors = np.flatnonzero(state.known & (index.sensor_kind == _QUEUE))
    order, starts, site = _groups(index.sensor_site[sensors].astype(np.int64))
    vals = state.values[sensors]
    prev_vals = state.prev_values[sensors]
    ts, prev_ts = state.ts[sensors], state.prev_ts[sensors]
    served_delta = vals[:, 1] - prev_vals[:, 1]
    dt = ts - prev_ts
    rate_known = (prev_ts != NO_TIME) & (dt > 0) & (served_delta >= 0)
    rate = np.where(rate_known, served_delta * 1000.0 / np.where(dt > 0, dt, 1), 0.0)
    waiting = _sum(vals[:, 0] - vals[:, 1], order, starts)
    kiosks = np.diff(np.r_[starts, len(order)]).astype(np.int64)
    known = _sum(rate_known.astype(np.int64), order, starts)
    total_rate = np.add.reduceat(rate[order], starts) if len(starts) else rate
    ok = (known == kiosks) & (total_rate > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        wait_s = np.where(ok, waiting / np.where(ok, total_rate, 1.0), np.nan)
    t = ts[order]
    return QueueSites(
        site=site.astype(np.intp),
        waiting=waiting,
        issued=_sum(vals[:, 0], order, starts),
        served=_sum(vals[:, 1], order, starts),
        counters_open=_sum(vals[:, 2], order, starts),
        kiosks=kiosks,
        wait_s=wait_s,
        oldest_ms=np.minimum.reduceat(t, starts) if len(starts) else t,
        newest_ms=np.maximum.reduceat(t, starts) if len(starts) else t,
    )
