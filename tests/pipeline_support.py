"""A window pipeline of the demo city, aggregates only, over a writer a unit test stands in:
for tests of what the pipeline writes, without InfluxDB (tests/unit/test_ingest_rollup_*.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from city import DEMO_CITY, load_registry
from cloud.ingest.aggregate import SensorState
from cloud.ingest.dedup import BatchDedup
from cloud.ingest.health import IngestHealth
from cloud.ingest.metrics import IngestMetrics
from cloud.ingest.pipeline import WindowPipeline
from cloud.ingest.settings import IngestSettings
from cloud.ingest.topology import CityIndex

INDEX = CityIndex.from_registry(load_registry(DEMO_CITY))


def aggregates_pipeline(
    *, dead_letter_dir: Path, writer: Any, state: SensorState, clock_ms: Callable[[], int]
) -> WindowPipeline:
    """The demo city's pipeline writing through ``writer`` (any object with the writer's
    ``write``/``submit``), aggregates only, no dead-letter store and no late-data history."""
    return WindowPipeline(
        settings=IngestSettings(store_raw=False, dead_letter_dir=dead_letter_dir),
        index=INDEX,
        state=state,
        writer=writer,
        dead=None,  # type: ignore[arg-type]
        metrics=IngestMetrics(),
        health=IngestHealth(ingester="test"),
        dedup=BatchDedup(per_gateway=4),
        history=None,
        clock_ms=clock_ms,
    )
