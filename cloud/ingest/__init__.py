"""The ingester: MQTT -> validated numpy columns -> InfluxDB, acknowledged only once stored.

Every public name loads on first use: ``import cloud.ingest.aggregate`` (which the API does)
must not drag in paho, httpx and prometheus_client through this package's ``__init__``
(tests/unit/test_architecture.py checks it in a fresh interpreter).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cloud.ingest.aggregate import (
        BedRollups,
        CrowdSites,
        QueueSites,
        SensorState,
        bed_rollups,
        crowd_sites,
        queue_sites,
    )
    from cloud.ingest.bulk_histogram import BulkHistogram
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
    from cloud.ingest.metrics import IngestMetrics
    from cloud.ingest.schema import StorageSchema, apply_schema, series_budget
    from cloud.ingest.seed import bootstrap_state
    from cloud.ingest.service import Ingester
    from cloud.ingest.settings import IngestSettings
    from cloud.ingest.topology import CityIndex
    from cloud.ingest.writer import PointBuilder, PointWriter, WriteAbortedError

#: public name -> the module that defines it
_LAZY = {
    **dict.fromkeys(
        (
            "BedRollups",
            "CrowdSites",
            "QueueSites",
            "SensorState",
            "bed_rollups",
            "crowd_sites",
            "queue_sites",
        ),
        "cloud.ingest.aggregate",
    ),
    **dict.fromkeys(
        ("DeadLetter", "DeadLetterStore", "Problem", "Refusal"), "cloud.ingest.deadletter"
    ),
    **dict.fromkeys(
        (
            "REASONS",
            "DecodedWindow",
            "Message",
            "Readings",
            "Rejection",
            "StatusUpdate",
            "check_readings",
            "decode_window",
        ),
        "cloud.ingest.decode",
    ),
    "PoisonGuard": "cloud.ingest.guard",
    "BulkHistogram": "cloud.ingest.bulk_histogram",
    "IngestMetrics": "cloud.ingest.metrics",
    **dict.fromkeys(("StorageSchema", "apply_schema", "series_budget"), "cloud.ingest.schema"),
    "bootstrap_state": "cloud.ingest.seed",
    "Ingester": "cloud.ingest.service",
    "IngestSettings": "cloud.ingest.settings",
    "CityIndex": "cloud.ingest.topology",
    **dict.fromkeys(("PointBuilder", "PointWriter", "WriteAbortedError"), "cloud.ingest.writer"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cloud.ingest' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "REASONS",
    "BedRollups",
    "BulkHistogram",
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
    "queue_sites",
    "series_budget",
]
