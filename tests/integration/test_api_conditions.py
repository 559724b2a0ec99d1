"""``/v1/conditions`` on a real InfluxDB: crowd status against health-protocol capacity and
queues, from ``crowd_site``/``queue_site`` points in the docs/schema.md format."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from city import Registry
from cloud.api import ApiSettings, create_app
from cloud.influx import InfluxHTTP
from pantau.services import InfluxDB
from tests.api_conditions_support import FRESH_MS, OLD_MS, crowd, site_lines

pytestmark = pytest.mark.integration


@pytest.fixture
def conditions(influxdb: InfluxDB, city: Registry) -> dict[str, Any]:
    with InfluxHTTP(url=influxdb.url) as influx:
        influx.ensure_database()
        influx.write(
            site_lines(
                city,
                "crowd_site",
                {
                    "pasar-johar": crowd(1260, 1500, gates=2, ts=FRESH_MS),
                    "simpang-lima": crowd(2600, 2500, gates=2, ts=FRESH_MS),
                    "pasar-peterongan": crowd(120, 600, gates=1, ts=OLD_MS),
                },
            )
        )
        influx.write(
            site_lines(
                city,
                "queue_site",
                {
                    "mpp-semarang": {
                        "waiting": 42,
                        "issued": 310,
                        "served": 268,
                        "counters_open": 9,
                        "kiosks": 1,
                        "wait_s": 840.0,
                        "oldest_ms": FRESH_MS,
                        "newest_ms": FRESH_MS,
                    },
                    # No service rate yet: wait_s is absent, as the schema allows.
                    "kec-candisari": {
                        "waiting": 3,
                        "issued": 3,
                        "served": 0,
                        "counters_open": 1,
                        "kiosks": 1,
                        "oldest_ms": OLD_MS,
                        "newest_ms": OLD_MS,
                    },
                },
            )
        )
    with TestClient(create_app(ApiSettings(influx_url=influxdb.url))) as client:
        resp = client.get("/v1/conditions")
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
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
    assert (johar["observed_at_ms"], johar["observed_at_oldest_ms"]) == (FRESH_MS, FRESH_MS - 2000)
    lapangan = crowd["simpang-lima"]
    assert lapangan["site_name"] == "Lapangan Pancasila (Simpang Lima)"
    assert (lapangan["percent"], lapangan["status"]) == (104.0, "over")
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
    assert (mpp["counters_open"], mpp["kiosks"], mpp["wait_s"], mpp["stale"]) == (
        9,
        1,
        840.0,
        False,
    )
    candisari = queues["kec-candisari"]
    assert (candisari["waiting"], candisari["wait_s"], candisari["stale"]) == (3, None, True)
    assert candisari["observed_at_ms"] == OLD_MS
    kariadi = queues["rs-kariadi"]
    assert (kariadi["waiting"], kariadi["stale"]) == (None, True)
