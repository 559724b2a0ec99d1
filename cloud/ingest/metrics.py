"""Prometheus metrics of the ingester, in a registry of its own (one per Ingester).

Every name is prefixed ``pantau_ingest_``; counters get ``_total`` from the client library.
README and docs/schema.md ("Ingester metrics") list them for operators.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cloud.ingest.bulk_histogram import BulkHistogram

#: Lag buckets (seconds): sub-second for a healthy pipeline, up to a day for a gateway that
#: replays its spool after an outage.
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400)


class IngestMetrics:
    """The ingester's counters, gauges and histograms."""

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.messages_in = Counter(
            "pantau_ingest_messages", "MQTT messages received from gateways", registry=r
        )
        self.readings_in = Counter(
            "pantau_ingest_readings", "Readings decoded from messages", registry=r
        )
        self.readings_stored = Counter(
            "pantau_ingest_readings_stored", "Readings stored in InfluxDB", registry=r
        )
        self.points_written = Counter(
            "pantau_ingest_points_written",
            "Points InfluxDB accepted (raw, aggregates, dead letters, statuses)",
            registry=r,
        )
        self.dead_letters = Counter(
            "pantau_ingest_dead_letters",
            "Messages or readings refused, by reason",
            ["reason"],
            registry=r,
        )
        self.status_stats_dropped = Counter(
            "pantau_ingest_status_stats_dropped",
            "Status stats dropped because their name is not in contract.STAT_TYPES (not stored)",
            registry=r,
        )
        # Dead-letter store (cloud/ingest/deadletter.py): bounded, each payload once.
        self.dead_letters_rotated = Counter(
            "pantau_ingest_dead_letters_rotated",
            "Dead-letter records dropped by rotation (oldest first) to keep the store within "
            "PANTAU_DEAD_LETTER_MAX_BYTES, since the store was created (survives restarts)",
            registry=r,
        )
        self.dead_letters_duplicate = Counter(
            "pantau_ingest_dead_letters_duplicate",
            "Refusals not stored again: the same payload was already dead-lettered for the "
            "same reason (a replay refused again, a redelivery)",
            registry=r,
        )
        self.dead_letter_bytes = Gauge(
            "pantau_ingest_dead_letter_bytes",
            "Bytes the dead-letter segments hold on disk",
            registry=r,
        )
        self.duplicates = Counter(
            "pantau_ingest_duplicates_dropped",
            "Batches dropped because their (gateway, batch seq) was already stored",
            registry=r,
        )
        self.late_buckets = Counter(
            "pantau_ingest_late_buckets_rewritten",
            "Past rollup buckets rewritten because late readings changed them",
            registry=r,
        )
        self.windows = Counter(
            "pantau_ingest_windows", "Flush windows processed (stored and acknowledged)", registry=r
        )
        self.write_latency = Histogram(
            "pantau_ingest_write_seconds",
            "Duration of one successful InfluxDB /write",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        # One observation per stored reading: observed a window's column at a time.
        self.lag = BulkHistogram(
            "pantau_ingest_lag_seconds",
            "Storage time minus observation time, one observation per stored reading",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        # When progress was last made, for a "stopped making progress" alert and for a
        # bench that times a drain's end exactly instead of to within its polling interval.
        self.last_stored = Gauge(
            "pantau_ingest_last_stored_timestamp_seconds",
            "Unix time a window's raw readings were last stored (0: none yet)",
            registry=r,
        )
        self.last_folded = Gauge(
            "pantau_ingest_last_folded_timestamp_seconds",
            "Unix time a window's readings were last folded into state InfluxDB holds, "
            "ready to acknowledge (0: none yet)",
            registry=r,
        )
        self.window_messages = Histogram(
            "pantau_ingest_window_messages",
            "Messages processed per flush window",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000),
            registry=r,
        )
        self.unacked = Gauge(
            "pantau_ingest_unacked_messages",
            "Messages received from the broker and not yet acknowledged (queued or in a window)",
            registry=r,
        )
        self.unacked_max = Gauge(
            "pantau_ingest_unacked_messages_max",
            "Highest pantau_ingest_unacked_messages since start (bounded by Receive Maximum)",
            registry=r,
        )
        self.held_bytes = Gauge(
            "pantau_ingest_held_bytes",
            "Payload bytes received and not yet through a window, as held_max_bytes counts them "
            "(JSON at half)",
            registry=r,
        )
        self.subscribed = Gauge(
            "pantau_ingest_subscribed",
            "1 while connected to the broker with every subscription granted",
            registry=r,
        )
        self.write_retrying = Gauge(
            "pantau_ingest_write_retrying",
            "1 while InfluxDB writes are failing and being retried (consumption paused)",
            registry=r,
        )
        # Scale-out (docs/adr/0006-ingester-scale-out.md): state deltas between members.
        self.deltas_published = Counter(
            "pantau_ingest_state_deltas_published",
            "State-delta messages published to the other members of the group",
            registry=r,
        )
        self.delta_sensors_published = Counter(
            "pantau_ingest_state_delta_sensors_published",
            "Sensor states carried by the published deltas",
            registry=r,
        )
        self.deltas_merged = Counter(
            "pantau_ingest_state_deltas_merged",
            "State-delta messages received from other members and merged",
            registry=r,
        )
        self.delta_sensors_changed = Counter(
            "pantau_ingest_state_delta_sensors_changed",
            "Sensor states a merged delta changed here (the rest were already known)",
            registry=r,
        )
        self.deltas_refused = Counter(
            "pantau_ingest_state_deltas_refused",
            "State-delta messages refused (malformed, or from a member with another registry)",
            registry=r,
        )
        # One writer each: the MQTT thread counts in, the consumer counts out; the gauges read
        # the difference at scrape time. No lock on the per-message path (~0.1 µs, not ~1 µs).
        self._in = 0
        self._out = 0
        self._held_max = 0
        self.unacked.set_function(lambda: self.held)
        self.unacked_max.set_function(lambda: self._held_max)

    def observe_lag(self, lag_s: npt.NDArray[np.float64]) -> None:
        """One lag observation per reading (seconds): a window's readings are folded."""
        self.lag.observe_many(lag_s)
        self.last_folded.set_to_current_time()

    def received(self) -> None:
        """A message arrived from the broker and is now held unacknowledged (MQTT thread)."""
        self._in += 1
        held = self._in - self._out
        self._held_max = max(self._held_max, held)

    def released(self, n: int) -> None:
        """``n`` held messages were acknowledged, or dropped with a lost connection
        (consumer thread)."""
        self._out += n

    @property
    def held(self) -> int:
        """Messages held unacknowledged right now."""
        return self._in - self._out
