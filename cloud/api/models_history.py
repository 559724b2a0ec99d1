"""Response models of history (``/v1/beds/history``, ``/v1/crowds/history``)."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from cloud.api.models import BedGroup, Facility, SummaryLevel, _List, _Out
from contract.beds import BorBand


class BedBucket(_Out):
    """The beds of a region at the end of one time bucket (the last rollup in it), and the
    bucket's peak occupancy."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "start": "2026-11-28T17:00:00.000Z",
                    "start_ms": 1795885200000,
                    "start_local": "2026-11-29T00:00:00+07:00",
                    "capacity": 62,
                    "occupied": 46,
                    "free": 16,
                    "suspect": 2,
                    "confirmed": 10,
                    "waiting": 3,
                    "bor": 74.19354838709677,
                    "band": "high",
                    "occupied_max": 50,
                }
            ]
        },
    )

    start: str = Field(description="bucket start, ISO 8601 UTC")
    start_ms: int
    start_local: str = Field(description="bucket start in the city's local time (WIB/WITA/WIT)")
    capacity: int
    occupied: int
    free: int
    suspect: int
    confirmed: int
    waiting: int
    bor: float | None
    band: BorBand | None
    occupied_max: int = Field(
        description="most beds occupied at once in the bucket, per bed type, summed over types"
    )


class BedHistory(_List):
    """BOR of one region (or site) over time; buckets without data are left out."""

    level: SummaryLevel
    code: str
    name: str
    bed_type: str | None
    group: BedGroup | None
    facility: Facility
    interval: str
    timezone: str = Field(description="WIB, WITA or WIT: daily buckets start at its midnight")
    from_ms: int
    to_ms: int
    generated_at: str
    items: list[BedBucket]


class CrowdBucket(_Out):
    """A crowd site at the end of one bucket (the last ``crowd_site`` point) and its peak."""

    start: str
    start_ms: int
    start_local: str
    occupancy: int
    occupancy_max: int = Field(description="most people at once in the bucket")
    capacity: int = Field(description="health-protocol capacity (registry)")
    ratio: float | None
    ratio_max: float | None


class CrowdHistory(_List):
    """One crowd site over time; buckets without data are left out."""

    site: str
    site_name: str
    interval: str
    timezone: str
    from_ms: int
    to_ms: int
    generated_at: str
    items: list[CrowdBucket]
