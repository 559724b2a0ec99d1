"""Every InfluxQL query Grafana will run (panels, template variables, alert rules) works against
data in exactly the docs/schema.md format, on a real InfluxDB 1.x, and the panels compute the
numbers an officer reads. tests/e2e/test_city_pipeline.py runs the same queries against what
the real pipeline wrote.

``feed_schema_sample`` writes that data."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cloud.influx import FieldValue, InfluxHTTP, format_line, ident, series_key
from cloud.storage_schema import META_RP
from pantau.services import InfluxDB
from tests.grafana_support import (
    EMPTY_WHEN_HEALTHY,
    alert_queries,
    dashboard_queries,
    dashboards,
    grafana_to_influxql,
)

pytestmark = pytest.mark.integration

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
    with InfluxHTTP(url=influxdb.url, database="pantau") as influx:
        influx.ensure_database()
        feed_schema_sample(influx)
        yield influx


def _rows(influx: InfluxHTTP, query: str) -> list[dict[str, Any]]:
    return [row for series in influx.query(query) for row in series.rows()]


def test_every_panel_and_alert_query_returns_rows(sample_influx: InfluxHTTP) -> None:
    """One server for all queries: starting InfluxDB per query would dominate the run time.
    Alert thresholds are tested in test_grafana_alerts.py."""
    queries = dashboard_queries() + alert_queries()
    assert len(queries) == 39 + 19
    empty = [name for name, q in queries if not _rows(sample_influx, grafana_to_influxql(q))]
    assert empty == sorted(EMPTY_WHEN_HEALTHY)


def test_panels_compute_the_numbers_an_officer_reads(sample_influx: InfluxHTTP) -> None:
    queries = dict(dashboard_queries())

    def rows(name: str) -> list[dict[str, Any]]:
        return _rows(sample_influx, grafana_to_influxql(queries[f"city-now: {name}"]))

    (city,) = rows("City BOR (all beds, all facilities) A")
    assert city["BOR"] == pytest.approx(25 * 100 / 32)
    (online,) = rows("Gateways online A")
    assert online["online"] == 1
    free = {r["bed_type"]: r["free"] for r in rows("Free beds by bed type (city) A")}
    assert free == {"26": 4, "28": 3, "7": 0, "3": 6, "32": 3}
    bor = {r["name"]: r["bor"] for r in rows("BOR by kecamatan A")}
    assert bor == {"Semarang Selatan": pytest.approx(83.333333), "Candisari": 62.5}
    icu = {r["name"]: r["icu_free"] for r in rows("ICU and isolation free beds per hospital A")}
    assert icu == {"RSUP Dr. Kariadi": 4}
    iso = {
        r["name"]: r["isolation_free"] for r in rows("ICU and isolation free beds per hospital B")
    }
    assert iso == {"RS St. Elisabeth": 3}
    (crowd,) = rows("Crowd occupancy vs health-protocol capacity A")
    assert (crowd["site_name"], crowd["ratio"]) == ("Pasar Peterongan", 1.05)
    (queue,) = rows("Queues: waiting and estimated wait A")
    assert (queue["waiting"], queue["wait_s"], queue["counters_open"]) == (3, 240.0, 2)
    dead = rows("Dead letters by reason A")
    assert sum(r["count"] for r in dead) == 4
    assert {r["reason"] for r in dead} == {"schema_violation"}


def test_platform_health_reads_ingest_gateways_and_freshness(sample_influx: InfluxHTTP) -> None:
    queries = dict(dashboard_queries())

    def rows(name: str) -> list[dict[str, Any]]:
        return _rows(sample_influx, grafana_to_influxql(queries[f"platform-health: {name}"]))

    (rate,) = rows("Ingest rate A")
    assert rate["readings/s"] == 12.0
    (lag,) = rows("Ingest lag p99 A")
    assert lag["lag p99"] == 1.5
    (offline,) = rows("Gateways offline A")
    assert offline["offline"] == 1
    gateways = {r["gateway"]: r for r in rows("Gateways now A")}
    assert (gateways["gw-johar"]["spool_depth"], gateways["gw-johar"]["dropped"]) == (139, 7)
    assert gateways["gw-johar"]["silent"] == 3
    (fresh,) = rows("Bed sensors reporting within 10 min A")
    assert fresh["fresh"] == 3


def test_hospital_detail_shows_each_ward_and_bed_group(sample_influx: InfluxHTTP) -> None:
    queries = dict(dashboard_queries())

    def rows(name: str) -> list[dict[str, Any]]:
        return _rows(sample_influx, grafana_to_influxql(queries[f"hospital-detail: {name}"]))

    wards = {r["sensor"]: (r["capacity"], r["occupied"], r["free"]) for r in rows("Wards now A")}
    assert wards == {
        "bed-kariadi-icu": (24, 20, 4),
        "bed-kariadi-hcu": (6, 6, 0),
        "bed-elisabeth-iso": (8, 5, 3),
    }
    (icu,) = rows("Free ICU, HCU and isolation beds A")
    assert icu["icu"] == 4
    (hcu,) = rows("Free ICU, HCU and isolation beds B")
    assert hcu["hcu"] == 0
    (iso,) = rows("Free ICU, HCU and isolation beds C")
    assert iso["isolation"] == 3


def test_the_variables_list_codes_and_filter_panels(sample_influx: InfluxHTTP) -> None:
    boards = dashboards()
    variables = {v["name"]: v for v in boards["hospital-detail"]["templating"]["list"]}
    values = {r["value"] for r in _rows(sample_influx, variables["kecamatan"]["query"])}
    assert values == {"33.74.07", KECAMATAN_CANDISARI}
    bed_types = {r["value"] for r in _rows(sample_influx, variables["bed_type"]["query"])}
    assert bed_types == {"26", "28", "7"}
    site_query = variables["site"]["query"].replace("$kecamatan", re.escape(KECAMATAN_CANDISARI))
    assert {r["value"] for r in _rows(sample_influx, site_query)} == {"rs-elisabeth"}
    # Grafana regex-escapes a selected value before putting it in /^$kecamatan$/.
    query = dict(dashboard_queries())["city-now: BOR by kecamatan A"]
    selected = grafana_to_influxql(query.replace("$kecamatan", re.escape(KECAMATAN_CANDISARI)))
    assert [r["name"] for r in _rows(sample_influx, selected)] == ["Candisari"]
    free = dict(dashboard_queries())["city-now: Free beds by bed type (city) A"]
    only_28 = grafana_to_influxql(free.replace("$bed_type", "28"))
    assert [r["bed_type"] for r in _rows(sample_influx, only_28)] == ["28"]


def _selected(influx: InfluxHTTP, board: str, name: str, **chosen: str) -> str:
    """A hidden place variable's value as Grafana fills it with All selected: the values its
    query returns for the chosen variables, as the regex alternation ``(a|b)``, each value
    regex-escaped."""
    (variable,) = [v for v in dashboards()[board]["templating"]["list"] if v["name"] == name]
    query = variable["query"]
    for var, value in chosen.items():
        query = query.replace(f"${var}", re.escape(value))
    values = sorted(r["value"] for r in _rows(influx, grafana_to_influxql(query)))
    return "(" + "|".join(re.escape(v) for v in values) + ")"


def test_raw_panels_answer_for_the_chosen_region_through_sensor_place(
    sample_influx: InfluxHTTP,
) -> None:
    """Raw points carry only their sensor (ADR 0028): choosing a kecamatan, hospital or bed
    type still narrows the per-ward, per-gate and freshness panels to that region's sensors,
    because the hidden place variables turn the choice into sensors."""
    queries = dict(dashboard_queries())
    wards = _selected(sample_influx, "hospital-detail", "ward_sensor", kecamatan="33.74.08")
    assert wards == r"(bed\-elisabeth\-iso)"
    q = queries["hospital-detail: Wards now A"].replace("$ward_sensor", wards)
    got = {r["sensor"]: r["free"] for r in _rows(sample_influx, grafana_to_influxql(q))}
    assert got == {"bed-elisabeth-iso": 3}
    icu_only = _selected(
        sample_influx, "hospital-detail", "ward_sensor", site="rs-kariadi", bed_type="26"
    )
    assert icu_only == r"(bed\-kariadi\-icu)"

    bed = _selected(sample_influx, "platform-health", "bed_sensor", kecamatan="33.74.07")
    q = queries["platform-health: Bed sensors reporting within 10 min A"]
    (fresh,) = _rows(sample_influx, grafana_to_influxql(q.replace("$bed_sensor", bed)))
    assert fresh["fresh"] == 2

    gates = _selected(sample_influx, "crowds-queues", "gate_sensor", kecamatan="33.74.08")
    assert gates == "()"
    q = queries["crowds-queues: Gates now A"].replace("$gate_sensor", gates)
    assert _rows(sample_influx, grafana_to_influxql(q)) == []

    sites = _selected(sample_influx, "city-now", "bed_site", kecamatan="33.74.07")
    q = queries["city-now: ICU and isolation free beds per hospital A"].replace("$bed_site", sites)
    got = {r["name"]: r["icu_free"] for r in _rows(sample_influx, grafana_to_influxql(q))}
    assert got == {"RSUP Dr. Kariadi": 4}
