"""Response models of the operations resources: region freshness (``/v1/freshness``) and
gateways and devices (``/v1/gateways``)."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from cloud.api.models import _List, _Out


class RegionFreshness(_Out):
    """How many of a region's sensors reported recently."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "level": "kecamatan",
                    "code": "33.74.07",
                    "name": "Semarang Selatan",
                    "sensors": 9,
                    "fresh": 6,
                    "reported": 8,
                    "never": 1,
                    "share": 0.6666666666666666,
                    "oldest_ms": 1795834500000,
                    "newest_ms": 1795834800000,
                }
            ]
        },
    )

    level: str
    code: str = Field(description="region code, or site id at level=site")
    name: str
    sensors: int = Field(description="sensors of the region in the registry (of the kind asked)")
    fresh: int = Field(description="sensors whose latest observation is within the window")
    reported: int = Field(description="sensors that ever reported")
    never: int = Field(description="sensors that never reported")
    share: float = Field(description="fresh / sensors, 0 to 1")
    oldest_ms: int | None = Field(description="oldest latest observation among those reported")
    newest_ms: int | None


class FreshnessList(_List):
    """Freshness per region at one level."""

    level: str
    kind: str = Field(description="bed, crowd, queue or all")
    within_s: float = Field(description="the window: observed at most this long ago")
    generated_at: str
    items: list[RegionFreshness]


class Device(_Out):
    """A sensor behind a gateway, as the gateway and the ingested state see it."""

    sensor: str
    kind: str
    last_seen_ms: int | None = Field(description="gateway: last frame decoded (its clock)")
    observed_at_ms: int | None = Field(description="latest reading stored (sensor time)")
    silent: bool = Field(description="the gateway lists it among its silent sensors")
    seq_gaps: int | None
    resets: int | None
    skew_ms: int | None = Field(description="sensor clock minus gateway clock")


class GatewayView(_List):
    """A gateway's link and spool from its retained status, with its devices (``items``)."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "gateway": "gw-kariadi",
                    "site": "rs-kariadi",
                    "site_name": "RSUP Dr. Kariadi",
                    "state": "online",
                    "status_ts_ms": 1795834800000,
                    "received_at_ms": 1795834800100,
                    "link": "up",
                    "spool_depth": 0,
                    "spool_dropped": 0,
                    "clock_offset_ms": 12,
                    "silent": ["bed-kariadi-k3"],
                    "stats": {"batches_sent": 120, "spool_depth": 0},
                    "items": [],
                    "count": 0,
                }
            ]
        },
    )

    gateway: str
    site: str
    site_name: str
    state: str = Field(description="online, offline (last will or clean stop) or unknown")
    status_ts_ms: int | None = Field(description="when the gateway made its status")
    received_at_ms: int | None = Field(description="when the API received it")
    link: str | None = Field(description="the uplink state the gateway reports")
    spool_depth: int | None = Field(description="readings waiting in the gateway's spool")
    spool_dropped: int | None = Field(description="readings the spool dropped (full, expired)")
    clock_offset_ms: int | None
    silent: list[str] = Field(description="sensors the gateway reports silent")
    stats: dict[str, int | float | str] = Field(description="every stat of contract.status")
    items: list[Device] = Field(description="the gateway's sensors")


class GatewayList(_List):
    """A page of the city's gateways that match the filters, in registry order."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "generated_at": "2026-11-29T03:00:00.000Z",
                    "total": 80,
                    "next_cursor": "gw-050",
                    "items": [],
                    "count": 0,
                }
            ]
        },
    )

    generated_at: str
    total: int = Field(description="gateways matching the filters, on every page together")
    next_cursor: str | None = Field(
        description="pass as ``cursor`` for the next page; null on the last page"
    )
    items: list[GatewayView]
