"""``crowd_site``/``queue_site`` points and raw crowd and queue readings in the docs/schema.md
format for the read-API tests of conditions, crowds and queues."""

from __future__ import annotations

import time
from collections.abc import Mapping

from city import Registry
from cloud.influx import FieldValue, format_line, series_key

NOW_MS = int(time.time() * 1000)
FRESH_MS = NOW_MS - 30_000
OLD_MS = NOW_MS - 7_200_000


def site_lines(
    city: Registry, measurement: str, states: dict[str, dict[str, FieldValue]]
) -> list[str]:
    """``crowd_site``/``queue_site`` points: site tags from the registry, the given fields;
    the point time is the newest observation (``newest_ms``)."""
    lines = []
    for site_id, fields in states.items():
        site = city.sites[site_id]
        tags = {
            "site": site.id,
            "site_name": site.name,
            "site_kind": site.kind.value,
            "kelurahan": site.kelurahan,
            "kecamatan": city.kecamatan_of_kelurahan[site.kelurahan].code,
        }
        ts = fields["newest_ms"]
        assert isinstance(ts, int)
        lines.append(format_line(series_key(measurement, tags), fields, ts))
    return lines


def crowd(occupancy: int, capacity: int, *, gates: int, ts: int) -> dict[str, FieldValue]:
    return {
        "occupancy": occupancy,
        "capacity": capacity,
        "entries": occupancy + 100,
        "exits": 100,
        "gates": gates,
        "ratio": occupancy / capacity,
        "oldest_ms": ts - 2_000,
        "newest_ms": ts,
    }


def raw_lines(readings: Mapping[str, list[tuple[int, dict[str, FieldValue]]]]) -> list[str]:
    """Raw readings as the ingester stores them (docs/schema.md): one point per reading in the
    sensor kind's measurement, tagged by sensor, its fields and ``seq``."""
    lines = []
    for sensor_id, points in readings.items():
        kind = "queue" if sensor_id.startswith("q-") else "crowd"
        for seq, (ts, fields) in enumerate(points, start=1):
            lines.append(
                format_line(series_key(kind, {"sensor": sensor_id}), {**fields, "seq": seq}, ts)
            )
    return lines


def gate(occupancy: int, ts: int) -> list[tuple[int, dict[str, FieldValue]]]:
    return [(ts, {"entries": occupancy + 100, "exits": 100, "occupancy": occupancy})]


def kiosk(*readings: tuple[int, int, int]) -> list[tuple[int, dict[str, FieldValue]]]:
    """(ts, issued, served) readings of a kiosk with 9 counters open."""
    return [(ts, {"issued": i, "served": s, "counters_open": 9}) for ts, i, s in readings]
