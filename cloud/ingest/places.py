"""``sensor_place``: the registry's answer to "where is this sensor?", stored beside the data.

Raw points carry the sensor only (docs/adr/0028-raw-points-tagged-by-sensor.md). The API joins
site, region, ward and gate from its own registry; InfluxQL cannot join, so Grafana's variables
and its per-ward and per-gate panels read this measurement instead: one point per registry
sensor, its place as tags, at time 0 in the ``pantau_meta`` policy (duration INF, so it never
expires with the data). The ingester brings it up to date at start and at every registry
swap: a series the registry no longer has (a sensor removed or moved) is dropped first, so a
sensor always has exactly one place, and only missing lines are written. Cost: one query per
start or reload, a line per new or moved sensor, none per reading.
"""

from __future__ import annotations

import logging

from cloud.influx import InfluxHTTP, format_line, ident, literal, series_key
from cloud.ingest.topology import CityIndex
from cloud.storage_schema import META_RP, Measurement
from contract import SensorKind

log = logging.getLogger(__name__)


def place_tags(index: CityIndex) -> list[dict[str, str]]:
    """The ``sensor_place`` tags of every registry sensor, in registry order."""
    reg = index.registry
    out = []
    for sensor in reg.doc.sensors:
        site = reg.sites[sensor.site]
        tags = {
            "sensor": sensor.id,
            "kind": sensor.kind.value,
            "site": site.id,
            "site_name": site.name,
            "site_kind": site.kind.value,
            "kelurahan": site.kelurahan,
            "kecamatan": reg.kecamatan_of_kelurahan[site.kelurahan].code,
        }
        if sensor.kind is SensorKind.BED:
            tags.update(ward=str(sensor.ward), bed_type=str(sensor.bed_type))
        elif sensor.kind is SensorKind.CROWD and sensor.gate:
            tags["gate"] = sensor.gate
        out.append(tags)
    return out


def place_lines_of(places: list[dict[str, str]]) -> list[str]:
    """The ``sensor_place`` lines of these tag sets, at time 0 (ms precision)."""
    return [
        format_line(series_key(Measurement.SENSOR_PLACE, tags), {"registered": 1}, 0)
        for tags in places
    ]


def stored_places(influx: InfluxHTTP) -> list[dict[str, str]]:
    """The tag sets ``sensor_place`` holds now."""
    source = f"{ident(META_RP)}.{ident(Measurement.SENSOR_PLACE)}"
    q = f"SELECT last(registered) FROM {source} GROUP BY *"  # noqa: S608
    # GROUP BY * names every tag key of the measurement, "" where a series has none
    return [{k: v for k, v in s.tags.items() if v} for s in influx.query(q)]


def publish_places(influx: InfluxHTTP, index: CityIndex) -> int:
    """Make ``sensor_place`` say exactly what ``index``'s registry says; returns how many
    stale series were dropped. Needs the ``pantau_meta`` policy (made by the migrations) and
    WRITE on the database (the least-privilege writer has it)."""
    wanted = place_tags(index)
    keep = {tuple(sorted(t.items())) for t in wanted}
    stored = {tuple(sorted(t.items())) for t in stored_places(influx)}
    stale = sorted({dict(t).get("sensor", "") for t in stored - keep})
    # Dropping by sensor removes its current series too; it is written again just below.
    influx.execute(
        [
            f"DROP SERIES FROM {ident(Measurement.SENSOR_PLACE)} WHERE "
            f"{ident('sensor')} = {literal(sensor)}"
            for sensor in stale
        ]
    )
    # Only what is missing: an unchanged registry writes nothing at a start (a province's
    # 8 000 lines per member per start would be written for nothing).
    gone = set(stale)
    missing = [t for t in wanted if t["sensor"] in gone or tuple(sorted(t.items())) not in stored]
    if missing:
        influx.write_to_policy(place_lines_of(missing), rp=META_RP)
    if stale:
        log.info("sensor_place: %d moved or removed sensor(s) dropped", len(stale))
    return len(stale)
