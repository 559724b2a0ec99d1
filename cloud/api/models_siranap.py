"""Response models of the SIRANAP export (``/v1/siranap``); docs/siranap.md has the layout."""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field

from cloud.api.models import _List, _Out


class ExportFormat(StrEnum):
    """How an export is sent."""

    JSON = "json"
    CSV = "csv"


#: Column order of the CSV (and of each JSON row).
SIRANAP_FIELDS: tuple[str, ...] = (
    "id_tt",
    "tt",
    "ruang",
    "jumlah_ruang",
    "jumlah",
    "terpakai",
    "terpakai_suspek",
    "terpakai_konfirmasi",
    "kosong",
    "antrian",
    "prepare",
    "prepare_plan",
    "covid",
    "tglupdate",
    "stale",
)


class SiranapRow(_Out):
    """One bed type of one hospital, as RS Online / SIRANAP reports it (values as strings).
    Figures are null when no ward of the type has reported."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "id_tt": "26",
                    "tt": "ICU tanpa tekanan negatif dengan ventilator",
                    "ruang": "ICU Lt. 3",
                    "jumlah_ruang": "1",
                    "jumlah": "24",
                    "terpakai": "18",
                    "terpakai_suspek": "2",
                    "terpakai_konfirmasi": "10",
                    "kosong": "6",
                    "antrian": "3",
                    "prepare": "0",
                    "prepare_plan": "0",
                    "covid": "1",
                    "tglupdate": "2026-11-29 10:00:00",
                    "stale": False,
                }
            ]
        },
    )

    id_tt: str = Field(description="SIRANAP bed type code")
    tt: str = Field(description="bed type name")
    ruang: str = Field(description="ward names of this bed type, '; '-separated")
    jumlah_ruang: str = Field(description="number of wards (bed sensors) of this type")
    jumlah: str | None = Field(description="beds (capacity)")
    terpakai: str | None = Field(description="beds occupied")
    terpakai_suspek: str | None = Field(description="occupied by suspect COVID-19 patients")
    terpakai_konfirmasi: str | None = Field(description="occupied by confirmed COVID-19 patients")
    kosong: str | None = Field(description="free beds (jumlah - terpakai)")
    antrian: str | None = Field(description="patients waiting for a bed of this type")
    prepare: str = Field(description="beds being prepared (not measured: always 0)")
    prepare_plan: str = Field(description="beds planned (not measured: always 0)")
    covid: str = Field(description="1 for RS Online's COVID-19 bed types (codes 24-34)")
    tglupdate: str | None = Field(
        description="newest observation, hospital local time (WIB/WITA/WIT), YYYY-MM-DD HH:MM:SS"
    )
    stale: bool = Field(description="not SIRANAP: no reading, or the oldest is stale")


class SiranapHospital(_List):
    """One hospital's report: ``items`` are its bed types."""

    kode_rs: str = Field(description="Pantau site id of the hospital")
    nama_rs: str
    zona_waktu: str = Field(description="WIB, WITA or WIT: the zone of tglupdate")
    stale_after_s: float
    generated_at: str
    items: list[SiranapRow]


class SiranapList(_List):
    """Every hospital's report."""

    stale_after_s: float
    generated_at: str
    items: list[SiranapHospital]
