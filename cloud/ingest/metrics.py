"""Prometheus metrics of the ingester, in a registry of its own (one per Ingester)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    """The ingester's counters and histograms."""

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.messages_in = Counter("pantau_ingest_messages", "MQTT messages received", registry=r)
        self.readings_in = Counter(
            "pantau_ingest_readings", "Readings decoded from messages", registry=r
        )
        self.readings_stored = Counter(
            "pantau_ingest_readings_stored", "Readings stored in InfluxDB", registry=r
        )
        self.dead_letters = Counter(
            "pantau_ingest_dead_letters",
            "Messages or readings refused, by reason",
            ["reason"],
            registry=r,
        )
        self.write_latency = Histogram(
            "pantau_ingest_write_seconds",
            "Duration of one successful InfluxDB /write",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.lag = Histogram(
            "pantau_ingest_lag_seconds",
            "Now minus observation time of the newest and oldest reading of each window",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
            registry=r,
        )
        self.window_messages = Histogram(
            "pantau_ingest_window_messages",
            "Messages processed per flush window",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000),
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
