"""Prometheus exposition of the agent's status (``PANTAU_METRICS_PORT``).

The collector reads a snapshot the publisher loop refreshes, so a scrape never touches the
outbox or the MQTT session from the HTTP thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from contract.payload import GatewayStatus


class StatusCollector(Collector):
    """Exposes every numeric status stat as ``pantau_edge_<name>`` and per-sensor last-seen."""

    def __init__(self, *, gateway_id: str) -> None:
        self._gateway_id = gateway_id
        self._lock = threading.Lock()
        self._status: GatewayStatus | None = None

    def update(self, status: GatewayStatus) -> None:
        """Replace the snapshot a scrape reports."""
        with self._lock:
            self._status = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Called by prometheus_client on each scrape."""
        with self._lock:
            status = self._status
        if status is None:
            return
        for name, value in sorted(status.stats.items()):
            if isinstance(value, str):
                continue
            family = GaugeMetricFamily(
                f"pantau_edge_{name}", f"edge agent status stat {name}", labels=["gateway"]
            )
            family.add_metric([self._gateway_id], float(value))
            yield family
        seen = GaugeMetricFamily(
            "pantau_edge_sensor_last_seen_seconds",
            "when the gateway last decoded a frame from the sensor (unix seconds)",
            labels=["gateway", "sensor"],
        )
        for sensor, ts in sorted(status.sensors_last_seen.items()):
            seen.add_metric([self._gateway_id, sensor], ts / 1000)
        yield seen


def serve_metrics(collector: StatusCollector, *, port: int, addr: str = "0.0.0.0") -> WSGIServer:  # noqa: S104 - scraped from the LAN
    """Start the /metrics HTTP server in a daemon thread; returns it so it can be shut down."""
    registry = CollectorRegistry()
    registry.register(collector)
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server
