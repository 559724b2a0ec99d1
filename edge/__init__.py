"""The gateway agent: serial sensors -> batches -> durable spool -> MQTT (QoS 1)."""

from edge.agent import CommandError, EdgeAgent
from edge.batcher import Batcher
from edge.clock import ClockProbe, ClockWatch, probe_for
from edge.config import EdgeSettings, load_settings
from edge.envelope import batch_payload
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
from edge.netloop import NetworkLoop
from edge.reading import EdgeReading, encode_readings
from edge.serial_hub import SerialHub
from edge.serial_reader import PortReader, SensorHealth, SerialOpener, SerialPort, serial_opener
from edge.spool import (
    FullPolicy,
    MemoryOutbox,
    Outbox,
    PendingBatch,
    SpoolLimits,
    SqliteOutbox,
    split_lanes,
)
from edge.uplink import Uplink

__all__ = [
    "Batcher",
    "ClientFactory",
    "ClockProbe",
    "ClockWatch",
    "CommandError",
    "EdgeAgent",
    "EdgeReading",
    "EdgeSettings",
    "FullPolicy",
    "Link",
    "LinkState",
    "LinkWatch",
    "MemoryOutbox",
    "NetworkLoop",
    "Outbox",
    "PendingBatch",
    "PortReader",
    "SensorHealth",
    "SerialHub",
    "SerialOpener",
    "SerialPort",
    "SpoolLimits",
    "SqliteOutbox",
    "StatusCollector",
    "Uplink",
    "abort_connection",
    "batch_payload",
    "connect_properties",
    "encode_readings",
    "load_settings",
    "paho_client",
    "probe_for",
    "serial_opener",
    "serve_metrics",
    "split_lanes",
]
