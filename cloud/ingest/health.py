"""The ingester's own health, stored next to the data so Grafana can chart and alert on it.

Prometheus metrics (``cloud.ingest.metrics``) need a Prometheus; a city that runs only InfluxDB
and Grafana would have no ingest rate or lag. So every ``every_ms`` (and at the first window)
the ingester writes one ``ingest_health`` point through its normal writer:

- ``readings`` / ``messages`` / ``dead_letters``: counted since the previous point;
- ``readings_per_s``: ``readings`` over the seconds since the previous point;
- ``lag_p50_s``, ``lag_p99_s``, ``lag_max_s``: storage time - observation time of the readings
  stored since the previous point (nearest-rank percentiles, ``numpy.percentile`` "inverted_cdf"),
  absent when none were stored;
- ``unacked``: messages received and not yet acknowledged when the point is written.

One series per ingester (tag ``ingester`` = its MQTT client id), so a scale-out group shows one
line per member and a sum gives the group's rate. The cost is a few numpy calls per window and
one line per period; lags are concatenated per window, not per reading.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cloud.influx import FieldValue, format_line, series_key
from cloud.storage_schema import Measurement

MEASUREMENT = Measurement.INGEST_HEALTH
#: Default period between two points: fine enough for a 1-minute alert, one line per 10 s.
DEFAULT_EVERY_MS = 10_000


class IngestHealth:
    """Accumulates one period's counts and lags; :meth:`due_line` hands out the point."""

    def __init__(self, *, ingester: str, every_ms: int = DEFAULT_EVERY_MS) -> None:
        self._key = series_key(MEASUREMENT, {"ingester": ingester})
        self._every_ms = every_ms
        self._since_ms: int | None = None
        self._readings = 0
        self._messages = 0
        self._dead = 0
        self._lags: list[npt.NDArray[np.float64]] = []

    def observe(self, *, messages: int, lags_s: npt.NDArray[np.float64]) -> None:
        """Count one stored window: its messages and the lag of each stored reading."""
        self._messages += messages
        self._readings += len(lags_s)
        if len(lags_s):
            self._lags.append(lags_s)

    def refused(self, n: int) -> None:
        """Count ``n`` dead letters (messages or readings refused)."""
        self._dead += n

    def due_line(self, now_ms: int, *, unacked: int) -> str | None:
        """The ``ingest_health`` point if a period has ended (or none was written yet), and
        start the next period; None otherwise."""
        if self._since_ms is not None and now_ms - self._since_ms < self._every_ms:
            return None
        period_s = (now_ms - self._since_ms) / 1000.0 if self._since_ms is not None else 0.0
        fields: dict[str, FieldValue] = {
            "readings": self._readings,
            "messages": self._messages,
            "dead_letters": self._dead,
            "unacked": unacked,
            "readings_per_s": self._readings / period_s if period_s > 0 else 0.0,
        }
        if self._lags:
            lags = np.concatenate(self._lags)
            p50, p99 = np.percentile(lags, [50, 99], method="inverted_cdf")
            fields |= {
                "lag_p50_s": float(p50),
                "lag_p99_s": float(p99),
                "lag_max_s": float(lags.max()),
            }
        self._since_ms = now_ms
        self._readings = self._messages = self._dead = 0
        self._lags = []
        return format_line(self._key, fields, now_ms * 1000)
