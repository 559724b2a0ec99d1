"""Every InfluxQL query Grafana will run (panels, template variables, alert rules) works against
data in exactly the docs/schema.md format, on a real InfluxDB 1.x, and the panels compute the
numbers an officer reads. tests/e2e/test_city_pipeline.py runs the same queries against what
the real pipeline wrote.

``tests.grafana_sample_support.feed_schema_sample`` writes that data."""

from __future__ import annotations

import re
from typing import Any

import pytest

from cloud.influx import InfluxHTTP
from tests.grafana_sample_support import KECAMATAN_CANDISARI, sample_influx
from tests.grafana_sample_support import query_rows as _rows
from tests.grafana_support import (
    EMPTY_WHEN_HEALTHY,
    alert_queries,
    dashboard_queries,
    dashboards,
    grafana_to_influxql,
)

pytestmark = pytest.mark.integration


__all__ = ["sample_influx"]  # the fixture, re-used


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
    assert (fresh["name"], fresh["fresh"], fresh["sensors"]) == ("Semarang Selatan", 2, 3)
    assert fresh["share"] == 2 / 3


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
