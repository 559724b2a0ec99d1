"""Where the outbox's names lived before ``edge.spool``; kept so ``edge.config`` and existing
imports work. New code imports from :mod:`edge.spool`."""

from edge.clock import wall_ms
from edge.spool import (
    LANES,
    SCHEMA_VERSION,
    DropReason,
    FullPolicy,
    MemoryOutbox,
    Outbox,
    PendingBatch,
    SpoolLimits,
    SqliteOutbox,
    lane_of,
    split_lanes,
)

__all__ = [
    "LANES",
    "SCHEMA_VERSION",
    "DropReason",
    "FullPolicy",
    "MemoryOutbox",
    "Outbox",
    "PendingBatch",
    "SpoolLimits",
    "SqliteOutbox",
    "lane_of",
    "split_lanes",
    "wall_ms",
]
