"""What the spool hands out (:class:`PendingBatch`) and the protocol both outboxes implement.

A batch is stored as the JSON array of its readings, the very bytes the agent publishes inside
the batch envelope: a batch re-sent after a reconnect is not encoded again, and the readings
are not validated again on their way out (they were validated once, when the frame was
decoded). Only cutting a batch (a full spool shedding part of one, or a partly acknowledged
batch) parses the array, without validating it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson
from pydantic import TypeAdapter

from contract.payload import Reading
from edge.spool.policy import Kinded

_READINGS = TypeAdapter(list[Reading])


@dataclass(frozen=True, slots=True)
class PendingBatch:
    """A closed batch waiting for its PUBACK: its seq, the ids of its readings, the readings
    as stored (a JSON array), and when it was stored."""

    seq: int
    ids: tuple[int, ...]
    body: bytes
    created_ms: int

    @property
    def readings(self) -> tuple[Reading, ...]:
        """The readings as validated contract models (for tools and tests; the agent
        publishes :attr:`body` as it is)."""
        return tuple(_READINGS.validate_json(self.body))


def keep_items(body: bytes, keep: Sequence[int]) -> bytes:
    """The JSON array ``body`` with only the items at the indexes ``keep``, in that order."""
    items = orjson.loads(body)
    return orjson.dumps([items[i] for i in keep])


class Outbox(Protocol):
    """Where closed batches wait until acknowledged. Not thread-safe by contract: the agent
    changes it from its publisher loop only (the getters may be called from anywhere)."""

    def put(self, readings: Sequence[Kinded]) -> int:
        """Store ``readings`` as one closed batch, applying the bounds; return its batch seq."""
        ...

    def take(self, *, limit: int, skip: Collection[int] = ()) -> list[PendingBatch]:
        """Up to ``limit`` pending batches whose seq is not in ``skip``: lane by lane (beds
        first), each lane in seq order."""
        ...

    def mark_acked(self, batch: PendingBatch) -> int:
        """Remove the readings of ``batch`` (as it was taken) that are still stored: the
        broker has them. Returns how many went."""
        ...

    def settle(
        self, *, acked: Sequence[PendingBatch], batches: Sequence[Sequence[Kinded]]
    ) -> list[int]:
        """:meth:`mark_acked` each of ``acked``, then :meth:`put` each of ``batches``, as one
        write: all of it is stored or none (docs/adr/0036). Returns the new batches' seqs."""
        ...

    def expire(self) -> int:
        """Drop (and count) batches older than the age bound; return how many readings went."""
        ...

    def depth(self) -> int:
        """Readings still waiting for a PUBACK."""
        ...

    def oldest_age_s(self) -> float | None:
        """Age in seconds of the oldest waiting reading's batch, None when empty."""
        ...

    def stats(self) -> dict[str, int]:
        """Depth per lane, drops by reason and lane (with totals) and the high-water mark, as
        status stats named ``spool_*``."""
        ...

    def close(self) -> None:
        """Release files/handles."""
        ...
