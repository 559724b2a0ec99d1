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
one line per period. A period's lags are kept as a count per distinct lag (:class:`LagTally`),
not one float per reading: at 2.5 M readings/s a 10 s period held 200 MB of lags and sorted
them for the percentiles.
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
        self._lags = LagTally()

    def observe(self, *, messages: int, lags_s: npt.NDArray[np.float64]) -> None:
        """Count one stored window: its messages and the lag of each stored reading."""
        self._messages += messages
        self._readings += len(lags_s)
        self._lags.add(lags_s)

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
            p50, p99, most = self._lags.summary()
            fields |= {"lag_p50_s": p50, "lag_p99_s": p99, "lag_max_s": most}
        self._since_ms = now_ms
        self._readings = self._messages = self._dead = 0
        self._lags = LagTally()
        return format_line(self._key, fields, now_ms * 1000)


#: lags in whole ms over at most this range per window are counted per ms (a bincount)
_MAX_RANGE_MS = 1 << 20


class LagTally:
    """Lags (s) of one period as distinct values and their counts, for the exact percentiles
    ``numpy.percentile(lags, [50, 99], method="inverted_cdf")`` and the maximum.

    The pipeline's lags are whole milliseconds over 1000.0; a window's are counted per ms
    (one ``bincount``), so memory grows with the distinct lags, not the readings. Lags that are
    not whole ms (never, from the pipeline), or span more than ``_MAX_RANGE_MS``, are kept as
    they came. tests/unit/test_ingest_health.py compares with numpy on random lags."""

    def __init__(self) -> None:
        self._values: list[npt.NDArray[np.float64]] = []
        self._counts: list[npt.NDArray[np.int64]] = []

    def __bool__(self) -> bool:
        return bool(self._values)

    @property
    def kept(self) -> int:
        """How many (value, count) pairs are held."""
        return sum(len(v) for v in self._values)

    def add(self, lags_s: npt.NDArray[np.float64]) -> None:
        """Count a window's lags."""
        if not len(lags_s):
            return
        ms = np.rint(lags_s * 1000.0).astype(np.int64)
        lo = int(ms.min())
        if int(ms.max()) - lo < _MAX_RANGE_MS and np.array_equal(ms / 1000.0, lags_s):
            counts = np.bincount(ms - lo)
            at = np.flatnonzero(counts)
            self._values.append((at + lo) / 1000.0)
            self._counts.append(counts[at])
        else:
            self._values.append(np.asarray(lags_s, dtype=np.float64))
            self._counts.append(np.ones(len(lags_s), dtype=np.int64))

    def summary(self) -> tuple[float, float, float]:
        """(p50, p99, max) of every lag added; at least one lag must have been."""
        values, inverse = np.unique(np.concatenate(self._values), return_inverse=True)
        counts = np.bincount(inverse, weights=np.concatenate(self._counts)).astype(np.int64)
        cumulative = np.cumsum(counts)
        n = int(cumulative[-1])
        # numpy's "inverted_cdf": the order statistic at n*q - 1, rounded up unless whole
        index = n * (np.array([50.0, 99.0]) / 100) - 1
        below = np.floor(index)
        rank = np.maximum(np.where(index - below == 0, below, below + 1), 0).astype(np.int64)
        p50, p99 = values[np.searchsorted(cumulative, rank, side="right")]
        return float(p50), float(p99), float(values[-1])
