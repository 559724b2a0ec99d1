"""``/v1/conditions`` from memory: the API seeds its state from the raw crowd and queue readings
a real InfluxDB holds (as the ingester stored them) and answers crowd status against
health-protocol capacity and queues with the ingester's own per-site math, never from the
``crowd_site``/``queue_site`` points (a decoy point here says otherwise, and must not show)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from city import Registry
from cloud.api import ApiSettings, create_app
from cloud.influx import InfluxHTTP
from pantau.services import InfluxDB
from tests.api_conditions_support import (
    FRESH_MS,
    NOW_MS,
    OLD_MS,
    crowd,
    gate,
    kiosk,
    raw_lines,
    site_lines,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def conditions(influxdb: InfluxDB, city: Registry) -> dict[str, Any]:
    with InfluxHTTP(url=influxdb.url) as influx:
        influx.ensure_database()
        influx.write(
            raw_lines(
                {
                    "crowd-johar-utara": gate(700, FRESH_MS - 2_000),
                    "crowd-johar-selatan": gate(560, FRESH_MS),
                    "crowd-simpanglima-barat": gate(1400, FRESH_MS),
                    "crowd-simpanglima-timur": gate(1200, FRESH_MS),
                    "crowd-peterongan": gate(120, OLD_MS),
                    # 30 tickets served in the minute before: 0.5 a second, 42 waiting: 84 s.
                    "q-mpp": kiosk((FRESH_MS - 60_000, 290, 238), (FRESH_MS, 310, 268)),
                    # One reading: no service rate yet, so no wait.
                    "q-candisari": kiosk((OLD_MS, 3, 0)),
                }
            )
        )
        # A decoy: the API must answer from the readings (memory), not from stored rollups.
        influx.write(
            site_lines(city, "crowd_site", {"pasar-johar": crowd(9, 1500, gates=2, ts=NOW_MS)})
        )
    with TestClient(create_app(ApiSettings(influx_url=influxdb.url))) as client:
        resp = client.get("/v1/conditions")
        alone = (client.get("/v1/crowds").json(), client.get("/v1/queues").json())
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    body["alone"] = alone
    return body


def test_crowd_status_is_high_from_80_percent_and_over_at_capacity(
    conditions: dict[str, Any],
) -> None:
    crowd = {c["site"]: c for c in conditions["crowd"]["items"]}
    assert list(crowd) == ["pasar-johar", "simpang-lima", "pasar-peterongan", "kota-lama"]
    johar = crowd["pasar-johar"]
    assert (johar["occupancy"], johar["capacity"], johar["ratio"], johar["percent"]) == (
        1260,
        1500,
        0.84,
        84.0,
    )
    assert (johar["status"], johar["gates"], johar["stale"]) == ("high", 2, False)
    assert (johar["entries"], johar["exits"]) == (1460, 200)
    assert (johar["observed_at_ms"], johar["observed_at_oldest_ms"]) == (FRESH_MS, FRESH_MS - 2000)
    lapangan = crowd["simpang-lima"]
    assert lapangan["site_name"] == "Lapangan Pancasila (Simpang Lima)"
    assert (lapangan["occupancy"], lapangan["percent"], lapangan["status"]) == (2600, 104.0, "over")
    assert (crowd["pasar-peterongan"]["status"], crowd["pasar-peterongan"]["stale"]) == (
        "normal",
        True,
    )


def test_a_crowd_site_without_data_is_listed_with_its_capacity_and_stale(
    conditions: dict[str, Any],
) -> None:
    kota_lama = next(c for c in conditions["crowd"]["items"] if c["site"] == "kota-lama")
    assert kota_lama["site_name"] == "Kawasan Kota Lama, Tanjung Mas"
    assert (kota_lama["capacity"], kota_lama["occupancy"], kota_lama["status"]) == (
        1200,
        None,
        None,
    )
    assert (kota_lama["observed_at"], kota_lama["stale"]) == (None, True)


def test_queues_show_waiting_counters_and_estimated_wait(conditions: dict[str, Any]) -> None:
    queues = {q["site"]: q for q in conditions["queues"]["items"]}
    assert list(queues) == ["rs-kariadi", "mpp-semarang", "kec-candisari"]
    mpp = queues["mpp-semarang"]
    assert (mpp["waiting"], mpp["issued"], mpp["served"]) == (42, 310, 268)
    assert (mpp["counters_open"], mpp["kiosks"], mpp["wait_s"], mpp["wait_min"]) == (9, 1, 84.0, 2)
    assert (mpp["stale"], conditions["queues"]["time_scale"]) == (False, 1.0)
    candisari = queues["kec-candisari"]
    assert (candisari["waiting"], candisari["wait_s"], candisari["stale"]) == (3, None, True)
    assert candisari["observed_at_ms"] == OLD_MS
    kariadi = queues["rs-kariadi"]
    assert (kariadi["waiting"], kariadi["stale"]) == (None, True)


def test_conditions_lists_are_those_of_crowds_and_queues(conditions: dict[str, Any]) -> None:
    """One builder: /v1/conditions holds exactly the items of /v1/crowds and /v1/queues."""
    crowds, queues = conditions["alone"]
    assert conditions["crowd"]["items"] == crowds["items"]
    assert conditions["queues"]["items"] == queues["items"]
