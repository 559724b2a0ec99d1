"""Latest state per sensor and the rollups computed from it: pure numpy, no I/O.

State. Each sensor keeps its *latest* reading (greatest observation time; among equal times the
one that arrived last, as InfluxDB overwrites a point with the same series and time) and its
*previous* reading (the latest one strictly older than that). A late reading never overwrites
newer state, though the ingester still stores it raw.

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

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cloud.ingest.topology import BED_TYPE_SLOTS, MAX_FIELDS, ROLLUP_LEVELS, CityIndex
from cloud.ingest.wards import bor_percent, free_beds
from contract import KIND_CODES, SensorKind

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Idx = npt.NDArray[np.intp]

_BED = KIND_CODES[SensorKind.BED]
_CROWD = KIND_CODES[SensorKind.CROWD]
_QUEUE = KIND_CODES[SensorKind.QUEUE]
NO_TIME = -1
_NEVER = 2**63 - 1


class SensorState:
    """Latest and previous reading of every sensor of a city (arrays indexed by sensor)."""

    def __init__(self, *, n_sensors: int) -> None:
        self.ts = np.full(n_sensors, NO_TIME, dtype=np.int64)
        self.seq = np.zeros(n_sensors, dtype=np.int64)
        self.values = np.zeros((n_sensors, MAX_FIELDS), dtype=np.int64)
        self.prev_ts = np.full(n_sensors, NO_TIME, dtype=np.int64)
        self.prev_values = np.zeros((n_sensors, MAX_FIELDS), dtype=np.int64)

    def copy(self) -> SensorState:
        """An independent copy."""
        out = SensorState(n_sensors=len(self.ts))
        out.ts[:], out.seq[:], out.values[:] = self.ts, self.seq, self.values
        out.prev_ts[:], out.prev_values[:] = self.prev_ts, self.prev_values
        return out

    @property
    def known(self) -> npt.NDArray[np.bool_]:
        """Which sensors have reported at least once."""
        return np.not_equal(self.ts, NO_TIME)

    def update(self, sensor: npt.NDArray[np.int32], ts: I64, seq: I64, values: I64) -> int:
        """Merge readings given in arrival order; returns how many sensors' latest changed."""
        n = len(sensor)
        if n == 0:
            return 0
        arrival = np.arange(n)
        order = np.lexsort((arrival, ts, sensor))  # by sensor, then time, then arrival
        s, t = sensor[order], ts[order]
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        ends = np.r_[starts[1:], n] - 1
        gid = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n]))
        g_sensor = s[ends]
        w_last = order[ends]  # the window's latest row per sensor (last arrival on ties)
        w_ts = t[ends]
        # The window's latest row strictly older than the window's own latest, per sensor.
        below = np.flatnonzero(t < w_ts[gid])
        w_prev = np.full(len(starts), -1, dtype=np.intp)
        if len(below):
            gb = gid[below]
            last_below = np.r_[gb[1:] != gb[:-1], True]
            w_prev[gb[last_below]] = order[below[last_below]]

        old_ts = self.ts[g_sensor]
        take = w_ts >= old_ts  # ties: the later arrival (the window) wins
        new_ts = np.where(take, w_ts, old_ts)
        # Previous = the latest of everything seen strictly before new_ts. Candidates: the old
        # previous, the old latest, and the window's best row below new_ts.
        w_best = np.where(w_ts < new_ts, w_last, w_prev)
        w_best_ts = np.where(w_best >= 0, ts[np.maximum(w_best, 0)], NO_TIME)
        w_best_ts = np.where(w_best_ts < new_ts, w_best_ts, NO_TIME)
        old_latest_ts = np.where(old_ts < new_ts, old_ts, NO_TIME)
        old_prev_ts = self.prev_ts[g_sensor]
        # old latest > old previous always; the window arrived last so wins ties
        use_window = (w_best_ts != NO_TIME) & (w_best_ts >= np.maximum(old_latest_ts, old_prev_ts))
        use_old_latest = ~use_window & (old_latest_ts != NO_TIME)
        prev_ts = np.where(
            use_window, w_best_ts, np.where(use_old_latest, old_latest_ts, old_prev_ts)
        )
        prev_values = np.where(
            use_window[:, None],
            values[np.maximum(w_best, 0)],
            np.where(use_old_latest[:, None], self.values[g_sensor], self.prev_values[g_sensor]),
        )
        self.prev_ts[g_sensor] = prev_ts
        self.prev_values[g_sensor] = prev_values
        upd = g_sensor[take]
        self.ts[upd] = w_ts[take]
        self.seq[upd] = seq[w_last[take]]
        self.values[upd] = values[w_last[take]]
        return int(np.count_nonzero(take))


class ReadingHistory:
    """The recent accepted readings, so the state *as of* a past moment can be recomputed
    when late data arrives (docs/schema.md, "Late data"). Pure numpy, no I/O.

    Readings observed before ``cut`` are folded into ``floor`` (a :class:`SensorState`);
    the others are kept as they came. So for any time ``E > cut``, the state as of ``E`` (each
    sensor's latest reading observed before ``E``) is ``floor`` updated with the kept readings
    observed before ``E``, exactly. Memory is bounded: at most ``capacity`` readings are kept
    (when more arrive, ``cut`` moves forward so the newest half stay) and none older than
    ``horizon_ms`` before the newest window's ``now``.

    When ``capacity`` readings span less than ``min_span_ms`` (a rate so high that no past
    bucket could be recomputed anyway), the history *pauses* instead of folding: it drops what
    it holds and takes nothing until :meth:`resume`, so it costs nothing per reading while it
    could not help."""

    def __init__(
        self, *, n_sensors: int, capacity: int, horizon_ms: int, min_span_ms: int = 0
    ) -> None:
        self.floor = SensorState(n_sensors=n_sensors)
        self.capacity = capacity
        self.horizon_ms = horizon_ms
        self.min_span_ms = min_span_ms
        #: False while paused (see the class docstring)
        self.active = True
        #: readings observed before this time are only in ``floor``
        self.cut = NO_TIME
        self._parts: list[tuple[npt.NDArray[np.int32], I64, I64, I64]] = []
        self._n = 0
        self._oldest = _NEVER  # oldest observation time kept

    def __len__(self) -> int:
        return self._n

    def seed(self, sensor: npt.NDArray[np.int32], ts: I64, seq: I64, values: I64) -> None:
        """Start from readings whose predecessors are unknown (bootstrapped from storage):
        nothing before the newest of them can be recomputed."""
        if len(sensor):
            self.floor.update(sensor, ts, seq, values)
            self.cut = max(self.cut, int(ts.max()) + 1)

    def add(
        self, sensor: npt.NDArray[np.int32], ts: I64, seq: I64, values: I64, *, now_ms: int
    ) -> None:
        """Keep a window's readings (in arrival order); then fold what is beyond the bounds."""
        if not self.active:
            return
        if len(sensor):
            old = ts < self.cut
            if old.any():
                self.floor.update(sensor[old], ts[old], seq[old], values[old])
                keep = ~old
                sensor, ts, seq, values = sensor[keep], ts[keep], seq[keep], values[keep]
            if len(sensor):
                self._parts.append((sensor, ts, seq, values))
                self._n += len(sensor)
                self._oldest = min(self._oldest, int(ts.min()))
        self._fold(now_ms)

    def _columns(self) -> tuple[npt.NDArray[np.int32], I64, I64, I64]:
        if len(self._parts) != 1:
            if not self._parts:
                return (
                    np.zeros(0, np.int32),
                    np.zeros(0, np.int64),
                    np.zeros(0, np.int64),
                    np.zeros((0, MAX_FIELDS), np.int64),
                )
            self._parts = [
                (
                    np.concatenate([p[0] for p in self._parts]),
                    np.concatenate([p[1] for p in self._parts]),
                    np.concatenate([p[2] for p in self._parts]),
                    np.concatenate([p[3] for p in self._parts]),
                )
            ]
        return self._parts[0]

    def _fold(self, now_ms: int) -> None:
        new_cut = max(self.cut, now_ms - self.horizon_ms)
        if self._n > self.capacity:
            _, ts, _, _ = self._columns()
            keep = self.capacity // 2
            # the keep-th newest observation time: everything before it is folded
            new_cut = max(new_cut, int(np.partition(ts, self._n - keep)[self._n - keep]))
            if now_ms - new_cut < self.min_span_ms:
                self._pause()
                return
        if new_cut <= self.cut:
            return
        if self._oldest >= new_cut:  # nothing kept is that old: no copying, every window
            self.cut = new_cut
            return
        sensor, ts, seq, values = self._columns()
        old = ts < new_cut
        if old.any():
            self.floor.update(sensor[old], ts[old], seq[old], values[old])
            keep_rows = ~old
            self._parts = [(sensor[keep_rows], ts[keep_rows], seq[keep_rows], values[keep_rows])]
            self._n = int(np.count_nonzero(keep_rows))
            self._oldest = int(ts[keep_rows].min()) if self._n else _NEVER
        self.cut = new_cut

    def _pause(self) -> None:
        self.active = False
        self._parts, self._n, self._oldest = [], 0, _NEVER
        self.floor = SensorState(n_sensors=len(self.floor.ts))

    def resume(self, state: SensorState) -> None:
        """Start again from ``state`` (the live state): like :meth:`seed`, nothing before its
        newest reading can be recomputed."""
        self.active = True
        self._parts, self._n, self._oldest = [], 0, _NEVER
        self.floor = state.copy()
        known = state.ts[state.ts != NO_TIME]
        self.cut = int(known.max()) + 1 if len(known) else self.cut

    def affected_buckets(
        self, sensor: npt.NDArray[np.int32], ts: I64, *, bucket_ms: int, before: int
    ) -> I64:
        """Starts of the buckets (aligned to ``bucket_ms``, each before ``before``) whose state
        as of their end changes because of the given readings (already :meth:`add`-ed): from
        each reading's bucket to the bucket of its sensor's next reading (inclusive: a
        kiosk's previous reading feeds its service rate), never a bucket ending at or before
        ``cut`` (those cannot be recomputed)."""
        if not len(sensor) or not self.active:
            return np.zeros(0, np.int64)
        h_sensor, h_ts, _, _ = self._columns()
        first = 0 if self.cut == NO_TIME else self.cut - self.cut % bucket_ms
        t = np.maximum(ts, first)
        lo = t - t % bucket_ms
        nxt = np.full(len(sensor), before, dtype=np.int64)
        if len(h_ts):
            base = int(min(h_ts.min(), t.min()))
            span = int(max(h_ts.max(), t.max())) - base + 2
            keys = np.sort(h_sensor.astype(np.int64) * span + (h_ts - base))
            q = sensor.astype(np.int64) * span + (t - base)
            at = np.searchsorted(keys, q, side="right")
            found = at < len(keys)
            hit = keys[np.minimum(at, len(keys) - 1)]
            same = found & (hit // span == sensor)
            nxt = np.where(same, hit % span + base, before)
        last = before - bucket_ms
        hi = np.minimum(nxt - nxt % bucket_ms, last)
        ok = lo <= hi
        if not ok.any():
            return np.zeros(0, np.int64)
        lo, hi = lo[ok], hi[ok]
        origin = int(lo.min())
        n_buckets = (last - origin) // bucket_ms + 1
        marks = np.zeros(n_buckets + 1, dtype=np.int64)
        np.add.at(marks, (lo - origin) // bucket_ms, 1)
        np.add.at(marks, (hi - origin) // bucket_ms + 1, -1)
        return origin + np.flatnonzero(np.cumsum(marks[:-1]) > 0).astype(np.int64) * bucket_ms

    def states_at(self, starts: I64, *, bucket_ms: int) -> Iterator[tuple[int, SensorState]]:
        """For each bucket start (ascending), the state as of that bucket's end. The state
        object is reused between steps: read it before the next one."""
        sensor, ts, seq, values = self._columns()
        order = np.argsort(ts, kind="stable")  # stable: equal times keep arrival order
        sorted_ts = ts[order]
        state = self.floor.copy()
        done = 0
        for start in starts.tolist():
            upto = int(np.searchsorted(sorted_ts, start + bucket_ms, side="left"))
            if upto > done:
                rows = order[done:upto]
                state.update(sensor[rows], ts[rows], seq[rows], values[rows])
                done = upto
            yield start, state


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


def bed_rollups(state: SensorState, index: CityIndex) -> BedRollups:
    """Bed rollups at every level, bed type and facility, from the latest state."""
    sensors = np.flatnonzero(state.known & (index.sensor_kind == _BED))
    site = index.sensor_site[sensors]
    n_levels = len(ROLLUP_LEVELS)
    group = index.site_group[site]  # (n, levels)
    fac = index.site_facility[site].astype(np.int64)
    bt = index.sensor_bed_type[sensors].astype(np.int64)
    # Each sensor counts in 4 cells per level: (its type | all) x (its facility | all).
    g = np.repeat(group.astype(np.int64), 4, axis=1)  # (n, levels*4)
    bt_choice = np.tile(np.stack([bt, bt, np.zeros_like(bt), np.zeros_like(bt)], axis=1), n_levels)
    fac_choice = np.tile(
        np.stack([fac, np.zeros_like(fac), fac, np.zeros_like(fac)], axis=1), n_levels
    )
    # A site of another kind (fac 0) would put its "own facility" cell into "all" twice.
    valid = (g >= 0) & ~((fac[:, None] == 0) & np.tile([True, False, True, False], n_levels))
    src = np.broadcast_to(np.arange(len(sensors))[:, None], g.shape)[valid]
    keys = (g[valid] * BED_TYPE_SLOTS + bt_choice[valid]) * 3 + fac_choice[valid]
    order, starts, uniq = _groups(keys)
    rows = src[order]
    vals = state.values[sensors][rows]
    ts = state.ts[sensors][rows]
    capacity = _sum(vals[:, 0], np.arange(len(rows)), starts)
    occupied = _sum(vals[:, 1], np.arange(len(rows)), starts)
    ident = np.arange(len(rows))
    return BedRollups(
        group=(uniq // 3 // BED_TYPE_SLOTS).astype(np.intp),
        bed_type=(uniq // 3 % BED_TYPE_SLOTS).astype(np.intp),
        facility=(uniq % 3).astype(np.intp),
        capacity=capacity,
        occupied=occupied,
        free=free_beds(capacity, occupied),
        suspect=_sum(vals[:, 2], ident, starts),
        confirmed=_sum(vals[:, 3], ident, starts),
        waiting=_sum(vals[:, 4], ident, starts),
        sensors=np.diff(np.r_[starts, len(rows)]).astype(np.int64),
        bor=bor_percent(occupied, capacity),
        oldest_ms=np.minimum.reduceat(ts, starts) if len(starts) else ts[:0],
        newest_ms=np.maximum.reduceat(ts, starts) if len(starts) else ts[:0],
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
