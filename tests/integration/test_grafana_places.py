"""Raw points carry only their sensor (docs/adr/0028-raw-points-tagged-by-sensor.md): the
Grafana panels that read raw points still answer for the region, hospital or bed type chosen,
through the hidden place variables over ``sensor_place``. On a real InfluxDB 1.x with the
sample of tests/grafana_sample_support.py."""

from __future__ import annotations

import re

import pytest

from cloud.influx import InfluxHTTP
from tests.grafana_sample_support import query_rows as _rows
from tests.grafana_sample_support import sample_influx
from tests.grafana_support import dashboard_queries, dashboards, grafana_to_influxql

pytestmark = pytest.mark.integration


__all__ = ["sample_influx"]  # the fixture, re-used


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
    type still narrows the per-ward and per-gate panels to that region's sensors,
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

    gates = _selected(sample_influx, "crowds-queues", "gate_sensor", kecamatan="33.74.08")
    assert gates == "()"
    q = queries["crowds-queues: Gates now A"].replace("$gate_sensor", gates)
    assert _rows(sample_influx, grafana_to_influxql(q)) == []

    sites = _selected(sample_influx, "city-now", "bed_site", kecamatan="33.74.07")
    q = queries["city-now: ICU and isolation free beds per hospital A"].replace("$bed_site", sites)
    got = {r["name"]: r["icu_free"] for r in _rows(sample_influx, grafana_to_influxql(q))}
    assert got == {"RSUP Dr. Kariadi": 4}
