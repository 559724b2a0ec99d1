"""What every history route shares: the ``from``/``to``/``interval`` parameters read into one
:class:`TimeRange` (buckets of a day start at the city's local midnight), and running its
InfluxQL, where a database the ingester has not created yet is no data rather than an error."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import HTTPException, Query, status

from city import Registry
from cloud.api.localtime import LocalZone, zone_of_province
from cloud.influx import InfluxHTTP, Series
from contract.clock import now_ms
from contract.errors import StorageError
from contract.secrets import bounded_echo

_INTERVAL = re.compile(r"^([1-9][0-9]{0,3})([mhd])$")
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}
MAX_BUCKETS = 2000
#: ``from`` when only ``to`` (or nothing) is given
DEFAULT_SPAN_MS = 7 * 86_400_000

#: The parameters every history route takes, declared once (the interval's default differs).
FromQuery = Annotated[str | None, Query(alias="from", description="default: 7 days before to")]
ToQuery = Annotated[str | None, Query(description="default: now")]
IntervalQuery = Annotated[str, Query(description="bucket: 15m, 1h, 1d, ...")]


def parse_time(raw: str | None, *, default: int, name: str) -> int:
    """ms since the epoch from ISO 8601 with an offset (or ``Z``) or from integer ms."""
    if raw is None:
        return default
    if raw.isdigit():
        return int(raw)
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        dt = None
    if dt is None or dt.tzinfo is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"{name} must be ISO 8601 with an offset (2026-11-29T00:00:00+07:00) or ms since "
            f"the epoch, not {bounded_echo(raw)}",
        )
    return int(dt.timestamp() * 1000)


def interval_ms(raw: str) -> int:
    """ms in an interval like ``15m``, ``1h``, ``1d``; 422 otherwise (at least 5 minutes)."""
    m = _INTERVAL.match(raw)
    ms = 0 if m is None else int(m.group(1)) * _UNIT_MS[m.group(2)]
    if ms < 5 * 60_000:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"interval must be minutes, hours or days (15m, 1h, 1d), at least 5m, not "
            f"{bounded_echo(raw)}",
        )
    return ms


@dataclass(frozen=True, slots=True)
class TimeRange:
    """``[start_ms, end_ms)`` in buckets of ``step_ms``, shifted by ``offset_ms`` so that
    daily buckets start at local midnight in ``zone``."""

    start_ms: int
    end_ms: int
    step_ms: int
    offset_ms: int
    zone: LocalZone

    def where(self) -> str:
        """The InfluxQL time condition (to follow a WHERE clause)."""
        return f"time >= {self.start_ms}ms AND time < {self.end_ms}ms"

    def group_by(self) -> str:
        """The InfluxQL ``time(...)`` bucket expression."""
        return f"time({self.step_ms}ms, {self.offset_ms}ms)"


def time_range(
    registry: Registry, *, from_: str | None, to: str | None, interval: str
) -> TimeRange:
    """The request's range: ``to`` defaults to now, ``from`` to 7 days before ``to``; 422 for
    an empty range or more than :data:`MAX_BUCKETS` buckets."""
    step = interval_ms(interval)
    end = parse_time(to, default=now_ms(), name="to")
    start = parse_time(from_, default=end - DEFAULT_SPAN_MS, name="from")
    if end <= start or (end - start) // step > MAX_BUCKETS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"from must be before to, with at most {MAX_BUCKETS} buckets of {interval}",
        )
    zone = zone_of_province(registry.city.province.code)
    # InfluxDB's buckets are aligned to the epoch: shift them by the zone's offset.
    offset = (-zone.hours * 3_600_000) % step
    return TimeRange(start_ms=start, end_ms=end, step_ms=step, offset_ms=offset, zone=zone)


def history_series(influx: InfluxHTTP, query: str) -> list[Series]:
    """The series ``query`` returns; none before the ingester has created the database.
    Raises :class:`StorageError` when InfluxDB cannot answer."""
    try:
        return influx.query(query)
    except StorageError as exc:
        if "database not found" not in str(exc):
            raise
        return []
