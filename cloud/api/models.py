"""Response models of the read API; their examples appear in the OpenAPI docs at ``/docs``.

One list envelope (docs/api.md): every list of things is ``items`` with its ``count`` beside it,
and every response made from stored readings says when it was made (``generated_at``) and what
counts as stale (``stale_after_s``). A list holds every entity of the city that matches the
filters (a city has hundreds of sensors, not millions), so there is no pagination; the one
exception is ``/v1/gateways`` (docs/adr/0025), whose pages add ``total`` and ``next_cursor``.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

from contract.beds import BorBand


class BedGroup(StrEnum):
    """Coarse bed groups (``contract.BED_GROUPS``)."""

    ICU = "icu"
    HCU = "hcu"
    ISOLATION = "isolation"
    GENERAL = "general"
    EMERGENCY = "emergency"


class Facility(StrEnum):
    """Which bed sites count: hospitals, isolation centres or both."""

    ALL = "all"
    HOSPITAL = "hospital"
    ISOLATION_CENTRE = "isolation_centre"


class SummaryLevel(StrEnum):
    """Levels a BOR summary can be rolled up to (``bed_rollup.level``)."""

    SITE = "site"
    RW = "rw"
    KELURAHAN = "kelurahan"
    KECAMATAN = "kecamatan"
    KOTA = "kota"
    PROVINSI = "provinsi"


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class _List(_Out):
    """The list envelope: ``items`` and their ``count`` (derived, so it cannot disagree).
    Each subclass declares ``items`` where it belongs among its own fields."""

    if TYPE_CHECKING:
        items: Sequence[_Out]

    @computed_field(description="number of items")  # type: ignore[prop-decorator]
    @property
    def count(self) -> int:
        return len(self.items)


def list_envelope(items: Sequence[Any], **fields: Any) -> dict[str, Any]:
    """The :class:`_List` envelope of an answer built as plain dicts (docs/adr/0025):
    ``fields``, then ``items`` and their ``count``, derived here as ``_List.count`` derives it."""
    return {**fields, "items": items, "count": len(items)}


class BedWard(_Out):
    """The latest state of one bed sensor: one ward's beds of one type at one site."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "sensor": "bed-iso-tegalsari",
                    "site": "iso-tegalsari-rw03",
                    "site_name": "Balai Warga Kel. Tegal Sari, RW 03",
                    "site_kind": "isolation_centre",
                    "kelurahan": "33.74.08.1001",
                    "kecamatan": "33.74.08",
                    "ward": "Aula",
                    "bed_type": 12,
                    "bed_type_name": "Isolasi",
                    "bed_group": "isolation",
                    "capacity": 10,
                    "occupied": 7,
                    "free": 3,
                    "suspect": 2,
                    "confirmed": 5,
                    "waiting": 1,
                    "bor": 70.0,
                    "band": "high",
                    "observed_at": "2024-07-01T03:00:00.000Z",
                    "observed_at_ms": 1719802800000,
                    "stale": False,
                }
            ]
        },
    )

    sensor: str
    site: str
    site_name: str
    site_kind: str = Field(description="hospital or isolation_centre")
    kelurahan: str = Field(description="kelurahan code")
    kecamatan: str = Field(description="kecamatan code")
    ward: str
    bed_type: int = Field(description="SIRANAP bed type code (id_tt)")
    bed_type_name: str
    bed_group: BedGroup | None
    capacity: int | None
    occupied: int | None
    free: int | None
    suspect: int | None
    confirmed: int | None
    waiting: int | None = Field(description="patients waiting for a bed of this type")
    bor: float | None = Field(description="bed occupancy rate, percent")
    band: BorBand | None
    observed_at: str | None = Field(description="observation time, ISO 8601 UTC")
    observed_at_ms: int | None = Field(description="observation time, ms since epoch UTC")
    stale: bool = Field(description="no reading, or the latest is older than stale_after_s")


class BedTotals(_Out):
    """Sums over the wards that have reported."""

    capacity: int
    occupied: int
    free: int
    bor: float | None
    band: BorBand | None


class BedList(_List):
    """Bed sensors matching the filters, one row per ward and bed type."""

    stale_after_s: float
    generated_at: str
    items: list[BedWard]


class SiteBeds(_List):
    """One hospital or isolation centre with its wards (``items``)."""

    site: str
    site_name: str
    site_kind: str
    kelurahan: str
    kecamatan: str
    stale_after_s: float
    generated_at: str
    totals: BedTotals
    items: list[BedWard]


class BedSummaryRow(_Out):
    """BOR of one region (or site) at the requested level."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "code": "33.74.08",
                    "name": "Candisari",
                    "capacity": 52,
                    "occupied": 40,
                    "free": 12,
                    "suspect": 3,
                    "confirmed": 9,
                    "waiting": 2,
                    "sensors": 4,
                    "bor": 76.92307692307692,
                    "band": "high",
                    "observed_at_oldest": "2024-07-01T02:59:10.000Z",
                    "observed_at_oldest_ms": 1719802750000,
                    "observed_at_newest": "2024-07-01T03:00:00.000Z",
                    "observed_at_newest_ms": 1719802800000,
                    "stale": False,
                }
            ]
        },
    )

    code: str = Field(description="region code, or site id at level=site")
    name: str
    capacity: int | None
    occupied: int | None
    free: int | None
    suspect: int | None
    confirmed: int | None
    waiting: int | None
    sensors: int | None = Field(description="bed sensors contributing")
    bor: float | None
    band: BorBand | None
    observed_at_oldest: str | None
    observed_at_oldest_ms: int | None
    observed_at_newest: str | None
    observed_at_newest_ms: int | None
    stale: bool = Field(description="no rollup yet, or its oldest reading is stale")


class BedSummary(_List):
    """A BOR rollup at one level."""

    level: SummaryLevel
    bed_type: str | None = Field(description='"all" or a SIRANAP code; null with group')
    group: BedGroup | None
    bed_types: list[int] | None = Field(description="codes summed (null for all)")
    facility: Facility
    stale_after_s: float
    generated_at: str
    items: list[BedSummaryRow]


class Health(_Out):
    """Liveness of the API and its store."""

    model_config = ConfigDict(
        frozen=True, json_schema_extra={"examples": [{"status": "ok", "influxdb": "ok"}]}
    )

    status: str = Field(description="ok or unavailable")
    influxdb: str = Field(description="ok or unreachable")


class SiteRef(_Out):
    """A site as clients pick it."""

    id: str
    name: str
    kind: str
    rw: str | None


class RwRegion(_Out):
    """An RW inside a kelurahan; ``code`` is what ``bed_rollup`` uses at level=rw."""

    code: str
    number: str
    name: str


class KelurahanRegion(_Out):
    code: str
    name: str
    rw: list[RwRegion]
    sites: list[SiteRef]


class KecamatanRegion(_Out):
    code: str
    name: str
    kelurahan: list[KelurahanRegion]


class NamedRegion(_Out):
    code: str
    name: str


class Regions(_Out):
    """The administrative hierarchy of the configured city, with its sites."""

    provinsi: NamedRegion
    kota: NamedRegion
    timezone: str
    kecamatan: list[KecamatanRegion]


class ErrorBody(_Out):
    """Every error: a sentence for a human."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={"examples": [{"detail": "no kecamatan '33.74.99' in Kota Semarang"}]},
    )

    detail: str
