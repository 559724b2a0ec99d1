"""The gateway agent: serial sensors -> batches -> durable outbox -> MQTT (QoS 1)."""

from edge.agent import CommandError, EdgeAgent
from edge.clock import ClockProbe, ClockWatch, probe_for
from edge.config import EdgeSettings, load_settings
from edge.metrics import StatusCollector, serve_metrics
from edge.mqtt import (
    ClientFactory,
    Link,
    LinkState,
    LinkWatch,
    abort_connection,
    connect_properties,
    paho_client,
)
from edge.outbox import MemoryOutbox, Outbox, PendingBatch, SqliteOutbox
from edge.serial_reader import PortReader, SensorHealth, SerialOpener, SerialPort, serial_opener

__all__ = [
    "ClientFactory",
    "ClockProbe",
    "ClockWatch",
    "CommandError",
    "EdgeAgent",
    "EdgeSettings",
    "Link",
    "LinkState",
    "LinkWatch",
    "MemoryOutbox",
    "Outbox",
    "PendingBatch",
    "PortReader",
    "SensorHealth",
    "SerialOpener",
    "SerialPort",
    "SqliteOutbox",
    "StatusCollector",
    "abort_connection",
    "connect_properties",
    "load_settings",
    "paho_client",
    "probe_for",
    "serial_opener",
    "serve_metrics",
]
