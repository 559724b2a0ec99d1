"""The read API on a real InfluxDB 1.x holding points in exactly the docs/schema.md format:
per-ward beds, per-site beds and BOR rollups, with exact numbers, staleness and names that
carry commas, dots, quotes and '='."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from city import Registry
from cloud.api import ApiSettings, create_app
from cloud.influx import InfluxHTTP
from pantau.services import InfluxDB
from tests.api_beds_support import FRESH_MS, NOW_MS, OLD_MS, STATES, Beds, api, bed_lines

pytestmark = pytest.mark.integration
__all__ = ["api"]  # the fixture, from tests/api_beds_support.py


def _get(client: TestClient, path: str, **params: str) -> Any:
    resp = client.get(path, params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _by(items: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {item[key]: item for item in items}


def test_a_ward_shows_its_latest_reading_with_bor_band_and_free_beds(api: TestClient) -> None:
    wards = _by(_get(api, "/v1/beds", site="rs-kariadi")["items"], "sensor")
    icu = wards["bed-kariadi-icu"]
    assert icu == {
        "sensor": "bed-kariadi-icu",
        "site": "rs-kariadi",
        "site_name": "RSUP Dr. Kariadi",
        "site_kind": "hospital",
        "kelurahan": "33.74.07.1001",
        "kecamatan": "33.74.07",
        "ward": "ICU Lt. 3",
        "bed_type": 26,
        "bed_type_name": "ICU tanpa tekanan negatif dengan ventilator",
        "bed_group": "icu",
        "capacity": 24,
        "occupied": 18,
        "free": 6,
        "suspect": 2,
        "confirmed": 10,
        "waiting": 3,
        "bor": 75.0,
        "band": "high",
        "observed_at": icu["observed_at"],
        "observed_at_ms": FRESH_MS,
        "stale": False,
    }
    assert icu["observed_at"].endswith(f".{FRESH_MS % 1000:03d}Z")
    assert wards["bed-kariadi-icu-np"]["bor"] == 90.0
    assert wards["bed-kariadi-icu-np"]["band"] == "critical"
    assert wards["bed-kariadi-hcu"]["band"] == "normal"
    assert list(wards) == [
        "bed-kariadi-icu",
        "bed-kariadi-icu-np",
        "bed-kariadi-hcu",
        "bed-kariadi-iso",
        "bed-kariadi-k3",
    ]


def test_silent_wards_are_listed_with_nulls_and_stale(api: TestClient) -> None:
    items = _get(api, "/v1/beds")["items"]
    assert len(items) == 21  # every bed sensor of the demo city
    silent = _by(items, "sensor")["bed-kariadi-k3"]
    assert silent["ward"] == "Bangsal Kelas III, Lt. 2"
    assert (silent["capacity"], silent["occupied"], silent["bor"], silent["band"]) == (
        None,
        None,
        None,
        None,
    )
    assert (silent["observed_at"], silent["observed_at_ms"], silent["stale"]) == (None, None, True)
    assert sum(1 for i in items if i["observed_at_ms"] is None) == 21 - len(STATES)


def test_an_old_reading_is_stale_but_keeps_its_values(api: TestClient) -> None:
    ward = _by(_get(api, "/v1/beds", site="rs-telogorejo")["items"], "sensor")["bed-telogorejo-icu"]
    assert (ward["occupied"], ward["free"], ward["bor"], ward["band"]) == (10, 0, 100.0, "critical")
    assert (ward["observed_at_ms"], ward["stale"]) == (OLD_MS, True)


def test_stale_limit_comes_from_the_settings(influxdb: InfluxDB, city: Registry) -> None:
    with InfluxHTTP(url=influxdb.url) as influx:
        influx.ensure_database()
        influx.write(bed_lines(city, {"bed-wongso-icu": Beds(12, 6, ts=NOW_MS - 120_000)}))
    settings = ApiSettings(influx_url=influxdb.url, stale_after_s=60)
    with TestClient(create_app(settings)) as client:
        body = _get(client, "/v1/beds", site="rsud-wongsonegoro", bed_type="26")
    assert body["stale_after_s"] == 60.0
    assert [(w["sensor"], w["occupied"], w["stale"]) for w in body["items"]] == [
        ("bed-wongso-icu", 6, True)
    ]


def test_filters_by_group_facility_kecamatan_kelurahan_and_bed_type(api: TestClient) -> None:
    icu = _get(api, "/v1/beds", group="icu")["items"]
    assert sorted(w["sensor"] for w in icu) == [
        "bed-elisabeth-icu",
        "bed-kariadi-icu",
        "bed-kariadi-icu-np",
        "bed-telogorejo-icu",
        "bed-tugurejo-icu",
        "bed-wongso-icu",
    ]
    iso = _get(api, "/v1/beds", facility="isolation_centre")["items"]
    assert [w["sensor"] for w in iso] == [
        "bed-iso-tegalsari",
        "bed-iso-kauman",
        "bed-iso-tembalang",
    ]
    candisari = _get(api, "/v1/beds", kecamatan="33.74.08")["items"]
    assert sorted(w["sensor"] for w in candisari) == [
        "bed-elisabeth-hcu",
        "bed-elisabeth-icu",
        "bed-elisabeth-k1",
        "bed-iso-tegalsari",
    ]
    kel = _get(api, "/v1/beds", kelurahan="33.74.08.1001", facility="hospital")["items"]
    assert kel == []
    hcu = _get(api, "/v1/beds", bed_type="7", kecamatan="33.74.07")["items"]
    assert [(w["sensor"], w["capacity"], w["free"]) for w in hcu] == [("bed-kariadi-hcu", 16, 12)]


def test_names_with_commas_quotes_and_equals_survive(api: TestClient) -> None:
    tegal = _get(api, "/v1/beds", site="iso-tegalsari-rw03")["items"]
    assert [(w["site_name"], w["bor"], w["band"]) for w in tegal] == [
        ("Balai Warga Kel. Tegal Sari, RW 03", 70.0, "high")
    ]
    kauman = _get(api, "/v1/beds/iso-kauman-rw05")
    assert kauman["site_name"] == 'Rumah Isolasi "Kauman Sehat" RW 05'
    assert [(w["ward"], w["site_name"]) for w in kauman["items"]] == [
        ('Ruang "Sehat" = 1', 'Rumah Isolasi "Kauman Sehat" RW 05')
    ]
    sites = _by(
        _get(api, "/v1/beds/summary", level="site", facility="isolation_centre")["items"], "code"
    )
    assert sites["iso-tegalsari-rw03"]["name"] == "Balai Warga Kel. Tegal Sari, RW 03"
    assert sites["iso-kauman-rw05"]["name"] == 'Rumah Isolasi "Kauman Sehat" RW 05'
    rws = _by(_get(api, "/v1/beds/summary", level="rw")["items"], "code")
    assert rws["33.74.08.1001.03"]["name"] == "RW 03, Kel. Tegal Sari"
    assert (rws["33.74.08.1001.03"]["capacity"], rws["33.74.08.1001.03"]["occupied"]) == (10, 7)


def test_one_site_lists_its_wards_with_totals_over_reported_wards(api: TestClient) -> None:
    body = _get(api, "/v1/beds/rs-kariadi")
    assert (body["site"], body["site_name"], body["site_kind"]) == (
        "rs-kariadi",
        "RSUP Dr. Kariadi",
        "hospital",
    )
    assert (body["kelurahan"], body["kecamatan"]) == ("33.74.07.1001", "33.74.07")
    assert len(body["items"]) == 5
    # Reported: ICU 24/18, ICU-NP 10/9, HCU 16/4 -> 50 beds, 31 occupied, 19 free, 62 %.
    assert body["totals"] == {
        "capacity": 50,
        "occupied": 31,
        "free": 19,
        "bor": 62.0,
        "band": "high",
    }


def test_summary_by_kota_sums_the_icu_group(api: TestClient) -> None:
    body = _get(api, "/v1/beds/summary", level="kota", group="icu")
    assert (body["level"], body["group"], body["bed_type"], body["facility"]) == (
        "kota",
        "icu",
        None,
        "all",
    )
    assert body["bed_types"] == [6, 8, 9, 10, 11, 24, 25, 26, 27, 30, 31]
    [row] = body["items"]
    assert row == {
        "code": "33.74",
        "name": "Kota Semarang",
        "capacity": 62,
        "occupied": 46,
        "free": 16,
        "suspect": 2,
        "confirmed": 10,
        "waiting": 3,
        "sensors": 5,
        "bor": 46 * 100.0 / 62,
        "band": "high",
        "observed_at_oldest": row["observed_at_oldest"],
        "observed_at_oldest_ms": OLD_MS,
        "observed_at_newest": row["observed_at_newest"],
        "observed_at_newest_ms": FRESH_MS,
        "stale": True,  # RS Telogorejo's ICU has been silent for an hour
    }


def test_summary_all_bed_types_by_kecamatan_includes_isolation_centres(api: TestClient) -> None:
    rows = _by(_get(api, "/v1/beds/summary", level="kecamatan")["items"], "code")
    # Every kecamatan with bed sensors is listed, in code order; Semarang Utara has none.
    assert list(rows) == ["33.74.01", "33.74.07", "33.74.08", "33.74.10", "33.74.16"]
    # Candisari: RS St. Elisabeth ICU 6/3 + Balai Warga Tegal Sari 10/7.
    candisari = rows["33.74.08"]
    assert (candisari["name"], candisari["capacity"], candisari["occupied"]) == (
        "Candisari",
        16,
        10,
    )
    assert (candisari["free"], candisari["bor"], candisari["band"], candisari["stale"]) == (
        6,
        62.5,
        "high",
        False,
    )
    # Semarang Tengah: RS Telogorejo ICU 10/10 (stale) + Rumah Isolasi Kauman 8/2.
    tengah = rows["33.74.01"]
    assert (tengah["capacity"], tengah["occupied"], tengah["sensors"], tengah["stale"]) == (
        18,
        12,
        2,
        True,
    )
    # Tugu: a hospital whose wards never reported: listed, empty and stale.
    tugu = rows["33.74.16"]
    assert (tugu["name"], tugu["capacity"], tugu["bor"], tugu["stale"]) == (
        "Tugu",
        None,
        None,
        True,
    )


def test_summary_by_facility_and_single_bed_type(api: TestClient) -> None:
    hosp = _get(api, "/v1/beds/summary", level="kota", facility="hospital")["items"]
    # Hospitals only: 24+10+16+12+10+6 = 78 beds, 18+9+4+6+10+3 = 50 occupied.
    assert [(r["capacity"], r["occupied"], r["free"]) for r in hosp] == [(78, 50, 28)]
    iso = _get(api, "/v1/beds/summary", level="provinsi", facility="isolation_centre")
    assert [
        (r["code"], r["name"], r["capacity"], r["occupied"], r["bor"]) for r in iso["items"]
    ] == [("33", "Jawa Tengah", 18, 9, 50.0)]
    isolasi = _get(api, "/v1/beds/summary", level="kecamatan", bed_type="12")
    assert isolasi["bed_type"] == "12"
    assert [(r["code"], r["capacity"], r["occupied"], r["stale"]) for r in isolasi["items"]] == [
        ("33.74.01", 8, 2, False),
        ("33.74.08", 10, 7, False),
        ("33.74.10", None, None, True),
    ]
    sites = _by(_get(api, "/v1/beds/summary", level="site")["items"], "code")
    assert (sites["rs-kariadi"]["capacity"], sites["rs-kariadi"]["stale"]) == (50, False)
    assert (sites["rs-telogorejo"]["bor"], sites["rs-telogorejo"]["stale"]) == (100.0, True)
