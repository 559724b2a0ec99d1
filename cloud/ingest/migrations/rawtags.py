"""InfluxDB step 2: raw points tagged by sensor only (docs/adr/0028-raw-points-tagged-by-sensor.md).

Version 1 tagged every raw ``bed``/``crowd``/``queue`` point with its sensor's site, site
name, kelurahan, kecamatan (and ward, bed type, site kind or gate) and stored the derived
fields ``free`` (beds) and ``waiting`` (queues). Version 2 writes ``sensor`` as the only tag
and only what the device sent plus ``seq``.

The step copies every version-1 series onto its sensor-only series with ``SELECT <fields>
INTO <same measurement> ... GROUP BY "sensor"`` (InfluxDB does the work; the times are kept,
the derived fields are left behind), in the raw policy and in the downsampled one, and only
then drops the version-1 series. Each statement copies one time span of at most about
:data:`CHUNK_POINTS` points (spans cut from per-bucket counts), so none runs into the HTTP
client's timeout however much a day holds. A crash part-way re-runs the copy, which lands on
the same series and times (an overwrite, not a duplicate), and drops at the end.
"""

from __future__ import annotations

import logging

from cloud.influx import InfluxHTTP, ident
from cloud.storage_schema import DOWNSAMPLED_RP, RAW_RP, Measurement

log = logging.getLogger(__name__)

#: Every version-1 raw series has this tag; no version-2 series has it.
V1_TAG = "site"
#: Points one SELECT INTO copies at most (unless one counting bucket alone holds more): a
#: second or two of InfluxDB's work, well inside the client's timeout.
CHUNK_POINTS = 100_000
#: Counting buckets: at least a minute, and no more than this many over the whole span.
_MAX_BUCKETS = 50_000
_MINUTE_NS = 60 * 10**9


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


def _spans(
    influx: InfluxHTTP, source: str, field: str, first: int, last: int, chunk_points: int
) -> list[tuple[int, int]]:
    """[start, end) time spans (ns) covering every version-1 point from ``first`` to ``last``,
    each holding about ``chunk_points`` points or fewer (or one counting bucket)."""
    minutes = (last - first) // _MINUTE_NS + 1
    bucket = _MINUTE_NS * max(1, -(-minutes // _MAX_BUCKETS))
    q = (
        f"SELECT count({ident(field)}) FROM {source} WHERE {_v1_where()} "  # noqa: S608
        f"AND time >= {first} AND time <= {last} GROUP BY time({bucket // 10**9}s) fill(none)"
    )
    spans: list[tuple[int, int]] = []
    start, held = None, 0
    for series in influx.query(q, epoch="ns"):
        for row in series.rows():
            t, n = int(row["time"]), int(row["count"])
            if start is None:
                start = t
            elif held + n > chunk_points and held:
                spans.append((start, t))
                start, held = t, 0
            held += n
    if start is not None:
        spans.append((start, last + 1))
    return spans


def copy_to_sensor_series(
    influx: InfluxHTTP, rp: str, measurement: Measurement, *, chunk_points: int = CHUNK_POINTS
) -> int:
    """Copy ``rp``'s version-1 points of ``measurement`` onto sensor-only series; returns the
    number of SELECT INTO statements it took."""
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
    spans = _spans(influx, source, fields[0], first, last, chunk_points)
    for lo, hi in spans:
        influx.execute(
            [
                f"SELECT {select} INTO {source} FROM {source} WHERE {_v1_where()} "  # noqa: S608
                f"AND time >= {lo} AND time < {hi} GROUP BY {ident('sensor')}"
            ]
        )
    return len(spans)


def raw_by_sensor(influx: InfluxHTTP, *, chunk_points: int = CHUNK_POINTS) -> None:
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
            n = copy_to_sensor_series(influx, rp, measurement, chunk_points=chunk_points)
            if n:
                log.info("%s.%s: copied to sensor-only series in %d part(s)", rp, measurement, n)
    influx.execute([f"DROP SERIES FROM {ident(m)} WHERE {_v1_where()}" for m in V2_FIELDS[RAW_RP]])
