"""Bed history from a real InfluxDB's bed_rollup points: daily buckets start at midnight in
Semarang (WIB, UTC+7), not at midnight UTC; each bucket holds the last rollup and the peak."""

from __future__ import annotations

import dataclasses
import time

import pytest
from fastapi.testclient import TestClient

from city import Registry
from cloud.influx import InfluxHTTP
from pantau.services import InfluxDB
from tests.api_beds_support import STATES, Beds, api, rollup_lines

pytestmark = pytest.mark.integration
__all__ = ["api"]  # the fixture, re-used

DAY = 86_400_000
WIB = 7 * 3_600_000
#: Local midnight (WIB) three days ago, as ms since the epoch.
D = (int(time.time() * 1000) + WIB) // DAY * DAY - WIB - 3 * DAY
HOUR = 3_600_000


def kariadi_icu(occupied: int) -> dict[str, Beds]:
    return {
        **STATES,
        "bed-kariadi-icu": dataclasses.replace(STATES["bed-kariadi-icu"], occupied=occupied),
    }


@pytest.fixture
def history(api: TestClient, influxdb: InfluxDB, city: Registry) -> TestClient:
    """City ICU occupancy 46 at 06:00 WIB on day D, 48 at 23:30 (still day D in Semarang,
    but day D+1 in UTC: 16:30Z), 50 at 00:30 WIB on day D+1."""
    with InfluxHTTP(url=influxdb.url) as influx:
        influx.write(rollup_lines(city, STATES, flush_ms=D + 6 * HOUR))
        influx.write(rollup_lines(city, kariadi_icu(20), flush_ms=D + 23 * HOUR + HOUR // 2))
        influx.write(rollup_lines(city, kariadi_icu(22), flush_ms=D + DAY + HOUR // 2))
    return api


def test_daily_buckets_start_at_local_midnight(history: TestClient) -> None:
    params = {"group": "icu", "from": str(D), "to": str(D + 2 * DAY), "interval": "1d"}
    resp = history.get("/v1/beds/history", params=params)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["level"], body["code"], body["name"], body["timezone"]) == (
        "kota",
        "33.74",
        "Kota Semarang",
        "WIB",
    )
    got = [(b["start_ms"], b["occupied"], b["occupied_max"], b["capacity"]) for b in body["items"]]
    # UTC days would have put 46 alone in one bucket and 48, 50 in the next.
    assert got == [(D, 48, 48, 62), (D + DAY, 50, 50, 62)]
    first = body["items"][0]
    assert first["start_local"].endswith("T00:00:00+07:00")
    assert first["bor"] == 48 * 100.0 / 62
    assert first["band"] == "high"


def test_hourly_buckets_and_a_single_bed_type(history: TestClient) -> None:
    params = {"bed_type": "26", "from": str(D), "to": str(D + DAY), "interval": "1h"}
    body = history.get("/v1/beds/history", params=params).json()
    assert [b["start_ms"] for b in body["items"]] == [D + 6 * HOUR, D + 23 * HOUR]
    assert body["bed_type"] == "26"


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"interval": "1s"}, 422),
        ({"interval": "1m"}, 422),
        ({"from": "yesterday"}, 422),
        ({"from": "2026-11-29T00:00:00"}, 422),  # no offset: whose midnight?
        ({"from": "2", "to": "1"}, 422),
        ({"level": "kecamatan", "code": "33.74.99"}, 404),
        ({"level": "kecamatan"}, 422),
    ],
)
def test_bad_ranges_and_codes_are_refused(
    history: TestClient, params: dict[str, str], status: int
) -> None:
    assert history.get("/v1/beds/history", params=params).status_code == status
