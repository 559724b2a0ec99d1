"""The one wall clock every part stamps with: integer milliseconds since the Unix epoch, UTC
(the unit of every time on the wire and in InfluxDB, docs/protocol.md)."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Wall-clock time in ms since the epoch (``time.time_ns`` floored: never a float's
    rounding)."""
    return time.time_ns() // 1_000_000
