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

from contract.status import GatewayStatus


class StatusCollector(Collector):
    """Exposes every numeric status stat as ``pantau_edge_<name>``, the link state, the clock
    offset and per-sensor last-seen, silence, sequence gaps, resets and clock skew."""

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
        yield from self._link(status)
        gw = self._gateway_id
        if status.clock_offset_ms is not None:
            offset = GaugeMetricFamily(
                "pantau_edge_clock_offset_seconds",
                "gateway clock minus NTP time (absent when unknown)",
                labels=["gateway"],
            )
            offset.add_metric([gw], status.clock_offset_ms / 1000)
            yield offset
        seen = GaugeMetricFamily(
            "pantau_edge_sensor_last_seen_seconds",
            "when the gateway last decoded a frame from the sensor (unix seconds)",
            labels=["gateway", "sensor"],
        )
        silent = GaugeMetricFamily(
            "pantau_edge_sensor_silent",
            "1 if the sensor's last frame is older than its silence limit",
            labels=["gateway", "sensor"],
        )
        quiet = set(status.sensors_silent)
        for sensor in sorted(quiet | status.sensors_last_seen.keys()):
            silent.add_metric([gw, sensor], float(sensor in quiet))
            if sensor in status.sensors_last_seen:
                seen.add_metric([gw, sensor], status.sensors_last_seen[sensor] / 1000)
        yield seen
        yield silent
        for name, doc, values, scale in (
            (
                "sensor_seq_gaps",
                "readings missing from the sensor's sequence",
                status.sensor_seq_gaps,
                1,
            ),
            ("sensor_resets", "times the sensor's sequence restarted", status.sensor_resets, 1),
            (
                "sensor_clock_skew_seconds",
                "sensor clock minus gateway clock",
                status.sensor_skew_ms,
                1000,
            ),
        ):
            family = GaugeMetricFamily(f"pantau_edge_{name}", doc, labels=["gateway", "sensor"])
            for sensor, value in sorted(values.items()):
                family.add_metric([gw, sensor], value / scale)
            yield family

    def _link(self, status: GatewayStatus) -> Iterator[GaugeMetricFamily]:
        link = status.stats.get("link")
        if not isinstance(link, str):
            return
        up = GaugeMetricFamily(
            "pantau_edge_link_up", "1 while the MQTT uplink is connected", labels=["gateway"]
        )
        up.add_metric([self._gateway_id], float(link == "connected"))
        yield up
        state = GaugeMetricFamily(
            "pantau_edge_link_state",
            "1 for the uplink's current state (connected, connecting, down)",
            labels=["gateway", "state"],
        )
        for name in ("connected", "connecting", "down"):
            state.add_metric([self._gateway_id, name], float(link == name))
        yield state


def serve_metrics(collector: StatusCollector, *, port: int, addr: str = "0.0.0.0") -> WSGIServer:  # noqa: S104 - scraped from the LAN
    """Start the /metrics HTTP server in a daemon thread; returns it so it can be shut down."""
    registry = CollectorRegistry()
    registry.register(collector)
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server
