"""The spool's rules: lanes (drain order by kind), bounds, and what a full spool gives up.

Every batch holds readings of one kind (the agent splits a batch window with
:func:`split_lanes`), and the batch's lane is its kind's priority: beds first, then queues,
then crowds (:data:`LANES`). A backlog drains lane by lane, each lane in seq order, so bed
readings go first while a sensor's readings (one sensor, one kind, one lane) keep their order.

:class:`SpoolLimits` caps the readings held and their age. When a new batch does not fit,
:attr:`FullPolicy.DROP_OLDEST_LOWEST_LANE` drops the oldest readings of the lowest-priority
non-empty lane (crowd, then queue, beds last), and :attr:`FullPolicy.REFUSE_NEW` keeps what is
stored and drops the new readings that do not fit.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, TypeVar

from contract.payload import SensorKind

#: Drain order: a lane's index is its priority (0 goes first). A new kind not listed here
#: would go in the last lane, never lost.
LANES: tuple[SensorKind, ...] = (SensorKind.BED, SensorKind.QUEUE, SensorKind.CROWD)
LOWEST = len(LANES) - 1
_LANE_OF = {kind: i for i, kind in enumerate(LANES)}
_KIND = operator.attrgetter("kind")


class Kinded(Protocol):
    """Anything with a sensor kind: an edge reading or a contract reading."""

    @property
    def kind(self) -> SensorKind:
        """The sensor kind."""
        ...


R = TypeVar("R", bound=Kinded)


def lane_of(kind: SensorKind) -> int:
    """The lane (0 = drained first) of readings of ``kind``."""
    return _LANE_OF.get(kind, LOWEST)


def split_lanes(readings: Sequence[R]) -> list[list[R]]:
    """``readings`` as one list per lane, most urgent lane first, empty lanes left out; the
    order of readings within a lane is their order in ``readings``."""
    kinds = set(map(_KIND, readings))
    if len(kinds) <= 1:
        # One kind (a gateway of bed wards, a mall's gates): one lane, and no Python loop
        # over 2 000 readings a second to find it out.
        return [list(readings)] if readings else []
    lanes: list[list[R]] = [[] for _ in LANES]
    for reading in readings:
        lanes[lane_of(reading.kind)].append(reading)
    return [lane for lane in lanes if lane]


def batch_lane(readings: Sequence[Kinded]) -> int:
    """The lane of a batch: a batch mixing kinds (only if a caller skips :func:`split_lanes`)
    goes in its most urgent lane."""
    return min(map(lane_of, set(map(_KIND, readings))))


class FullPolicy(StrEnum):
    """What a full spool does with a new batch."""

    #: Store the new readings, then drop the oldest readings of the lowest-priority non-empty
    #: lane (crowd, then queue, beds last) until the spool fits again.
    DROP_OLDEST_LOWEST_LANE = "drop_oldest_lowest_lane"
    #: Keep what is stored; store the new batch's first readings that fit, drop the rest.
    REFUSE_NEW = "refuse_new"


class DropReason(StrEnum):
    """Why readings left the spool without a PUBACK."""

    FULL = "full"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class SpoolLimits:
    """The spool's bounds; ``None`` means unbounded (tests, benchmarks)."""

    max_readings: int | None = None
    #: Cap on the spool file (SQLite ``max_page_count``; the WAL adds up to about 4 MB). A
    #: write that finds the file - or the disk - full gets the same policy as a spool over
    #: ``max_readings``. Only :class:`SqliteOutbox` has a file; the memory outbox ignores it.
    max_bytes: int | None = None
    #: A batch older than this (since it was stored) is dropped as expired.
    max_age_ms: int | None = None
    policy: FullPolicy = FullPolicy.DROP_OLDEST_LOWEST_LANE

    def fits(self, depth: int, n: int) -> int:
        """How many of ``n`` new readings a spool holding ``depth`` takes in."""
        if self.max_readings is None or self.policy is not FullPolicy.REFUSE_NEW:
            return n
        return max(0, min(n, self.max_readings - depth))

    def overflow(self, depth: int) -> int:
        """How many readings over ``max_readings`` a spool holding ``depth`` is."""
        return 0 if self.max_readings is None else max(0, depth - self.max_readings)
