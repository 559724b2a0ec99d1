"""The counters both outboxes keep: seqs, reading ids, depth per lane, drops, high-water mark."""

from __future__ import annotations

from dataclasses import dataclass, field

from contract.errors import StorageError
from edge.spool.policy import LANES, LOWEST, DropReason, SpoolLimits

#: (reason, lane) -> its meta key. Built once: every spool write compares the counters
#: before and after, and formatting these names was a third of that.
_DROP_KEYS: tuple[tuple[tuple[DropReason, int], str], ...] = tuple(
    ((reason, lane), f"dropped_{reason.value}_{kind.value}")
    for reason in DropReason
    for lane, kind in enumerate(LANES)
)


@dataclass(slots=True)
class Tally:
    """Counters both outboxes keep. The SQLite spool changes a copy inside a transaction and
    keeps it only once the transaction commits, so memory never runs ahead of the file."""

    next_seq: int = 0
    next_id: int = 0
    high_water: int = 0
    #: 1 when this spool file replaced a corrupt one (moved aside at open).
    quarantined: int = 0
    lane_depth: list[int] = field(default_factory=lambda: [0] * len(LANES))
    dropped: dict[tuple[DropReason, int], int] = field(default_factory=dict)

    def copy(self) -> Tally:
        """An independent copy (to change inside a transaction)."""
        return Tally(
            self.next_seq,
            self.next_id,
            self.high_water,
            self.quarantined,
            list(self.lane_depth),
            dict(self.dropped),
        )

    @property
    def depth(self) -> int:
        """Readings held, over all lanes."""
        return sum(self.lane_depth)

    def drop(self, reason: DropReason, lane: int, n: int) -> None:
        """Count ``n`` readings of ``lane`` gone for ``reason``."""
        if n > 0:
            self.dropped[reason, lane] = self.dropped.get((reason, lane), 0) + n
            self.lane_depth[lane] -= n

    def note_depth(self) -> None:
        """Raise the high-water mark to the current depth."""
        self.high_water = max(self.high_water, self.depth)

    def admit(self, limits: SpoolLimits, lane: int, n: int) -> tuple[int, int]:
        """Count ``n`` new readings of ``lane`` in (ids are used even for readings a
        REFUSE_NEW spool drops); returns how many are kept and the first id."""
        keep = limits.fits(self.depth, n)
        self.lane_depth[lane] += n
        self.drop(DropReason.FULL, lane, n - keep)
        first = self.next_id
        self.next_id += n
        return keep, first

    def lowest_nonempty_lane(self) -> int:
        """The lane a full spool sheds from: the least urgent one holding readings."""
        for lane in range(LOWEST, -1, -1):
            if self.lane_depth[lane] > 0:
                return lane
        raise StorageError("spool counters say it is over its bound but empty", retryable=False)

    def persisted(self) -> dict[str, int]:
        """The counters stored with a durable spool, by meta key."""
        out = {"next_seq": self.next_seq, "next_id": self.next_id, "high_water": self.high_water}
        dropped = self.dropped
        for key, name in _DROP_KEYS:
            out[name] = dropped.get(key, 0)
        return out

    def load(self, meta: dict[str, int]) -> None:
        """Take the counters from a durable spool's meta table."""
        self.next_seq = meta.get("next_seq", self.next_seq)
        self.next_id = meta.get("next_id", self.next_id)
        self.high_water = meta.get("high_water", 0)
        self.quarantined = meta.get("quarantined", 0)
        for reason in DropReason:
            for lane, kind in enumerate(LANES):
                n = meta.get(f"dropped_{reason.value}_{kind.value}", 0)
                if n:
                    self.dropped[reason, lane] = n

    def stats(self) -> dict[str, int]:
        """Depth per lane, drops by reason and lane (with totals) and the high-water mark, as
        status stats named ``spool_*``."""
        out = {"spool_high_water": self.high_water, "spool_quarantined": self.quarantined}
        for lane, kind in enumerate(LANES):
            out[f"spool_depth_{kind.value}"] = self.lane_depth[lane]
        total = 0
        for reason in DropReason:
            by_reason = 0
            for lane, kind in enumerate(LANES):
                n = self.dropped.get((reason, lane), 0)
                out[f"spool_dropped_{reason.value}_{kind.value}"] = n
                by_reason += n
            out[f"spool_dropped_{reason.value}"] = by_reason
            total += by_reason
        for lane, kind in enumerate(LANES):
            out[f"spool_dropped_{kind.value}"] = sum(
                self.dropped.get((reason, lane), 0) for reason in DropReason
            )
        out["spool_dropped_total"] = total
        return out
