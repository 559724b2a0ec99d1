"""Late data's rewrites of past rollup buckets, coalesced and off the consumer's path
(docs/adr/0045-late-data-rewrites-off-the-consumers-path.md).

A window whose readings were observed in a bucket that has ended changes that bucket's rollup
points (docs/schema.md, "Late data"); they must reach InfluxDB before the window is
acknowledged. Writing them on the consumer's thread made it wait for InfluxDB once per window:
a backlog drained after a bucket ended rewrites that bucket with every window. Here, as for
the current bucket's writes (cloud/ingest/rollup_writes.py, ADR 0038):

* at most one rewrite is in flight, on the writer's threads; a window's rewrite submitted
  meanwhile is only *due*, and when the one in flight settles, the next carries every bucket
  due. A bucket's lines are always its whole set as of the newest window that changed it, so
  a newer set replaces an older one still due, and the last write of a bucket holds its
  newest state: one in flight at a time, so writes of a bucket land in the order computed;
* writes are numbered from 1 in the order they start (cloud/ingest/serial_writes.py);
  :attr:`PastWrites.covering` is the number of the write that will carry every rewrite
  submitted so far: a window may be acknowledged once that one settled
  (:meth:`PastWrites.settled`);
* a write that raises gives its buckets back to the due ones (unless a newer set of a bucket
  is due already), so the write that covers the failed one's windows carries them again.
"""

from __future__ import annotations

from cloud.ingest.serial_writes import SerialWrites
from cloud.ingest.writer import PointWriter

#: bucket start (ms) -> every rollup line of that bucket, as of its end
BucketLines = dict[int, list[str]]


class PastWrites(SerialWrites[BucketLines]):
    """The rewrites of past buckets. Touched by the consumer only."""

    refused_what = "past bucket's rollup point"

    def __init__(self, *, writer: PointWriter, max_pending_lines: int) -> None:
        super().__init__(writer=writer)
        #: lines in flight and due beyond which :meth:`submit` waits for the write in flight:
        #: a backlog hours late changes hundreds of buckets, and memory stays bounded
        self.max_pending_lines = max_pending_lines
        self._due: BucketLines = {}

    def submit(self, buckets: BucketLines) -> None:
        """Rewrite ``buckets``: start the write now, or, while one is in flight, mark them due
        (replacing older sets of the same buckets). Waits only while more than
        ``max_pending_lines`` are in flight and due."""
        if not buckets:
            return
        self._due.update(buckets)
        self.poll()
        if self._in_flight is not None and self._pending_lines() > self.max_pending_lines:
            self._settle_one()
        if self._in_flight is None:
            self._start()

    def _pending_lines(self) -> int:
        carried = self._in_flight[2] if self._in_flight is not None else {}
        return sum(map(len, carried.values())) + sum(map(len, self._due.values()))

    def _has_due(self) -> bool:
        return bool(self._due)

    def _take_due(self) -> tuple[list[str], BucketLines]:
        buckets, self._due = self._due, {}
        return [line for start in sorted(buckets) for line in buckets[start]], buckets

    def _failed(self, carried: BucketLines) -> None:
        # not known written: carried again by the next write, unless newer sets are due
        self._due = carried | self._due
