"""The outbox: readings wait here from the serial port until the broker has acknowledged them.

A closed batch is stored as a unit with its batch ``seq``, so a batch re-sent after a
reconnect carries the seq it was first sent with and the ingester can drop the duplicate.
Readings leave the outbox through ``mark_acked`` (on the PUBACK), or as a counted drop
when the spool is full or a batch has waited longer than the age bound. Drop counts and the
high-water mark are kept with the spool, so they survive restarts. The agent writes each
wake-up's PUBACKs and closed batches with one ``settle``: one SQLite transaction (ADR 0036).

One module per job: ``policy`` (lanes, bounds, full policy), ``tally`` (the counters),
``batch`` (what ``take`` hands out, the :class:`Outbox` protocol), ``memory``
(:class:`MemoryOutbox`: survives broker outages, not a reboot), ``sqlite_file`` and ``sqlite``
(:class:`SqliteOutbox`: a durable spool file; docs/adr/0005-edge-spool.md). Both outboxes
behave identically (a property test runs random operations through both).
"""

from edge.spool.batch import Outbox, PendingBatch
from edge.spool.memory import MemoryOutbox
from edge.spool.policy import LANES, DropReason, FullPolicy, SpoolLimits, lane_of, split_lanes
from edge.spool.sqlite import SqliteOutbox
from edge.spool.sqlite_file import SCHEMA_VERSION

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
]
