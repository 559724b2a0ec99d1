"""Region freshness as data: per region, the share of sensors that reported within N minutes,
from the state seeded from a real InfluxDB holding tests/integration/test_api_beds.py's STATES
(7 bed sensors a minute old, RS Telogorejo's ICU an hour old, 13 of the 21 never)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api_beds_support import FRESH_MS, OLD_MS, api

pytestmark = pytest.mark.integration
__all__ = ["api"]  # the fixture, re-used


def test_the_city_share_of_bed_sensors_that_reported_in_15_minutes(api: TestClient) -> None:
    body = api.get("/v1/freshness", params={"level": "kota", "kind": "bed"}).json()
    assert (body["level"], body["kind"], body["within_s"], body["count"]) == (
        "kota",
        "bed",
        900.0,
        1,
    )
    assert body["items"] == [
        {
            "level": "kota",
            "code": "33.74",
            "name": "Kota Semarang",
            "sensors": 21,
            "fresh": 7,
            "reported": 8,
            "never": 13,
            "share": 7 / 21,
            "oldest_ms": OLD_MS,
            "newest_ms": FRESH_MS,
        }
    ]


def test_a_wider_window_counts_the_hour_old_ward_as_fresh(api: TestClient) -> None:
    params = {"level": "site", "kind": "bed", "within_min": "120"}
    rows = {r["code"]: r for r in api.get("/v1/freshness", params=params).json()["items"]}
    assert (rows["rs-telogorejo"]["fresh"], rows["rs-telogorejo"]["sensors"]) == (1, 3)
    narrow = {"level": "site", "kind": "bed", "within_min": "15"}
    rows = {r["code"]: r for r in api.get("/v1/freshness", params=narrow).json()["items"]}
    assert (rows["rs-telogorejo"]["fresh"], rows["rs-telogorejo"]["share"]) == (0, 0.0)
    assert rows["rs-kariadi"]["share"] == 3 / 5


def test_every_kind_counts_crowd_and_queue_sensors_too(api: TestClient) -> None:
    body = api.get("/v1/freshness", params={"level": "kota"}).json()
    [city] = body["items"]
    assert (city["sensors"], city["reported"]) == (21 + 6 + 3, 8)
