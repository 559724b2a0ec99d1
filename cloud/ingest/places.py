"""``sensor_place``: the registry's answer to "where is this sensor?", stored beside the data.

Raw points carry the sensor only (docs/adr/0028-raw-points-tagged-by-sensor.md). The API joins
site, region, ward and gate from its own registry; InfluxQL cannot join, so Grafana's variables
and its per-ward and per-gate panels read this measurement instead: one point per registry
sensor, its place as tags, at time 0 in the ``pantau_meta`` policy (duration INF, so it never
expires with the data). The ingester rewrites it at start and at every registry swap; a
series the registry no longer has (a sensor removed or moved) is dropped first, so a sensor
always has exactly one place. Cost: one line per sensor per start or reload, none per reading.
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


def place_lines(index: CityIndex) -> list[str]:
    """One ``sensor_place`` line per registry sensor, at time 0 (ms precision)."""
    return [
        format_line(series_key(Measurement.SENSOR_PLACE, tags), {"registered": 1}, 0)
        for tags in place_tags(index)
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
    stale = sorted(
        {t.get("sensor", "") for t in stored_places(influx) if tuple(sorted(t.items())) not in keep}
    )
    # Dropping by sensor removes its current series too; it is written again just below.
    influx.execute(
        [
            f"DROP SERIES FROM {ident(Measurement.SENSOR_PLACE)} WHERE "
            f"{ident('sensor')} = {literal(sensor)}"
            for sensor in stale
        ]
    )
    influx.write_to_policy(place_lines(index), rp=META_RP)
    if stale:
        log.info("sensor_place: %d moved or removed sensor(s) dropped", len(stale))
    return len(stale)
