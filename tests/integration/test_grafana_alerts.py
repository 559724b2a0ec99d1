"""Each provisioned alert rule, evaluated the way Grafana 11 does (tests/grafana_alert_eval.py)
against points on a real InfluxDB that cross its threshold and points that stay just short."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from cloud.influx import FieldValue, InfluxHTTP, format_line, series_key
from contract.beds import BOR_CRITICAL, BOR_HIGH
from contract.errors import RejectReason
from pantau.services import InfluxDB
from tests.grafana_alert_eval import RuleRun, evaluate_condition
from tests.grafana_support import alert_rules

pytestmark = pytest.mark.integration

MIN = 60_000
#: Evaluations start here: two hours ago, whole minute, so every point is in the past.
T0 = (int(time.time() * 1000) - 2 * 3_600_000) // MIN * MIN


def rule(uid: str) -> dict[str, Any]:
    (found,) = [r for r in alert_rules() if r["uid"] == uid]
    return found


def point(measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], ts: int) -> str:
    return format_line(series_key(measurement, tags), fields, ts)


@pytest.fixture
def influx(influxdb: InfluxDB) -> Iterator[InfluxHTTP]:
    with InfluxHTTP(url=influxdb.url, database="pantau") as client:
        client.ensure_database()
        yield client


def _rollup(code: str, bed_type: str, capacity: int, occupied: int, ts: int) -> str:
    tags = {"level": "kecamatan", "code": code, "name": f"Kec {code}", "bed_type": bed_type}
    fields: dict[str, FieldValue] = {
        "capacity": capacity,
        "occupied": occupied,
        "bor": occupied * 100.0 / capacity,
    }
    return point("bed_rollup", {**tags, "facility": "all"}, fields, ts)


def test_bor_rules_fire_per_bed_group_and_region_at_the_contract_bands(
    influx: InfluxHTTP,
) -> None:
    """ICU BOR is occupied/capacity over the ICU codes only (26 and 6 here): 59 % stays
    normal, 60 % is high, 80 % is high and critical; a full general ward (code 3) in the same
    kecamatan does not count. Both bands hold for 5 minutes before they alert."""
    lines = []
    for ts in (T0, T0 + 5 * MIN):
        lines += [
            # 59 %: 30+29 of 50+50
            _rollup("k-59", "26", 50, 30, ts),
            _rollup("k-59", "6", 50, 29, ts),
            _rollup("k-59", "3", 10, 10, ts),
            # 60 % exactly
            _rollup("k-60", "26", 40, 24, ts),
            _rollup("k-60", "6", 10, 6, ts),
            # 80 % exactly
            _rollup("k-80", "26", 5, 4, ts),
        ]
    influx.write(lines)
    high = RuleRun(influx=influx, rule=rule("pantau-bor-icu-high"))
    critical = RuleRun(influx=influx, rule=rule("pantau-bor-icu-critical"))
    first = high.evaluate(T0)
    assert first == {
        "code=k-59,level=kecamatan,name=Kec k-59": "Normal",
        "code=k-60,level=kecamatan,name=Kec k-60": "Pending",
        "code=k-80,level=kecamatan,name=Kec k-80": "Pending",
    }
    assert high.evaluate(T0 + 5 * MIN) == {
        "code=k-59,level=kecamatan,name=Kec k-59": "Normal",
        "code=k-60,level=kecamatan,name=Kec k-60": "Alerting",
        "code=k-80,level=kecamatan,name=Kec k-80": "Alerting",
    }
    critical.evaluate(T0)
    assert critical.evaluate(T0 + 5 * MIN) == {
        "code=k-59,level=kecamatan,name=Kec k-59": "Normal",
        "code=k-60,level=kecamatan,name=Kec k-60": "Normal",
        "code=k-80,level=kecamatan,name=Kec k-80": "Alerting",
    }
    _, steps = evaluate_condition(influx, rule("pantau-bor-icu-high"), now_ms=T0, loaded=set())
    assert sorted(steps["B"].values()) == [59.0, BOR_HIGH, BOR_CRITICAL]


def test_the_all_beds_rule_reads_the_rollup_bor_of_kecamatan_and_city(influx: InfluxHTTP) -> None:
    tags = {"bed_type": "all", "facility": "all"}
    influx.write(
        [
            point(
                "bed_rollup",
                {**tags, "level": "kota", "code": "33.74", "name": "Kota"},
                {"bor": 81.0},
                T0,
            ),
            point(
                "bed_rollup",
                {**tags, "level": "kecamatan", "code": "k1", "name": "K1"},
                {"bor": 79.9},
                T0,
            ),
            point(
                "bed_rollup",
                {**tags, "level": "site", "code": "rs-x", "name": "RS X"},
                {"bor": 99.0},
                T0,
            ),
        ]
    )
    run = RuleRun(influx=influx, rule=rule("pantau-bor-all-critical"))
    run.evaluate(T0)
    assert run.evaluate(T0 + 5 * MIN) == {
        "code=33.74,level=kota,name=Kota": "Alerting",
        "code=k1,level=kecamatan,name=K1": "Normal",
    }


def test_a_crowd_alerts_after_5_minutes_over_capacity_and_clears_only_below_recovery(
    influx: InfluxHTTP,
) -> None:
    """Hysteresis: once alerting, dipping to 0.95 (under 1.0, over the 0.9 recovery level) does
    not resolve it, so a crowd hovering at capacity does not flap; 0.85 does. A site hovering
    at 0.95-0.99 never fires."""
    hover = [0.95, 1.05, 1.05, 1.05, 1.05, 1.05, 1.05, 0.95, 0.95, 1.02, 0.85, 0.85]
    steady = [0.95, 0.99, 0.97, 0.99, 0.96, 0.99, 0.98, 0.99, 0.95, 0.99, 0.97, 0.99]
    lines = []
    for i, (a, b) in enumerate(zip(hover, steady, strict=True)):
        lines.append(
            point("crowd_site", {"site": "pasar", "site_name": "Pasar"}, {"ratio": a}, T0 + i * MIN)
        )
        lines.append(
            point("crowd_site", {"site": "mall", "site_name": "Mall"}, {"ratio": b}, T0 + i * MIN)
        )
    influx.write(lines)
    run = RuleRun(influx=influx, rule=rule("pantau-crowd-over-capacity"))
    states = [run.evaluate(T0 + i * MIN) for i in range(len(hover))]
    assert [s["site=pasar,site_name=Pasar"] for s in states] == [
        "Normal", "Pending", "Pending", "Pending", "Pending", "Pending",
        "Alerting", "Alerting", "Alerting", "Alerting", "Normal", "Normal",
    ]  # fmt: skip
    assert {s["site=mall,site_name=Mall"] for s in states} == {"Normal"}


def test_ingest_stalled_fires_when_an_ingester_stores_nothing_or_writes_no_health(
    influx: InfluxHTTP,
) -> None:
    """An ingester whose windows store no reading for 10 minutes alerts after 5 more; with no
    ingest_health point at all the rule has no data, which it treats as alerting."""
    run = RuleRun(influx=influx, rule=rule("pantau-ingest-stalled"))
    _, steps = evaluate_condition(influx, run.rule, now_ms=T0, loaded=set())
    assert steps["C"] == {}
    assert run.rule["noDataState"] == "Alerting"
    lines = []
    for i in range(16):
        busy = {"ingester": "ing-1"}, {"readings": 5, "readings_per_s": 0.5}
        idle = {"ingester": "ing-2"}, {"readings": 0, "readings_per_s": 0.0}
        lines += [
            point("ingest_health", *busy, T0 + i * MIN),
            point("ingest_health", *idle, T0 + i * MIN),
        ]
    influx.write(lines)
    run.evaluate(T0 + 10 * MIN)
    assert run.evaluate(T0 + 15 * MIN) == {"ingester=ing-1": "Normal", "ingester=ing-2": "Alerting"}


def test_gateway_offline_spool_growing_and_dropping(influx: InfluxHTTP) -> None:
    gw_a, gw_b = {"gateway": "gw-a", "site": "s-a"}, {"gateway": "gw-b", "site": "s-b"}
    influx.write(
        [
            point(
                "gateway_status",
                gw_a,
                {"online": 1, "spool_depth": 10, "spool_dropped_total": 5},
                T0 - 10 * MIN,
            ),
            point(
                "gateway_status",
                gw_a,
                {"online": 1, "spool_depth": 110, "spool_dropped_total": 5},
                T0,
            ),
            point(
                "gateway_status",
                gw_b,
                {"online": 1, "spool_depth": 10, "spool_dropped_total": 5},
                T0 - 10 * MIN,
            ),
            point(
                "gateway_status",
                gw_b,
                {"online": 0, "spool_depth": 111, "spool_dropped_total": 8},
                T0,
            ),
        ]
    )
    a, b = "gateway=gw-a,site=s-a", "gateway=gw-b,site=s-b"
    offline = RuleRun(influx=influx, rule=rule("pantau-gateway-offline"))
    assert offline.evaluate(T0) == {a: "Normal", b: "Pending"}
    assert offline.evaluate(T0 + 5 * MIN) == {a: "Normal", b: "Alerting"}
    growing = RuleRun(influx=influx, rule=rule("pantau-spool-growing"))
    # Growth in 15 min: gw-a 100 (not more than 100), gw-b 101.
    assert growing.evaluate(T0) == {a: "Normal", b: "Pending"}
    assert growing.evaluate(T0 + 4 * MIN) == {a: "Normal", b: "Pending"}
    assert growing.evaluate(T0 + 5 * MIN) == {a: "Normal", b: "Alerting"}
    dropping = RuleRun(influx=influx, rule=rule("pantau-spool-dropping"))
    assert dropping.evaluate(T0) == {a: "Normal", b: "Alerting"}


def test_dead_letters_alert_from_10_per_reason_in_10_minutes(influx: InfluxHTTP) -> None:
    lines = []
    for i in range(10):
        tags = {"reason": RejectReason.SCHEMA_VIOLATION.value, "gateway": "gw-a"}
        lines.append(point("dead_letter", tags, {"count": 1}, T0 - i * 50_000))
    for i in range(9):
        tags = {"reason": RejectReason.INVALID_JSON.value, "gateway": f"gw-{i}"}
        lines.append(point("dead_letter", tags, {"count": 1}, T0 - i * 50_000))
    # Older than the 10-minute window: not counted.
    old = {"reason": RejectReason.INVALID_JSON.value, "gateway": "gw-old"}
    lines.append(point("dead_letter", old, {"count": 5}, T0 - 11 * MIN))
    influx.write(lines)
    run = RuleRun(influx=influx, rule=rule("pantau-dead-letters-rate"))
    assert run.evaluate(T0) == {
        "reason=schema_violation": "Alerting",
        "reason=invalid_json": "Normal",
    }


def test_a_bed_sensor_silent_for_5_to_10_minutes_alerts_by_its_sensor_id(
    influx: InfluxHTTP,
) -> None:
    """Raw points carry only their sensor (ADR 0028), so freshness is judged per sensor: a
    sensor seen in the last hour with no reading in the current 5-minute bucket is Pending,
    and Alerting once that has lasted 5 minutes; a sensor with a reading in the bucket has no
    alert whatever older readings it has."""
    now = T0 - T0 % (5 * MIN) + 3 * MIN  # 3 minutes into a 5-minute bucket
    ages = {"bed-a": 1 * MIN, "bed-b": 2 * MIN, "bed-c": 4 * MIN, "bed-d": 30 * MIN}
    lines = [point("bed", {"sensor": s}, {"seq": 1}, now - a) for s, a in ages.items()]
    lines.append(point("bed", {"sensor": "bed-a"}, {"seq": 0}, now - 40 * MIN))
    lines.append(point("bed", {"sensor": "bed-gone"}, {"seq": 0}, now - 2 * 60 * MIN))
    influx.write(lines)
    run = RuleRun(influx=influx, rule=rule("pantau-sensor-silent"))
    got = run.evaluate(now)
    assert {k: v for k, v in got.items() if v != "Normal"} == {
        "sensor=bed-c": "Pending",
        "sensor=bed-d": "Pending",
    }
    assert got["sensor=bed-a"] == got["sensor=bed-b"] == "Normal"
    assert "sensor=bed-gone" not in got
    later = run.evaluate(now + 5 * MIN)
    assert (later["sensor=bed-c"], later["sensor=bed-d"]) == ("Alerting", "Alerting")


def test_region_freshness_alerts_below_80_percent_including_a_region_gone_dark(
    influx: InfluxHTTP,
) -> None:
    """The ingester's region_freshness share per kecamatan (cloud/ingest/freshness_points.py):
    4 of 5 bed sensors fresh (80 %) is fine, 3 of 5 is Pending and then Alerting after 5
    minutes, a kecamatan gone dark (0 of 2) alerts too; crowd freshness and other levels are
    not this rule's business."""
    plan = {"k80": (4, 5), "k60": (3, 5), "dark": (0, 2)}
    lines = []
    for ts in (T0 - MIN, T0 + 4 * MIN):
        for code, (fresh, sensors) in plan.items():
            fields: dict[str, FieldValue] = {"sensors": sensors, "fresh": fresh}
            fields["share"] = fresh / sensors
            tags = {"level": "kecamatan", "code": code, "name": f"Kec {code}", "kind": "bed"}
            lines.append(point("region_freshness", tags, fields, ts))
            lines.append(point("region_freshness", tags | {"kind": "crowd"}, fields, ts))
            lines.append(point("region_freshness", tags | {"level": "site"}, fields, ts))
    influx.write(lines)
    run = RuleRun(influx=influx, rule=rule("pantau-region-stale"))
    assert run.evaluate(T0) == {
        "code=k80,name=Kec k80": "Normal",
        "code=k60,name=Kec k60": "Pending",
        "code=dark,name=Kec dark": "Pending",
    }
    later = run.evaluate(T0 + 5 * MIN)
    assert (later["code=k60,name=Kec k60"], later["code=dark,name=Kec dark"]) == (
        "Alerting",
        "Alerting",
    )
    assert later["code=k80,name=Kec k80"] == "Normal"
