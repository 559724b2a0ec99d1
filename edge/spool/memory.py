"""The in-process outbox: survives broker outages, not a gateway reboot."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Self

from contract.clock import now_ms
from edge.reading import encode_readings
from edge.spool.batch import PendingBatch, keep_items
from edge.spool.policy import LANES, DropReason, Kinded, SpoolLimits, batch_lane
from edge.spool.tally import Tally


class MemoryOutbox:
    """An in-process outbox with the same rules as :class:`edge.spool.SqliteOutbox`. Batch
    seqs start at the wall clock in ms at :meth:`open`, so they keep increasing across agent
    restarts without storing a counter."""

    def __init__(
        self, *, clock: Callable[[], int] = now_ms, limits: SpoolLimits | None = None
    ) -> None:
        self._clock = clock
        self._limits = limits or SpoolLimits()
        # One dict per lane, seq -> batch; dicts keep insertion order and seqs are inserted
        # increasing, so each is in seq order.
        self._lanes: list[dict[int, PendingBatch]] = [{} for _ in LANES]
        self._lane_of_seq: dict[int, int] = {}
        self._tally = Tally()
        self._opened = False

    def open(self) -> Self:
        """Start the sequence; returns self."""
        self._tally.next_seq = self._clock()
        self._opened = True
        return self

    def put(self, readings: Sequence[Kinded]) -> int:
        """Store a closed batch within the bounds; return its seq."""
        t = self._tally
        now = self._clock()
        if not self._opened:
            self.open()
        seq = t.next_seq
        t.next_seq += 1
        self._expire(now)
        if not readings:
            return seq
        lane = batch_lane(readings)
        keep, first = t.admit(self._limits, lane, len(readings))
        if keep:
            body = encode_readings(readings[:keep])
            ids = tuple(range(first, first + keep))
            self._lanes[lane][seq] = PendingBatch(seq, ids, body, now)
            self._lane_of_seq[seq] = lane
        self._shed(self._limits.overflow(t.depth))
        t.note_depth()
        return seq

    def _remove(self, seq: int) -> PendingBatch:
        lane = self._lane_of_seq.pop(seq)
        return self._lanes[lane].pop(seq)

    def _shed(self, over: int) -> None:
        while over > 0:
            lane = self._tally.lowest_nonempty_lane()
            oldest = next(iter(self._lanes[lane].values()))
            n = min(over, len(oldest.ids))
            if n == len(oldest.ids):
                self._remove(oldest.seq)
            else:
                self._lanes[lane][oldest.seq] = PendingBatch(
                    oldest.seq,
                    oldest.ids[n:],
                    keep_items(oldest.body, range(n, len(oldest.ids))),
                    oldest.created_ms,
                )
            self._tally.drop(DropReason.FULL, lane, n)
            over -= n

    def _expire(self, now: int) -> int:
        if self._limits.max_age_ms is None:
            return 0
        cutoff = now - self._limits.max_age_ms
        gone = 0
        for lane, batches in enumerate(self._lanes):
            for batch in [b for b in batches.values() if b.created_ms < cutoff]:
                self._remove(batch.seq)
                self._tally.drop(DropReason.EXPIRED, lane, len(batch.ids))
                gone += len(batch.ids)
        return gone

    def expire(self) -> int:
        """Drop batches older than the age bound."""
        return self._expire(self._clock())

    def take(self, *, limit: int, skip: Collection[int] = ()) -> list[PendingBatch]:
        """Pending batches not in ``skip``, beds first, each lane in seq order."""
        self._expire(self._clock())
        out: list[PendingBatch] = []
        for batches in self._lanes:
            for seq, batch in batches.items():
                if len(out) >= limit:
                    return out
                if seq not in skip:
                    out.append(batch)
        return out

    def mark_acked(self, batch: PendingBatch) -> int:
        """Drop acknowledged readings; the batch goes when its last reading goes."""
        lane = self._lane_of_seq.get(batch.seq)
        if lane is None:
            return 0
        stored = self._lanes[lane][batch.seq]
        sent = set(batch.ids)
        keep = [i for i, rid in enumerate(stored.ids) if rid not in sent]
        removed = len(stored.ids) - len(keep)
        if not keep:
            self._remove(batch.seq)
        elif removed:  # a partly acked batch is re-sent with only what is still missing
            self._lanes[lane][batch.seq] = PendingBatch(
                batch.seq,
                tuple(stored.ids[i] for i in keep),
                keep_items(stored.body, keep),
                stored.created_ms,
            )
        self._tally.lane_depth[lane] -= removed
        return removed

    def settle(
        self, *, acked: Sequence[PendingBatch], batches: Sequence[Sequence[Kinded]]
    ) -> list[int]:
        """Drop the acknowledged readings, then store the new batches; their seqs."""
        for batch in acked:
            self.mark_acked(batch)
        return [self.put(readings) for readings in batches]

    def depth(self) -> int:
        """Readings waiting for a PUBACK."""
        return self._tally.depth

    def oldest_age_s(self) -> float | None:
        """Age of the oldest waiting batch."""
        created = [b.created_ms for batches in self._lanes for b in batches.values()]
        return None if not created else max(0.0, (self._clock() - min(created)) / 1000)

    def stats(self) -> dict[str, int]:
        """Spool counters as status stats."""
        return self._tally.stats()

    def close(self) -> None:
        """Nothing to release."""
