"""One stream of aggregate writes, at most one in flight, the rest coalesced into the next: what
the current bucket's rollups (cloud/ingest/rollup_writes.py, ADR 0038) and late data's
rewrites of past buckets (cloud/ingest/past_writes.py, ADR 0045) share.

* Writes are numbered from 1 in the order they start, and settle in that order (one in
  flight). What changes meanwhile is only *due*; when the write in flight settles, the next
  carries everything due. :attr:`SerialWrites.covering` is the number of the write that will
  carry what is due now: a window may be acknowledged once that one settled
  (:meth:`SerialWrites.settled`).
* A write that raises is not remembered, and what it carried is due again (the stream
  decides how, :meth:`SerialWrites._failed`), so the write that covers the failed one's
  windows carries it. The error goes to whoever settles it (:meth:`~SerialWrites.poll`,
  :meth:`~SerialWrites.wait`): the window stays unacknowledged.

A subclass says what is due (:meth:`~SerialWrites._has_due`), takes it as the next write's
lines (:meth:`~SerialWrites._take_due`) and is told how that write ended.
"""

from __future__ import annotations

import logging
from typing import Generic, TypeVar

from cloud.ingest.writer import PendingWrite, PointWriter

log = logging.getLogger(__name__)

#: what a write carries, handed back when it settles or fails
Carried = TypeVar("Carried")


class SerialWrites(Generic[Carried]):
    """A stream of writes, one in flight. Touched by the consumer only."""

    #: what one refused line is, for the log
    refused_what = "aggregate point"

    def __init__(self, *, writer: PointWriter) -> None:
        self.writer = writer
        #: the write in flight, its number and what it carries
        self._in_flight: tuple[PendingWrite, int, Carried] | None = None
        self._started = 0
        #: the number of the newest write that settled
        self._settled = 0

    @property
    def covering(self) -> int:
        """The number of the write that carries what is due now."""
        return self._started + self._has_due()

    def poll(self) -> None:
        """Without waiting: if the write in flight has settled, start the due one, if any
        (raises as the write did)."""
        pending = self._in_flight
        if pending is not None and pending[0].done():
            self._settle_one()
            if self._has_due():
                self._start()

    def settled(self, number: int) -> bool:
        """Whether write ``number`` and every one before it have settled (polls first)."""
        self.poll()
        return self._settled >= number

    def wait(self, number: int) -> None:
        """Wait until write ``number`` has settled, starting it if it is only due."""
        while self._settled < number:
            if self._in_flight is None:
                if not self._has_due():
                    # every write started has settled, and a failed one's lines are due
                    # again: ``number`` was never handed out
                    return
                self._start()
            self._settle_one()

    def _start(self) -> None:
        lines, carried = self._take_due()
        self._started += 1
        self._in_flight = (self.writer.submit(lines), self._started, carried)

    def _settle_one(self) -> None:
        pending, self._in_flight = self._in_flight, None
        if pending is None:
            return
        write, number, carried = pending
        try:
            refused = write.result()
        except BaseException:
            self._failed(carried)
            raise
        for r in refused:
            log.error("%s refused by InfluxDB: %s", self.refused_what, r.detail)
        self._stored(carried)
        self._settled = number

    def _has_due(self) -> bool:
        """Whether something waits for the next write."""
        raise NotImplementedError

    def _take_due(self) -> tuple[list[str], Carried]:
        """The next write's lines and what they carry; nothing is due after."""
        raise NotImplementedError

    def _failed(self, carried: Carried) -> None:
        """A write of ``carried`` raised: make it due again."""
        raise NotImplementedError

    def _stored(self, carried: Carried) -> None:
        """A write of ``carried`` settled (InfluxDB holds every line it did not refuse). By
        default there is nothing to remember (past buckets are rewritten whole)."""
