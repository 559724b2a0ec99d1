"""InfluxDB step 2: raw points tagged by sensor only (docs/adr/0028-raw-points-tagged-by-sensor.md).

Version 1 tagged every raw ``bed``/``crowd``/``queue`` point with its sensor's site, site
name, kelurahan, kecamatan (and ward, bed type, site kind or gate) and stored the derived
fields ``free`` (beds) and ``waiting`` (queues). Version 2 writes ``sensor`` as the only tag
and only what the device sent plus ``seq``.

The step copies every version-1 series onto its sensor-only series, one UTC day at a time, with
``SELECT <fields> INTO <same measurement> ... GROUP BY "sensor"`` (InfluxDB does the work; the
times are kept, the derived fields are left behind), in the raw policy and in the downsampled
one, and only then drops the version-1 series. A crash part-way re-runs the copy, which lands
on the same series and times (an overwrite, not a duplicate), and drops at the end.
"""

from __future__ import annotations

import logging

from cloud.influx import InfluxHTTP, ident
from cloud.storage_schema import DOWNSAMPLED_RP, RAW_RP, Measurement

log = logging.getLogger(__name__)

#: Every version-1 raw series has this tag; no version-2 series has it.
V1_TAG = "site"
_DAY_NS = 86_400 * 10**9


def _v1_where() -> str:
    return f"{ident(V1_TAG)} != ''"


#: The fields version 2 keeps, per policy and measurement. Written out, not taken from
#: cloud.storage_schema: a step must do tomorrow what it did the day it was released.
V2_FIELDS: dict[str, dict[Measurement, tuple[str, ...]]] = {
    RAW_RP: {
        Measurement.BED: ("capacity", "occupied", "suspect", "confirmed", "waiting", "seq"),
        Measurement.CROWD: ("entries", "exits", "occupancy", "seq"),
        Measurement.QUEUE: ("issued", "served", "counters_open", "seq"),
    },
    DOWNSAMPLED_RP: {
        Measurement.BED: (
            "capacity", "occupied", "occupied_max", "suspect", "confirmed", "waiting",
        ),
    },
}  # fmt: skip


def _fields(rp: str, measurement: Measurement) -> tuple[str, ...]:
    return V2_FIELDS[rp].get(measurement, ())


def _bound(influx: InfluxHTTP, source: str, field: str, selector: str) -> int | None:
    q = f"SELECT {selector}({ident(field)}) FROM {source} WHERE {_v1_where()}"  # noqa: S608
    for series in influx.query(q, epoch="ns"):
        for row in series.rows():
            return int(row["time"])
    return None


def copy_to_sensor_series(influx: InfluxHTTP, rp: str, measurement: Measurement) -> int:
    """Copy ``rp``'s version-1 points of ``measurement`` onto sensor-only series; returns the
    number of day chunks copied."""
    fields = _fields(rp, measurement)
    if not fields:
        return 0
    db = ident(influx.database)
    source = f"{db}.{ident(rp)}.{ident(measurement)}"
    # the first field every version-1 point of the policy has (raw: the device's first value)
    first = _bound(influx, source, fields[0], "first")
    last = _bound(influx, source, fields[0], "last")
    if first is None or last is None:
        return 0
    select = ", ".join(ident(f) for f in fields)
    chunks = 0
    for lo in range(first - first % _DAY_NS, last + 1, _DAY_NS):
        influx.execute(
            [
                f"SELECT {select} INTO {source} FROM {source} WHERE {_v1_where()} "  # noqa: S608
                f"AND time >= {lo} AND time < {lo + _DAY_NS} GROUP BY {ident('sensor')}"
            ]
        )
        chunks += 1
    return chunks


def raw_by_sensor(influx: InfluxHTTP) -> None:
    """Step 2: every version-1 raw point copied onto its sensor-only series, then the
    version-1 series dropped (from every policy: DROP SERIES is database-wide)."""
    policies = {
        str(row["name"])
        for series in influx.query(f"SHOW RETENTION POLICIES ON {ident(influx.database)}")
        for row in series.rows()
    }
    for measurement in V2_FIELDS[RAW_RP]:
        # a policy that was never made holds nothing to copy (and cannot be queried)
        for rp in (p for p in (RAW_RP, DOWNSAMPLED_RP) if p in policies):
            days = copy_to_sensor_series(influx, rp, measurement)
            if days:
                log.info("%s.%s: %d day(s) copied to sensor-only series", rp, measurement, days)
    influx.execute([f"DROP SERIES FROM {ident(m)} WHERE {_v1_where()}" for m in V2_FIELDS[RAW_RP]])
