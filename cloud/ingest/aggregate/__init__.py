"""The ingester's state and math: pure numpy, no I/O, nothing of the service.

``state`` (latest and previous reading per sensor), ``history`` (recent readings, to recompute
past rollup buckets when late data arrives) and ``rollups`` (bed, crowd and queue aggregates;
the formulas are in its docstring). The API imports this package too: importing it loads numpy
and the registry, never paho, httpx or prometheus_client (tests/unit/test_architecture.py).
"""

from cloud.ingest.aggregate.history import ReadingHistory
from cloud.ingest.aggregate.rollups import (
    BedLayout,
    BedLayouts,
    BedRollups,
    CrowdSites,
    QueueSites,
    bed_layout,
    bed_rollups,
    crowd_sites,
    queue_sites,
)
from cloud.ingest.aggregate.state import NO_TIME, SensorState

__all__ = [
    "NO_TIME",
    "BedLayout",
    "BedLayouts",
    "BedRollups",
    "CrowdSites",
    "QueueSites",
    "ReadingHistory",
    "SensorState",
    "bed_layout",
    "bed_rollups",
    "crowd_sites",
    "queue_sites",
]
