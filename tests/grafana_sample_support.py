"""A small realistic city state in exactly the docs/schema.md format, for the Grafana query
tests (tests/integration/test_grafana_*.py): raw points tagged by sensor only, the places of
their sensors in ``sensor_place`` (as the ingester writes them), rollups, statuses, health."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from cloud.influx import FieldValue, InfluxHTTP, format_line, ident, series_key
from cloud.storage_schema import META_RP
from pantau.services import InfluxDB

KECAMATAN_CANDISARI = "33.74.08"


def _point(
    measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], ts_ms: int
) -> str:
    return format_line(series_key(measurement, tags), fields, ts_ms)


def _raw(kind: str, place: dict[str, str], fields: dict[str, FieldValue], ts_ms: int) -> str:
    """A raw point as the ingester writes it (sensor only) and its place for sensor_place."""
    _PLACES[place["sensor"]] = {**place, "kind": kind}
    return _point(kind, {"sensor": place["sensor"]}, fields, ts_ms)


_PLACES: dict[str, dict[str, str]] = {}


def feed_schema_sample(influx: InfluxHTTP) -> None:
    """Write a small realistic city state (two readings minutes apart) in the schema's format,
    and where its sensors are (``sensor_place`` in ``pantau_meta``, as the ingester does)."""
    now = int(time.time() * 1000)
    lines: list[str] = []
    for age_min in (4, 1):
        ts = now - age_min * 60_000
        lines += [
            _raw(
                "bed",
                {
                    "sensor": "bed-kariadi-icu",
                    "site": "rs-kariadi",
                    "site_name": "RSUP Dr. Kariadi",
                    "site_kind": "hospital",
                    "ward": "ICU Lt. 3",
                    "bed_type": "26",
                    "kelurahan": "33.74.07.1001",
                    "kecamatan": "33.74.07",
                },
                {
                    "capacity": 24,
                    "occupied": 20,
                    "suspect": 3,
                    "confirmed": 9,
                    "waiting": 2,
                    "seq": 10 + age_min,
                },
                ts,
            ),
            _raw(
                "bed",
                {
                    "sensor": "bed-kariadi-hcu",
                    "site": "rs-kariadi",
                    "site_name": "RSUP Dr. Kariadi",
                    "site_kind": "hospital",
                    "ward": "HCU",
                    "bed_type": "7",
                    "kelurahan": "33.74.07.1001",
                    "kecamatan": "33.74.07",
                },
                {
                    "capacity": 6,
                    "occupied": 6,
                    "suspect": 0,
                    "confirmed": 0,
                    "waiting": 1,
                    "seq": 40 + age_min,
                },
                ts,
            ),
            _raw(
                "bed",
                {
                    "sensor": "bed-elisabeth-iso",
                    "site": "rs-elisabeth",
                    "site_name": "RS St. Elisabeth",
                    "site_kind": "hospital",
                    "ward": 'Ruang "Sehat" = 1, Lt. 2',
                    "bed_type": "28",
                    "kelurahan": "33.74.08.1002",
                    "kecamatan": KECAMATAN_CANDISARI,
                },
                {
                    "capacity": 8,
                    "occupied": 5,
                    "suspect": 1,
                    "confirmed": 2,
                    "waiting": 0,
                    "seq": 20 + age_min,
                },
                ts,
            ),
        ]
        for level, code, name, bed_type, capacity, occupied, facility in (
            ("kota", "33.74", "Kota Semarang", "all", 32, 25, "all"),
            ("kota", "33.74", "Kota Semarang", "26", 24, 20, "all"),
            ("kota", "33.74", "Kota Semarang", "28", 8, 5, "all"),
            ("kecamatan", "33.74.07", "Semarang Selatan", "all", 24, 20, "all"),
            ("kecamatan", KECAMATAN_CANDISARI, "Candisari", "all", 8, 5, "all"),
            ("site", "rs-kariadi", "RSUP Dr. Kariadi", "all", 30, 26, "all"),
            ("site", "rs-kariadi", "RSUP Dr. Kariadi", "26", 24, 20, "all"),
            ("site", "rs-kariadi", "RSUP Dr. Kariadi", "7", 6, 6, "all"),
            ("site", "rs-kariadi", "RSUP Dr. Kariadi", "26", 24, 20, "hospital"),
            ("site", "rs-kariadi", "RSUP Dr. Kariadi", "7", 6, 6, "hospital"),
            ("site", "rs-elisabeth", "RS St. Elisabeth", "all", 8, 5, "all"),
            ("site", "rs-elisabeth", "RS St. Elisabeth", "28", 8, 5, "all"),
            ("site", "rs-elisabeth", "RS St. Elisabeth", "28", 8, 5, "hospital"),
            # Other bed groups (HCU, general, emergency) so every group's alert query has data.
            ("kota", "33.74", "Kota Semarang", "7", 6, 6, "all"),
            ("kota", "33.74", "Kota Semarang", "3", 10, 4, "all"),
            ("kota", "33.74", "Kota Semarang", "32", 4, 1, "all"),
        ):
            lines.append(
                _point(
                    "bed_rollup",
                    {
                        "level": level,
                        "code": code,
                        "name": name,
                        "bed_type": bed_type,
                        "facility": facility,
                    },
                    {
                        "capacity": capacity,
                        "occupied": occupied,
                        "free": capacity - occupied,
                        "suspect": 0,
                        "confirmed": 0,
                        "waiting": 0,
                        "sensors": 1,
                        "bor": occupied * 100.0 / capacity,
                        "oldest_ms": ts - 5000,
                        "newest_ms": ts,
                    },
                    ts,
                )
            )
        lines += [
            _point(
                "crowd_site",
                {
                    "site": "pasar-peterongan",
                    "site_name": "Pasar Peterongan",
                    "site_kind": "market",
                    "kelurahan": "33.74.07.1003",
                    "kecamatan": "33.74.07",
                },
                {
                    "occupancy": 630,
                    "capacity": 600,
                    "entries": 4100,
                    "exits": 3470,
                    "gates": 1,
                    "ratio": 1.05,
                    "oldest_ms": ts,
                    "newest_ms": ts,
                },
                ts,
            ),
            _point(
                "queue_site",
                {
                    "site": "kec-candisari",
                    "site_name": "Kantor Kec. Candisari",
                    "site_kind": "office",
                    "kelurahan": "33.74.08.1002",
                    "kecamatan": KECAMATAN_CANDISARI,
                },
                {
                    "waiting": 3,
                    "issued": 12,
                    "served": 9,
                    "counters_open": 2,
                    "kiosks": 1,
                    "wait_s": 240.0,
                    "oldest_ms": ts,
                    "newest_ms": ts,
                },
                ts,
            ),
            _raw(
                "crowd",
                {
                    "sensor": "crowd-peterongan-1",
                    "site": "pasar-peterongan",
                    "site_name": "Pasar Peterongan",
                    "gate": "Gerbang Utara",
                    "kelurahan": "33.74.07.1003",
                    "kecamatan": "33.74.07",
                },
                {"entries": 4100, "exits": 3470, "occupancy": 630, "seq": 30 + age_min},
                ts,
            ),
            _point(
                "gateway_status",
                {"gateway": "gw-kariadi", "site": "rs-kariadi"},
                {
                    "online": 1,
                    "state": "online",
                    "spool_depth": 0,
                    "spool_dropped_total": 0,
                    "sensors": 1,
                    "sensors_silent": 0,
                },
                ts,
            ),
            _point(
                "gateway_status",
                {"gateway": "gw-johar", "site": "pasar-johar"},
                {
                    "online": 0,
                    "state": "offline",
                    "spool_depth": 140 - age_min,
                    "spool_dropped_total": 7,
                    "sensors": 3,
                    "sensors_silent": 3,
                },
                ts,
            ),
            # as the ingester writes them: 2 of Semarang Selatan's 3 bed sensors fresh
            _point(
                "region_freshness",
                {"level": "kecamatan", "code": "33.74.07", "name": "Semarang Selatan"}
                | {"kind": "bed"},
                {"sensors": 3, "reported": 3, "fresh": 2, "share": 2 / 3, "within_s": 600},
                ts,
            ),
            _point(
                "ingest_health",
                {"ingester": "pantau-ingest-1"},
                {
                    "readings": 120,
                    "messages": 30,
                    "dead_letters": 0,
                    "unacked": 2,
                    "readings_per_s": 12.0 / age_min,
                    "lag_p50_s": 0.5,
                    "lag_p99_s": 1.5 * age_min,
                    "lag_max_s": 2.0 * age_min,
                },
                ts,
            ),
            _point(
                "dead_letter",
                {"reason": "schema_violation", "gateway": "gw-kariadi"},
                {"count": 2, "topic": "pantau/v1/rs-kariadi/gw-kariadi/readings", "detail": "x"},
                ts,
            ),
        ]
    influx.write(lines)
    influx.execute(
        [f"CREATE RETENTION POLICY {ident(META_RP)} ON pantau DURATION INF REPLICATION 1"]
    )
    places = [_point("sensor_place", place, {"registered": 1}, 0) for place in _PLACES.values()]
    influx.write_to_policy(places, rp=META_RP)


@pytest.fixture
def sample_influx(influxdb: InfluxDB) -> Iterator[InfluxHTTP]:
    """The test InfluxDB holding :func:`feed_schema_sample`'s city."""
    with InfluxHTTP(url=influxdb.url, database="pantau") as influx:
        influx.ensure_database()
        feed_schema_sample(influx)
        yield influx


def query_rows(influx: InfluxHTTP, query: str) -> list[dict[str, Any]]:
    """Every row of every series ``query`` returns."""
    return [row for series in influx.query(query) for row in series.rows()]
