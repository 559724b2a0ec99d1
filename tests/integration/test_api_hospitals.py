"""Hospitals and isolation centres: registry data (address and coordinates where the registry
has them, null where not) and each site's beds now, with exact figures from the state seeded
from a real InfluxDB holding tests/integration/test_api_beds.py's STATES."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api_beds_support import FRESH_MS, api

pytestmark = pytest.mark.integration
__all__ = ["api"]  # the fixture, re-used


def test_a_hospital_has_its_address_coordinates_and_beds_per_group(api: TestClient) -> None:
    body = api.get("/v1/hospitals/rs-kariadi").json()
    assert body == {
        "id": "rs-kariadi",
        "name": "RSUP Dr. Kariadi",
        "kind": "hospital",
        "address": "Jl. Dr. Sutomo No. 16, Semarang",
        "phone": None,
        "lat": -6.9936,
        "lon": 110.4075,
        "kelurahan": {"code": "33.74.07.1001", "name": "Kel. Randusari"},
        "kecamatan": {"code": "33.74.07", "name": "Semarang Selatan"},
        "rw": None,
        "wards": 5,
        "capacity": 50,
        "occupied": 31,
        "free": 19,
        "waiting": 3,
        "bor": 62.0,
        "band": "high",
        "groups": [
            {"group": "icu", "capacity": 34, "occupied": 27, "free": 7, "waiting": 3},
            {"group": "hcu", "capacity": 16, "occupied": 4, "free": 12, "waiting": 0},
            # Isolasi Paviliun Garuda and Kelas III never reported
            {
                "group": "isolation",
                "capacity": None,
                "occupied": None,
                "free": None,
                "waiting": None,
            },
            {"group": "general", "capacity": None, "occupied": None, "free": None, "waiting": None},
        ],
        "observed_at_newest": body["observed_at_newest"],
        "observed_at_newest_ms": FRESH_MS,
        "stale": False,
    }


def test_hospitals_and_isolation_centres_are_listed_apart_with_region_filters(
    api: TestClient,
) -> None:
    hospitals = api.get("/v1/hospitals").json()
    assert hospitals["count"] == 5
    assert [h["id"] for h in hospitals["items"]][:2] == ["rs-kariadi", "rsud-wongsonegoro"]
    # a registry without coordinates says so: null, not 0
    wongso = hospitals["items"][1]
    assert (wongso["address"], wongso["lat"], wongso["lon"]) == (None, None, None)
    iso = api.get("/v1/isolation-centres").json()
    assert [i["id"] for i in iso["items"]] == [
        "iso-tegalsari-rw03",
        "iso-kauman-rw05",
        "iso-tembalang-rw11",
    ]
    tegalsari = iso["items"][0]
    assert (tegalsari["capacity"], tegalsari["free"], tegalsari["rw"]) == (10, 3, "03")
    only = api.get("/v1/hospitals", params={"kecamatan": "33.74.07"}).json()
    assert [h["id"] for h in only["items"]] == ["rs-kariadi"]
    assert api.get("/v1/hospitals", params={"kelurahan": "33.74.99.9999"}).status_code == 404


def test_a_market_is_not_a_bed_place(api: TestClient) -> None:
    resp = api.get("/v1/hospitals/pasar-johar")
    assert (resp.status_code, resp.json()["detail"]) == (
        404,
        "site 'pasar-johar' (Pasar Johar) is a market, which has no beds",
    )
