"""Response models of crowd and queue sites now (``/v1/crowds``, ``/v1/queues`` and the
``/v1/conditions`` family, which answer the same lists from the same in-memory state)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field

from cloud.api.models import _List, _Out


class CrowdStatus(StrEnum):
    """Crowd against its health-protocol capacity."""

    NORMAL = "normal"
    HIGH = "high"  # 80 % of capacity and above
    OVER = "over"  # at or above capacity


class _SiteNow(_Out):
    """Which site a row is about, and how old its figures are; the figures sit between."""

    site: str
    site_name: str
    site_kind: str
    kelurahan: str = Field(description="kelurahan code")
    kecamatan: str = Field(description="kecamatan code")
    observed_at_oldest: str | None = Field(description="oldest contributing reading, ISO 8601")
    observed_at_oldest_ms: int | None
    observed_at: str | None = Field(description="newest contributing reading, ISO 8601")
    observed_at_ms: int | None
    stale: bool = Field(description="no reading, or the oldest contributing one is stale")


class CrowdSite(_SiteNow):
    """People at a market or public space against its health-protocol capacity."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "site": "pasar-johar",
                    "site_name": "Pasar Johar",
                    "site_kind": "market",
                    "kelurahan": "33.74.01.1001",
                    "kecamatan": "33.74.01",
                    "occupancy": 1260,
                    "capacity": 1500,
                    "entries": 5400,
                    "exits": 4140,
                    "gates": 2,
                    "ratio": 0.84,
                    "percent": 84.0,
                    "status": "high",
                    "observed_at_oldest": "2024-07-01T02:59:58.000Z",
                    "observed_at_oldest_ms": 1719802798000,
                    "observed_at": "2024-07-01T03:00:00.000Z",
                    "observed_at_ms": 1719802800000,
                    "stale": False,
                }
            ]
        },
    )

    occupancy: int | None = Field(description="people inside now, gates summed")
    capacity: int | None = Field(description="people allowed at once (health protocol)")
    entries: int | None
    exits: int | None
    gates: int | None
    ratio: float | None = Field(description="occupancy / capacity")
    percent: float | None
    status: CrowdStatus | None


class QueueNow(_SiteNow):
    """The queue at a public-service office or hospital counter now, with its estimated wait."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "site": "mpp-semarang",
                    "site_name": "Mal Pelayanan Publik Kota Semarang",
                    "site_kind": "office",
                    "kelurahan": "33.74.01.1003",
                    "kecamatan": "33.74.01",
                    "waiting": 42,
                    "issued": 310,
                    "served": 268,
                    "counters_open": 9,
                    "kiosks": 1,
                    "wait_s": 840.0,
                    "wait_min": 14,
                    "observed_at_oldest": "2024-07-01T03:00:00.000Z",
                    "observed_at_oldest_ms": 1719802800000,
                    "observed_at": "2024-07-01T03:00:00.000Z",
                    "observed_at_ms": 1719802800000,
                    "stale": False,
                }
            ]
        },
    )

    waiting: int | None = Field(description="tickets issued and not yet served")
    issued: int | None
    served: int | None
    counters_open: int | None
    kiosks: int | None
    wait_s: float | None = Field(
        description="estimated wait (Little's law), seconds of the queue's own time; null if "
        "unknown"
    )
    wait_min: int | None = Field(description="wait_s in whole minutes, rounded up")


class CrowdList(_List):
    """Every crowd site of the city."""

    stale_after_s: float
    generated_at: str
    items: list[CrowdSite]


class QueueNowList(_List):
    """Every queue (kiosk) site of the city."""

    stale_after_s: float
    time_scale: float = Field(
        description="queue seconds per second of the readings' clock (1 unless simulated)"
    )
    generated_at: str
    items: list[QueueNow]


class Conditions(_Out):
    """Crowds and queues in one response: the two lists of ``/v1/conditions/crowd`` and
    ``/v1/conditions/queues``, each in the list envelope."""

    stale_after_s: float
    generated_at: str
    crowd: CrowdList
    queues: QueueNowList
