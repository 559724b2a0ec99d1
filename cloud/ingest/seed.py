"""Seeding a :class:`SensorState` from what InfluxDB stored: the ingester does it at start-up
and so does the read API (cloud/api/state.py), so both start from the same state. No I/O of its
own: the caller passes the client."""

from __future__ import annotations

import numpy as np

from cloud.influx import InfluxHTTP, latest_query
from cloud.ingest.aggregate import SensorState
from cloud.ingest.topology import MAX_FIELDS, CityIndex
from cloud.storage_schema import RAW
from contract import KIND_CODES, KIND_FIELDS, SensorKind


def bootstrap_state(influx: InfluxHTTP, index: CityIndex, state: SensorState) -> int:
    """Load each sensor's latest stored reading (and a kiosk's previous one, for its service
    rate) from InfluxDB into ``state``; returns how many readings were loaded."""
    sensors: list[int] = []
    ts: list[int] = []
    seq: list[int] = []
    values: list[list[int]] = []
    for kind in SensorKind:
        limit = 2 if kind is SensorKind.QUEUE else 1
        q = latest_query(RAW[kind], group_by=["sensor"], limit=limit)
        for series in influx.query(q):
            pos = index.sensor_pos.get(series.tags.get("sensor", ""))
            if pos is None or index.sensor_kind[pos] != KIND_CODES[kind]:
                continue  # a sensor since removed from the registry
            for row in series.rows():
                fields = [row.get(name) for name in KIND_FIELDS[kind]]
                if any(not isinstance(v, int) for v in fields) or not isinstance(row["time"], int):
                    continue
                sensors.append(pos)
                ts.append(row["time"])
                seq.append(row["seq"] if isinstance(row.get("seq"), int) else 0)
                values.append([int(v or 0) for v in fields] + [0] * (MAX_FIELDS - len(fields)))
    if sensors:
        state.update(
            np.array(sensors, dtype=np.int32),
            np.array(ts, dtype=np.int64),
            np.array(seq, dtype=np.int64),
            np.array(values, dtype=np.int64).reshape(-1, MAX_FIELDS),
        )
    return len(sensors)
