"""``crowd_site``/``queue_site`` points in the docs/schema.md format for the read-API tests of
conditions, crowds and queues."""

from __future__ import annotations

import time

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
