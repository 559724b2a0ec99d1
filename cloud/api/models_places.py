"""Response models of hospitals and isolation centres (``/v1/hospitals``,
``/v1/isolation-centres``): registry data with the current beds of each site."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from cloud.api.models import NamedRegion, _List, _Out
from contract.beds import BorBand


class GroupBeds(_Out):
    """Beds of one coarse group (ICU, HCU, isolation, ...) at a site."""

    group: str
    capacity: int | None
    occupied: int | None
    free: int | None
    waiting: int | None


class BedPlace(_Out):
    """A hospital or isolation centre: where it is, how to reach it, and its beds now."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
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
                        {"group": "icu", "capacity": 34, "occupied": 27, "free": 7, "waiting": 3}
                    ],
                    "observed_at_newest": "2026-11-29T03:00:00.000Z",
                    "observed_at_newest_ms": 1795834800000,
                    "stale": False,
                }
            ]
        },
    )

    id: str
    name: str
    kind: str = Field(description="hospital or isolation_centre")
    address: str | None = Field(description="null when the registry has none")
    phone: str | None
    lat: float | None = Field(description="WGS 84 latitude; null when the registry has none")
    lon: float | None
    kelurahan: NamedRegion
    kecamatan: NamedRegion
    rw: str | None
    wards: int = Field(description="bed sensors (a ward's beds of one type each)")
    capacity: int | None = Field(description="sum over the wards that reported")
    occupied: int | None
    free: int | None
    waiting: int | None
    bor: float | None
    band: BorBand | None
    groups: list[GroupBeds] = Field(description="per bed group the site has wards of")
    observed_at_newest: str | None
    observed_at_newest_ms: int | None
    stale: bool = Field(description="no ward reported, or the oldest reading is stale")


class BedPlaceList(_List):
    """Hospitals or isolation centres matching the filters."""

    stale_after_s: float
    generated_at: str
    items: list[BedPlace]
