"""The city state the read-API tests put into a real InfluxDB, as points in exactly the
docs/schema.md format: per-ward ``bed`` points and ``bed_rollup`` points computed by a slow
reference of the ingester's aggregation, and the API over them (fixture ``api``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from city import Level, Registry
from cloud.api import ApiSettings, create_app
from cloud.influx import FieldValue, InfluxHTTP, format_line, series_key
from pantau.services import InfluxDB

NOW_MS = int(time.time() * 1000)
FRESH_MS = NOW_MS - 60_000  # a minute old: well inside the 900 s default
OLD_MS = NOW_MS - 3_600_000  # an hour old: stale
ROLLUP_LEVELS = ("site", "rw", "kelurahan", "kecamatan", "kota", "provinsi")


@dataclass(frozen=True)
class Beds:
    """A bed sensor's state: beds, occupied, suspect, confirmed, waiting, observation time."""

    capacity: int
    occupied: int
    suspect: int = 0
    confirmed: int = 0
    waiting: int = 0
    ts: int = FRESH_MS


# The city state the tests read back. ICU group (6, 8-11, 24-27, 30, 31) over the city:
# 24+10+12+10+6 = 62 beds, 18+9+6+10+3 = 46 occupied.
STATES: dict[str, Beds] = {
    "bed-kariadi-icu": Beds(24, 18, suspect=2, confirmed=10, waiting=3),
    "bed-kariadi-icu-np": Beds(10, 9),
    "bed-kariadi-hcu": Beds(16, 4),
    "bed-wongso-icu": Beds(12, 6),
    "bed-telogorejo-icu": Beds(10, 10, ts=OLD_MS),
    "bed-elisabeth-icu": Beds(6, 3),
    "bed-iso-tegalsari": Beds(10, 7, suspect=2, confirmed=5, waiting=1),
    "bed-iso-kauman": Beds(8, 2, confirmed=2),
}


def bed_lines(city: Registry, states: dict[str, Beds]) -> list[str]:
    """``bed`` points for the given sensors exactly as docs/schema.md: tagged by sensor only,
    the device's fields and ``seq``."""
    lines = []
    for seq, (sensor_id, st) in enumerate(states.items()):
        fields: dict[str, FieldValue] = {
            "capacity": st.capacity,
            "occupied": st.occupied,
            "suspect": st.suspect,
            "confirmed": st.confirmed,
            "waiting": st.waiting,
            "seq": seq,
        }
        lines.append(
            format_line(series_key("bed", {"sensor": city.sensors[sensor_id].id}), fields, st.ts)
        )
    return lines


def bed_lines_v1(city: Registry, states: dict[str, Beds]) -> list[str]:
    """``bed`` points as InfluxDB layout version 1 stored them (before ADR 0028): every place
    tag of the sensor and the derived ``free``."""
    lines = []
    for seq, (sensor_id, st) in enumerate(states.items()):
        sensor = city.sensors[sensor_id]
        site = city.sites[sensor.site]
        tags = {
            "sensor": sensor.id,
            "site": site.id,
            "site_name": site.name,
            "site_kind": site.kind.value,
            "ward": str(sensor.ward),
            "bed_type": str(sensor.bed_type),
            "kelurahan": site.kelurahan,
            "kecamatan": city.kecamatan_of_kelurahan[site.kelurahan].code,
        }
        fields: dict[str, FieldValue] = {
            "capacity": st.capacity,
            "occupied": st.occupied,
            "free": st.capacity - st.occupied,
            "suspect": st.suspect,
            "confirmed": st.confirmed,
            "waiting": st.waiting,
            "seq": seq,
        }
        lines.append(format_line(series_key("bed", tags), fields, st.ts))
    return lines


def rollup_lines(city: Registry, states: dict[str, Beds], *, flush_ms: int) -> list[str]:
    """``bed_rollup`` points as the ingester's aggregation defines them (a slow reference:
    every level x code x bed type (code and ``all``) x facility (kind and ``all``))."""
    sums: dict[tuple[str, str, str, str, str], dict[str, int]] = {}
    for sensor_id, st in states.items():
        sensor = city.sensors[sensor_id]
        site = city.sites[sensor.site]
        for level in ROLLUP_LEVELS:
            if level == "site":
                code, name = site.id, site.name
            else:
                region = city.region(site.id, Level(level))
                if region is None:
                    continue
                code, name = region.code, region.name
            for bed_type in (str(sensor.bed_type), "all"):
                for facility in (site.kind.value, "all"):
                    acc = sums.setdefault(
                        (level, code, name, bed_type, facility),
                        dict.fromkeys(
                            ("capacity", "occupied", "free", "suspect", "confirmed", "waiting"),
                            0,
                        )
                        | {"sensors": 0, "oldest_ms": st.ts, "newest_ms": st.ts},
                    )
                    acc["capacity"] += st.capacity
                    acc["occupied"] += st.occupied
                    acc["free"] += st.capacity - st.occupied
                    acc["suspect"] += st.suspect
                    acc["confirmed"] += st.confirmed
                    acc["waiting"] += st.waiting
                    acc["sensors"] += 1
                    acc["oldest_ms"] = min(acc["oldest_ms"], st.ts)
                    acc["newest_ms"] = max(acc["newest_ms"], st.ts)
    lines = []
    for (level, code, name, bed_type, facility), acc in sums.items():
        tags = {
            "level": level,
            "code": code,
            "name": name,
            "bed_type": bed_type,
            "facility": facility,
        }
        fields: dict[str, FieldValue] = dict(acc)
        if acc["capacity"] > 0:
            fields["bor"] = acc["occupied"] * 100.0 / acc["capacity"]
        lines.append(format_line(series_key("bed_rollup", tags), fields, flush_ms))
    return lines


@pytest.fixture
def api(influxdb: InfluxDB, city: Registry) -> Iterator[TestClient]:
    """The API over InfluxDB holding STATES (plus an older, superseded reading)."""
    with InfluxHTTP(url=influxdb.url) as influx:
        influx.ensure_database()
        # An earlier reading of the same ward: the API must show the latest, not this one.
        influx.write(bed_lines(city, {"bed-kariadi-icu": Beds(24, 1, ts=FRESH_MS - 30_000)}))
        influx.write(bed_lines(city, STATES))
        influx.write(rollup_lines(city, STATES, flush_ms=NOW_MS - 5_000))
    with TestClient(create_app(ApiSettings(influx_url=influxdb.url))) as client:
        yield client
