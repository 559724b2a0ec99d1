"""The current bucket's rollup writes, coalesced: at most one in flight, and never a wait
to fold a window (docs/adr/0038-coalesced-rollup-writes.md).

A window's fold changes the state; its rollup cells must reach InfluxDB before the window is
acknowledged. Waiting for each window's own write before computing the next window's cells
(ADR 0032) left the consumer idle for a quarter of a JSON drain. Here a fold while a write
is in flight only marks the rollups *due*; when that write settles, the next one carries every
cell changed since (``RollupPoints.changed`` against what InfluxDB accepted), computed from the
state, which holds the newest values. So:

* writes are numbered from 1 in the order they start and settle in that order (one in flight);
  :attr:`RollupWrites.covering` is the number of the write that will carry the state as it is
  now: a window folded now may be acknowledged once that write settled (:meth:`settled`);
* every write in flight or due is of one bucket: before the first fold of a new bucket the
  caller settles everything (:meth:`pending_stamp`, :meth:`settle_all`), so the old bucket's
  point holds its newest state and no write of it lands after a past-bucket rewrite;
* a write that raises is not remembered, and its cells are due again: the next write is whole
  (``RollupPoints.forget``) and covers the windows the failed one would have.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from cloud.ingest.aggregate import SensorState
from cloud.ingest.rollup_points import RollupPoints, Written
from cloud.ingest.writer import PendingWrite, PointWriter

log = logging.getLogger(__name__)


class RollupWrites:
    """The rollup writes of one state's current bucket. Touched by the consumer only."""

    def __init__(
        self,
        *,
        rollups: RollupPoints,
        state: SensorState,
        writer: PointWriter,
        bucket_ms: int,
        clock_ms: Callable[[], int],
    ) -> None:
        self.rollups = rollups
        self.state = state
        self.writer = writer
        self.bucket_ms = bucket_ms
        self._clock_ms = clock_ms
        #: the write in flight, its number and what it carries (remembered once it settled)
        self._in_flight: tuple[PendingWrite, int, Written] | None = None
        self._started = 0
        #: the number of the newest write that settled
        self._settled = 0
        #: ``now`` of the newest change no write carries yet (None: nothing due)
        self._due: int | None = None

    @property
    def covering(self) -> int:
        """The number of the write that carries the state as it is now."""
        return self._started + (self._due is not None)

    def stamp(self, now: int) -> int:
        """The start of ``now``'s rollup bucket."""
        return now - now % self.bucket_ms

    def pending_stamp(self) -> int | None:
        """The bucket of the rollups in flight or due (None: none)."""
        if self._due is not None:
            return self.stamp(self._due)
        return None if self._in_flight is None else self._in_flight[2].stamp_ms

    def submit(self, now: int) -> None:
        """The state changed at ``now``: start its write on the writer's threads, or, while
        one is in flight, mark it due (the write after that one carries it). Never waits."""
        self.poll()
        if self._in_flight is None:
            self._start(now)
        else:
            self._due = now

    def poll(self) -> None:
        """Without waiting: if the write in flight has settled, remember what it carried and
        start the one due, if any (raises as the write did)."""
        pending = self._in_flight
        if pending is not None and pending[0].done():
            self._settle_one()
            if self._due is not None:
                self._start(self._due)

    def settled(self, number: int) -> bool:
        """Whether write ``number`` and every one before it have settled (polls first)."""
        self.poll()
        return self._settled >= number

    def wait(self, number: int) -> None:
        """Wait until write ``number`` has settled, starting it if it is only due."""
        while self._settled < number:
            if self._in_flight is None:
                # After a failed write its cells are due again; were nothing due, a write of
                # the whole current state still covers every window.
                due = self._due
                self._start(due if due is not None else self._clock_ms())
            self._settle_one()

    def settle_all(self) -> None:
        """Wait until every write, in flight or due, has settled."""
        self.wait(self.covering)

    def _start(self, now: int) -> None:
        # The write before has settled: the changed cells are those InfluxDB does not hold
        # yet. Nothing is known written until this one settles too.
        lines, written = self.rollups.changed(self.state, self.stamp(now))
        self.rollups.forget()
        self._started += 1
        self._due = None
        self._in_flight = (self.writer.submit(lines), self._started, written)

    def _settle_one(self) -> None:
        pending, self._in_flight = self._in_flight, None
        if pending is None:
            return
        write, number, written = pending
        try:
            refused = write.result()
        except BaseException:
            if self._due is None:
                self._due = written.stamp_ms  # not known written: the next write carries it
            raise
        for r in refused:
            log.error("aggregate point refused by InfluxDB: %s", r.detail)
        self.rollups.remember(written)
        self._settled = number
