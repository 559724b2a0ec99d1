"""The SIRANAP export (docs/siranap.md): RS Online's bed report layout per hospital, JSON and
CSV, with exact figures from the state the API holds (seeded here from a real InfluxDB that
holds tests/integration/test_api_beds.py's STATES)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from tests.api_beds_support import FRESH_MS, api

pytestmark = pytest.mark.integration
__all__ = ["api"]  # the fixture, re-used

#: FRESH_MS on a clock in Semarang (WIB, UTC+7), as RS Online writes tglupdate.
WIB = (datetime.fromtimestamp(FRESH_MS / 1000, tz=UTC) + timedelta(hours=7)).strftime(
    "%Y-%m-%d %H:%M:%S"
)
SILENT = dict.fromkeys(
    ("jumlah", "terpakai", "terpakai_suspek", "terpakai_konfirmasi", "kosong", "antrian")
)


def row(code: int, name: str, ward: str, covid: str, **figures: str | None) -> dict[str, object]:
    reported = figures.get("jumlah") is not None
    return {
        "id_tt": str(code),
        "tt": name,
        "ruang": ward,
        "jumlah_ruang": "1",
        **(figures if reported else SILENT),
        "prepare": "0",
        "prepare_plan": "0",
        "covid": covid,
        "tglupdate": WIB if reported else None,
        "stale": not reported,
    }


KARIADI = [
    row(5, "Kelas III", "Bangsal Kelas III, Lt. 2", "0"),
    row(
        7, "HCU", "HCU", "0",
        jumlah="16", terpakai="4", terpakai_suspek="0", terpakai_konfirmasi="0", kosong="12",
        antrian="0",
    ),
    row(
        24, "ICU tekanan negatif dengan ventilator", "ICU Tekanan Negatif", "1",
        jumlah="10", terpakai="9", terpakai_suspek="0", terpakai_konfirmasi="0", kosong="1",
        antrian="0",
    ),
    row(
        26, "ICU tanpa tekanan negatif dengan ventilator", "ICU Lt. 3", "1",
        jumlah="24", terpakai="18", terpakai_suspek="2", terpakai_konfirmasi="10", kosong="6",
        antrian="3",
    ),
    row(28, "Isolasi tekanan negatif", "Isolasi Paviliun Garuda", "1"),
]  # fmt: skip


def test_a_hospital_report_has_one_row_per_bed_type_in_the_rs_online_layout(
    api: TestClient,
) -> None:
    resp = api.get("/v1/siranap/rs-kariadi")
    assert resp.status_code == 200
    body = resp.json()
    assert (body["kode_rs"], body["nama_rs"], body["zona_waktu"]) == (
        "rs-kariadi",
        "RSUP Dr. Kariadi",
        "WIB",
    )
    assert body["items"] == KARIADI
    assert body["count"] == 5


def test_the_csv_has_the_same_rows_in_the_documented_column_order(api: TestClient) -> None:
    resp = api.get("/v1/siranap/rs-kariadi", params={"format": "csv"})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/csv; charset=utf-8"
    lines = list(csv.reader(io.StringIO(resp.text)))
    assert lines[0] == [
        "id_tt", "tt", "ruang", "jumlah_ruang", "jumlah", "terpakai", "terpakai_suspek",
        "terpakai_konfirmasi", "kosong", "antrian", "prepare", "prepare_plan", "covid",
        "tglupdate", "stale",
    ]  # fmt: skip
    assert lines[1] == ["5", "Kelas III", "Bangsal Kelas III, Lt. 2", "1"] + [""] * 6 + [
        "0",
        "0",
        "0",
        "",
        "true",
    ]
    assert lines[4] == [
        "26", "ICU tanpa tekanan negatif dengan ventilator", "ICU Lt. 3", "1", "24", "18", "2",
        "10", "6", "3", "0", "0", "1", WIB, "false",
    ]  # fmt: skip
    assert len(lines) == 6


def test_every_hospital_in_one_csv_led_by_its_code_and_name(api: TestClient) -> None:
    """The demo city's 5 hospitals have 15 bed types between them; isolation centres are not
    SIRANAP's."""
    body = api.get("/v1/siranap").json()
    assert [h["kode_rs"] for h in body["items"]] == [
        "rs-kariadi",
        "rsud-wongsonegoro",
        "rs-telogorejo",
        "rsud-tugurejo",
        "rs-elisabeth",
    ]
    lines = list(csv.reader(io.StringIO(api.get("/v1/siranap?format=csv").text)))
    assert lines[0][:3] == ["kode_rs", "nama_rs", "id_tt"]
    assert len(lines) - 1 == sum(h["count"] for h in body["items"])
    assert lines[1][:3] == ["rs-kariadi", "RSUP Dr. Kariadi", "5"]


@pytest.mark.parametrize(
    ("site", "detail"),
    [
        ("rs-nope", "no site 'rs-nope' in Kota Semarang"),
        (
            "iso-tegalsari-rw03",
            "site 'iso-tegalsari-rw03' (Balai Warga Kel. Tegal Sari, RW 03) is a "
            "isolation_centre; SIRANAP reports hospitals",
        ),
    ],
)
def test_only_hospitals_have_a_report(api: TestClient, site: str, detail: str) -> None:
    resp = api.get(f"/v1/siranap/{site}")
    assert (resp.status_code, resp.json()["detail"]) == (404, detail)
