"""Every error path of the read API answers ``{"detail": "..."}`` a person can act on, with
the right status: 400 conflicting filters, 404 unknown codes, 422 bad values, 503 no InfluxDB
(with a ``request_id`` too, see test_api_no_leaks.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from cloud.api import ApiSettings, create_app
from pantau.services import InfluxDB, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def api(influxdb: InfluxDB) -> Iterator[TestClient]:
    """The API over a running InfluxDB that has no database yet (the ingester never ran)."""
    with TestClient(create_app(ApiSettings(influx_url=influxdb.url))) as client:
        yield client


@pytest.fixture
def api_without_influxdb() -> Iterator[TestClient]:
    """The API pointed at a closed port."""
    settings = ApiSettings(influx_url=f"http://127.0.0.1:{free_port()}", influx_timeout_s=2)
    with TestClient(create_app(settings)) as client:
        yield client


def _error(client: TestClient, path: str, status: int) -> str:
    resp = client.get(path)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert list(body) == ["detail"]
    assert isinstance(body["detail"], str)
    return body["detail"]


def test_healthz_is_ok_when_influxdb_answers(api: TestClient) -> None:
    resp = api.get("/healthz")
    assert (resp.status_code, resp.json()) == (200, {"status": "ok", "influxdb": "ok"})


def test_before_any_data_every_bed_sensor_is_listed_empty_and_stale(api: TestClient) -> None:
    resp = api.get("/v1/beds")
    assert resp.status_code == 200
    items = resp.json()["items"]
    assert len(items) == 21
    assert all(i["capacity"] is None and i["stale"] for i in items)
    summary = api.get("/v1/beds/summary", params={"level": "kota"}).json()["items"]
    assert [(r["code"], r["capacity"], r["stale"]) for r in summary] == [("33.74", None, True)]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/beds?bed_type=99",
        "/v1/beds?bed_type=icu",
        "/v1/beds?bed_type=all",
        "/v1/beds/summary?bed_type=13",
    ],
)
def test_unknown_bed_type_is_422_naming_the_valid_codes(api: TestClient, path: str) -> None:
    detail = _error(api, path, 422)
    assert detail.startswith("unknown bed type")
    assert "26 (ICU tanpa tekanan negatif dengan ventilator)" in detail
    assert "34 (Isolasi perinatologi khusus COVID)" in detail


def test_bed_type_all_is_accepted_by_the_summary(api: TestClient) -> None:
    resp = api.get("/v1/beds/summary", params={"bed_type": "all", "level": "kecamatan"})
    assert resp.status_code == 200
    assert resp.json()["bed_type"] == "all"


@pytest.mark.parametrize(
    "path", ["/v1/beds?bed_type=26&group=icu", "/v1/beds/summary?bed_type=7&group=hcu"]
)
def test_bed_type_and_group_together_is_400(api: TestClient, path: str) -> None:
    assert "either bed_type or group" in _error(api, path, 400)


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/v1/beds?kecamatan=33.74.99", "no kecamatan '33.74.99' in Kota Semarang"),
        ("/v1/beds?kelurahan=33.74.01.9999", "no kelurahan '33.74.01.9999' in Kota Semarang"),
        ("/v1/beds?site=rs-nowhere", "no site 'rs-nowhere' in Kota Semarang"),
        ("/v1/beds/rs-nowhere", "no site 'rs-nowhere' in Kota Semarang"),
        ("/v1/beds/pasar-johar", "'pasar-johar' (Pasar Johar) is a market, which has no beds"),
    ],
)
def test_unknown_codes_are_404_naming_them(api: TestClient, path: str, named: str) -> None:
    assert named in _error(api, path, 404)


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/v1/beds/summary?level=city", "query parameter 'level'"),
        ("/v1/beds?group=ventilator", "query parameter 'group'"),
        ("/v1/beds/summary?facility=puskesmas", "query parameter 'facility'"),
    ],
)
def test_invalid_choices_are_422_with_a_readable_detail(
    api: TestClient, path: str, named: str
) -> None:
    detail = _error(api, path, 422)
    assert detail.startswith(named)
    assert "(got " in detail


def test_invalid_level_lists_the_valid_levels(api: TestClient) -> None:
    detail = _error(api, "/v1/beds/summary?level=city", 422)
    assert detail == (
        "query parameter 'level': Input should be 'site', 'rw', 'kelurahan', 'kecamatan', "
        "'kota' or 'provinsi' (got 'city')"
    )


@pytest.mark.parametrize(
    "path",
    [
        "/v1/beds",
        "/v1/beds/rs-kariadi",
        "/v1/beds/summary?level=kecamatan&group=icu",
        "/v1/conditions",
    ],
)
def test_unreachable_influxdb_is_503_with_a_clear_detail_and_a_request_id(
    api_without_influxdb: TestClient, path: str
) -> None:
    resp = api_without_influxdb.get(path)
    assert resp.status_code == 503
    assert resp.json() == {
        "detail": "the time-series store is unavailable; try again shortly",
        "request_id": resp.headers["x-request-id"],
    }


def test_healthz_is_503_without_influxdb_while_regions_still_answer(
    api_without_influxdb: TestClient,
) -> None:
    resp = api_without_influxdb.get("/healthz")
    assert (resp.status_code, resp.json()) == (
        503,
        {"status": "unavailable", "influxdb": "unreachable"},
    )
    regions = api_without_influxdb.get("/v1/regions")
    assert regions.status_code == 200
    body = regions.json()
    assert (body["kota"], body["provinsi"]) == (
        {"code": "33.74", "name": "Kota Semarang"},
        {"code": "33", "name": "Jawa Tengah"},
    )
    assert [k["code"] for k in body["kecamatan"]] == [
        "33.74.01",
        "33.74.02",
        "33.74.07",
        "33.74.08",
        "33.74.10",
        "33.74.16",
    ]
    candisari = body["kecamatan"][3]
    tegal = candisari["kelurahan"][0]
    assert tegal["rw"] == [
        {"code": "33.74.08.1001.03", "number": "03", "name": "RW 03, Kel. Tegal Sari"},
        {"code": "33.74.08.1001.07", "number": "07", "name": "RW 07, Kel. Tegal Sari"},
    ]
    assert tegal["sites"] == [
        {
            "id": "iso-tegalsari-rw03",
            "name": "Balai Warga Kel. Tegal Sari, RW 03",
            "kind": "isolation_centre",
            "rw": "03",
        }
    ]
