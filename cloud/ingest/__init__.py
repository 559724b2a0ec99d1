"""The ingester: MQTT -> validated numpy columns -> InfluxDB, acknowledged only once stored."""

from cloud.ingest.aggregate import (
    BedRollups,
    CrowdSites,
    QueueSites,
    SensorState,
    bed_rollups,
    crowd_sites,
    queue_sites,
)
from cloud.ingest.deadletter import DeadLetter, DeadLetterStore, Problem, Refusal
from cloud.ingest.decode import (
    REASONS,
    DecodedWindow,
    Message,
    Readings,
    Rejection,
    StatusUpdate,
    check_readings,
    decode_window,
)
from cloud.ingest.guard import PoisonGuard
from cloud.ingest.metrics import IngestMetrics, observe_many
from cloud.ingest.schema import StorageSchema, apply_schema, series_budget
from cloud.ingest.seed import bootstrap_state
from cloud.ingest.service import Ingester
from cloud.ingest.settings import IngestSettings
from cloud.ingest.topology import CityIndex
from cloud.ingest.writer import PointBuilder, PointWriter, WriteAbortedError

__all__ = [
    "REASONS",
    "BedRollups",
    "CityIndex",
    "CrowdSites",
    "DeadLetter",
    "DeadLetterStore",
    "DecodedWindow",
    "IngestMetrics",
    "IngestSettings",
    "Ingester",
    "Message",
    "PointBuilder",
    "PointWriter",
    "PoisonGuard",
    "Problem",
    "QueueSites",
    "Readings",
    "Refusal",
    "Rejection",
    "SensorState",
    "StatusUpdate",
    "StorageSchema",
    "WriteAbortedError",
    "apply_schema",
    "bed_rollups",
    "bootstrap_state",
    "check_readings",
    "crowd_sites",
    "decode_window",
    "observe_many",
    "queue_sites",
    "series_budget",
]
