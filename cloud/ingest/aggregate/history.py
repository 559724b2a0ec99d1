"""Recent accepted readings, to recompute the state as of a past moment (late data): pure
numpy, no I/O (docs/schema.md, "Late data")."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from cloud.ingest.aggregate.state import NO_TIME, SensorState
from cloud.ingest.topology import MAX_FIELDS

I64 = npt.NDArray[np.int64]

_NEVER = 2**63 - 1

#: How many states as of a past bucket end the history keeps up to date (about
#: ``n_sensors * (3 + 2 * MAX_FIELDS) * 8`` bytes each): a backlog drained after one bucket,
#: or a few, ended rewrites the same few buckets window after window.
AS_OF_KEPT = 4


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
    could not help.

    The states as of the :data:`AS_OF_KEPT` newest bucket ends asked for are kept and brought
    up to date as readings are added: a backlog drained after a bucket ended makes every window
    rewrite that bucket, and recomputing it from the whole history each time (a sort and a fold
    of up to ``capacity`` readings, 45 ms at 430 000) was most of the consumer's time in such a
    drain (docs/adr/0045-late-data-rewrites-off-the-consumers-path.md)."""

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
        #: bucket end -> the state as of it (``floor`` and every kept reading observed before
        #: it), for the newest ends asked for; each one is > ``cut``
        self._as_of: dict[int, SensorState] = {}

    def __len__(self) -> int:
        return self._n

    def seed(self, sensor: npt.NDArray[np.int32], ts: I64, seq: I64, values: I64) -> None:
        """Start from readings whose predecessors are unknown (bootstrapped from storage):
        nothing before the newest of them can be recomputed."""
        if len(sensor):
            self.floor.update(sensor, ts, seq, values)
            self.cut = max(self.cut, int(ts.max()) + 1)
            self._as_of = {}

    def add(
        self, sensor: npt.NDArray[np.int32], ts: I64, seq: I64, values: I64, *, now_ms: int
    ) -> None:
        """Keep a window's readings (in arrival order); then fold what is beyond the bounds."""
        if not self.active:
            return
        if len(sensor):
            # every reading observed before a kept end belongs to its state, whether it is
            # kept below or goes straight into the floor (the floor is below every kept end)
            for end, state in self._as_of.items():
                before = ts < end
                if before.all():
                    state.update(sensor, ts, seq, values)
                elif before.any():
                    state.update(sensor[before], ts[before], seq[before], values[before])
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
            # Only the times: if the history pauses below, the other columns are dropped
            # without ever being copied into one (at a high rate that copy was the ingester's
            # peak memory).
            ts = np.concatenate([p[1] for p in self._parts])
            keep = self.capacity // 2
            # the keep-th newest observation time: everything before it is folded
            new_cut = max(new_cut, int(np.partition(ts, self._n - keep)[self._n - keep]))
            if now_ms - new_cut < self.min_span_ms:
                self._pause()
                return
        if new_cut <= self.cut:
            return
        # a state as of an end at or before the cut can no longer be asked for
        self._as_of = {end: st for end, st in self._as_of.items() if end > new_cut}
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
        self._as_of = {}
        self.floor = SensorState(n_sensors=len(self.floor.ts))

    def resume(self, state: SensorState) -> None:
        """Start again from ``state`` (the live state): like :meth:`seed`, nothing before its
        newest reading can be recomputed."""
        self.active = True
        self._parts, self._n, self._oldest = [], 0, _NEVER
        self._as_of = {}
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
        """For each bucket start (ascending), the state as of that bucket's end. Read each
        state before the next step, and never change it: it may be reused by the next step,
        and the newest ones are kept (and kept up to date) for the next call."""
        ends = [start + bucket_ms for start in starts.tolist()]
        wanted = set(ends[-AS_OF_KEPT:])
        if all(end in self._as_of for end in ends):
            for end in ends:
                yield end - bucket_ms, self._as_of[end]
            return
        sensor, ts, seq, values = self._columns()
        order = np.argsort(ts, kind="stable")  # stable: equal times keep arrival order
        sorted_ts = ts[order]
        state = self.floor.copy()
        done = 0
        for end in ends:
            upto = int(np.searchsorted(sorted_ts, end, side="left"))
            if upto > done:
                rows = order[done:upto]
                state.update(sensor[rows], ts[rows], seq[rows], values[rows])
                done = upto
            if end in wanted and end not in self._as_of:
                self._as_of[end] = state.copy()
            yield end - bucket_ms, state
        for end in sorted(self._as_of)[:-AS_OF_KEPT]:
            del self._as_of[end]
