"""The current bucket's rollup writes, coalesced: at most one in flight, and never a wait
to fold a window (docs/adr/0038-coalesced-rollup-writes.md).

A window's fold changes the state; its rollup cells must reach InfluxDB before the window is
acknowledged. Waiting for each window's own write before computing the next window's cells
(ADR 0032) left the consumer idle for a quarter of a JSON drain. Here a fold while a write
is in flight only marks the rollups *due*; when that write settles, the next one carries every
cell changed since (``RollupPoints.changed`` against what InfluxDB accepted), computed from the
state, which holds the newest values. So:

* writes are numbered from 1 in the order they start and settle in that order (one in flight,
  cloud/ingest/serial_writes.py); :attr:`RollupWrites.covering` is the number of the write
  that will carry the state as it is now: a window folded now may be acknowledged once that
  write settled (:meth:`settled`);
* every write in flight or due is of one bucket: before the first fold of a new bucket the
  caller settles everything (:meth:`pending_stamp`, :meth:`settle_all`), so the old bucket's
  point holds its newest state and no write of it lands after a past-bucket rewrite;
* a write that raises is not remembered, and its cells are due again: the next write is whole
  (``RollupPoints.forget``) and covers the windows the failed one would have.
"""

from __future__ import annotations

from cloud.ingest.aggregate import SensorState
from cloud.ingest.rollup_points import RollupPoints, Written
from cloud.ingest.serial_writes import SerialWrites
from cloud.ingest.writer import PointWriter


class RollupWrites(SerialWrites[Written]):
    """The rollup writes of one state's current bucket. Touched by the consumer only."""

    def __init__(
        self,
        *,
        rollups: RollupPoints,
        state: SensorState,
        writer: PointWriter,
        bucket_ms: int,
    ) -> None:
        super().__init__(writer=writer)
        self.rollups = rollups
        self.state = state
        self.bucket_ms = bucket_ms
        #: ``now`` of the newest change no write carries yet (None: nothing due)
        self._due: int | None = None

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
        self._due = now
        if self._in_flight is None:
            self._start()

    def settle_all(self) -> None:
        """Wait until every write, in flight or due, has settled."""
        self.wait(self.covering)

    def _has_due(self) -> bool:
        return self._due is not None

    def _take_due(self) -> tuple[list[str], Written]:
        # The write before has settled: the changed cells are those InfluxDB does not hold
        # yet. Nothing is known written until this one settles too.
        now, self._due = self._due, None
        if now is None:
            raise RuntimeError("a rollup write was started with nothing due")
        lines, written = self.rollups.changed(self.state, self.stamp(now))
        self.rollups.forget()
        return lines, written

    def _failed(self, carried: Written) -> None:
        if self._due is None:
            self._due = carried.stamp_ms  # not known written: the next write carries it

    def _stored(self, carried: Written) -> None:
        self.rollups.remember(carried)
