"""Reading "the latest point per entity" for the routes, and the small conversions they share.

The InfluxQL itself is built by :func:`cloud.influx.latest_query`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from cloud.influx import InfluxHTTP, latest_query
from contract.clock import now_ms
from contract.errors import StorageError

log = logging.getLogger(__name__)

#: InfluxDB answers this until the ingester has created the database: no data yet, not an error.
_NO_DATABASE = "database not found"


def latest_rows(
    influx: InfluxHTTP,
    measurement: str,
    *,
    group_by: Sequence[str],
    conditions: Mapping[str, str | Sequence[str] | None] | None = None,
) -> list[dict[str, Any]]:
    """The newest point of every group as dicts (tags merged in, ``time`` in ms).

    Raises :class:`StorageError` when InfluxDB cannot answer; a missing database is no data."""
    q = latest_query(measurement, group_by=group_by, conditions=conditions)
    try:
        series = influx.query(q)
    except StorageError as exc:
        if _NO_DATABASE in str(exc):
            log.info("database %s does not exist yet: no data", influx.database)
            return []
        raise
    return [row for s in series for row in s.rows()]


def format_ms(ms: int) -> str:
    """ISO 8601 UTC with milliseconds (``2024-07-01T03:00:00.000Z``)."""
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def format_ms_many(ms: npt.NDArray[np.int64]) -> list[str]:
    """:func:`format_ms` of each of ``ms`` at once (numpy's ISO form is the same text)."""
    text = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms", timezone="naive")
    return [t + "Z" for t in text.tolist()]


def iso_ms(ms: int | None) -> str | None:
    """:func:`format_ms`, passing None through."""
    return None if ms is None else format_ms(ms)


def now_iso() -> str:
    """The current time as :func:`format_ms` gives it."""
    return format_ms(now_ms())


def is_stale(observed_ms: int | None, *, now: int, stale_after_s: float) -> bool:
    """True when there is no observation or it is older than ``stale_after_s``."""
    return observed_ms is None or now - observed_ms > stale_after_s * 1000


def as_int(value: Any) -> int | None:
    """An integer field value (InfluxDB JSON gives ints; None stays None)."""
    return None if value is None else int(value)


def as_float(value: Any) -> float | None:
    """A float field value (None stays None)."""
    return None if value is None else float(value)


def nan_to_none(value: float) -> float | None:
    """A float figure from the ingester's arrays; NaN (not defined, e.g. BOR of 0 beds) is None."""
    return None if math.isnan(value) else value
