"""Getting the ingester's storage ready before it takes a message: the InfluxDB client its
settings describe, the database, retention policies and continuous queries, the state
bootstrapped from the latest stored readings, and the late-data memory seeded from that state.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from cloud.influx import InfluxHTTP
from cloud.ingest.aggregate import NO_TIME, ReadingHistory, SensorState
from cloud.ingest.places import publish_places
from cloud.ingest.schema import ensure_storage
from cloud.ingest.seed import bootstrap_state
from cloud.ingest.settings import IngestSettings
from cloud.ingest.topology import CityIndex
from contract import StorageError
from contract.backoff import backoff_delay

log = logging.getLogger(__name__)

_BACKOFF_BASE_S = 0.2
_BACKOFF_CAP_S = 30.0


def retry_delay(attempt: int) -> float:
    """The full-jitter wait before attempt ``attempt + 1`` (InfluxDB start-up, MQTT connect)."""
    return backoff_delay(attempt, base=_BACKOFF_BASE_S, cap=_BACKOFF_CAP_S)


def influx_of(settings: IngestSettings) -> InfluxHTTP:
    """The InfluxDB client ``settings`` describe (no I/O until used)."""
    return InfluxHTTP(
        url=settings.influx_url,
        database=settings.influx_db,
        username=settings.influx_username,
        password=settings.influx_password,
        token=settings.influx_token,
    )


def prepare_storage(
    influx: InfluxHTTP,
    *,
    settings: IngestSettings,
    index: CityIndex,
    state: SensorState,
    stop: threading.Event,
) -> bool:
    """Create the database, apply the storage schema and load ``state`` from the latest stored
    readings, retrying while InfluxDB is not ready; False if ``stop`` is set first. A
    non-retryable storage error (bad credentials, a refused statement) is raised."""
    attempt = 0
    while not stop.is_set():
        try:
            for statement in ensure_storage(influx, settings.storage_schema):
                log.info("storage schema: %s", statement)
            publish_places(influx, index)
            loaded = bootstrap_state(influx, index, state)
        except StorageError as exc:
            if not exc.retryable:
                raise
            log.warning("InfluxDB not ready: %s", exc)
            stop.wait(retry_delay(attempt))
            attempt += 1
            continue
        log.info("bootstrapped %d readings of state from InfluxDB", loaded)
        return True
    return False


def start_history(
    settings: IngestSettings, index: CityIndex, state: SensorState
) -> ReadingHistory | None:
    """Late-data memory, starting from the bootstrapped state (nothing before it can be
    recomputed: its predecessors are not in memory); None if it is switched off."""
    if settings.late_history_readings <= 0:
        return None
    history = ReadingHistory(
        n_sensors=index.n_sensors,
        capacity=settings.late_history_readings,
        horizon_ms=settings.late_horizon_s * 1000,
        min_span_ms=settings.rollup_bucket_s * 1000,
    )
    for ts, values in ((state.prev_ts, state.prev_values), (state.ts, state.values)):
        rows = np.flatnonzero(ts != NO_TIME).astype(np.int32)
        history.seed(rows, ts[rows], state.seq[rows], values[rows])
    return history
