"""The gateway agent: serial sensors -> batches -> durable outbox -> MQTT (QoS 1)."""

from edge.agent import CommandError, EdgeAgent
from edge.config import EdgeSettings, load_settings
from edge.metrics import StatusCollector, serve_metrics
from edge.mqtt import ClientFactory, connect_properties, paho_client
from edge.outbox import MemoryOutbox, Outbox, PendingBatch, SqliteOutbox
from edge.serial_reader import PortReader, SerialOpener, SerialPort, serial_opener

__all__ = [
    "ClientFactory",
    "CommandError",
    "EdgeAgent",
    "EdgeSettings",
    "MemoryOutbox",
    "Outbox",
    "PendingBatch",
    "PortReader",
    "SerialOpener",
    "SerialPort",
    "SqliteOutbox",
    "StatusCollector",
    "connect_properties",
    "load_settings",
    "paho_client",
    "serial_opener",
    "serve_metrics",
]
