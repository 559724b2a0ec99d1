"""Crowds and queues per site (``/v1/conditions``, ``/v1/conditions/crowd``,
``/v1/conditions/queues``), from ``crowd_site`` and ``queue_site``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from city import Registry, Site
from cloud.api.auth import Role, require
from cloud.api.config import ApiSettings
from cloud.api.deps import InfluxDep, RegistryDep, SettingsDep
from cloud.api.models import (
    Conditions,
    CrowdList,
    CrowdSite,
    CrowdStatus,
    ErrorBody,
    QueueList,
    QueueSite,
)
from cloud.api.queries import as_float, as_int, is_stale, iso_ms, latest_rows, now_iso
from cloud.influx import InfluxHTTP
from cloud.storage_schema import Measurement
from contract.clock import now_ms
from contract.payload import SensorKind

router = APIRouter(tags=["conditions"], dependencies=[require(Role.PUBLIC)])

CROWD_HIGH = 0.8
CROWD_OVER = 1.0


def crowd_status(ratio: float | None) -> CrowdStatus | None:
    """``over`` at or above capacity, ``high`` from 80 %, else ``normal``."""
    if ratio is None:
        return None
    if ratio >= CROWD_OVER:
        return CrowdStatus.OVER
    if ratio >= CROWD_HIGH:
        return CrowdStatus.HIGH
    return CrowdStatus.NORMAL


def _sites_with(registry: Registry, kind: SensorKind) -> list[Site]:
    ids = dict.fromkeys(s.site for s in registry if s.kind is kind)
    return [registry.sites[i] for i in ids]


def _site_meta(registry: Registry, site: Site, row: dict[str, Any]) -> dict[str, Any]:
    """Identity of a site; names from the stored tags when there is a point (they round-trip
    through InfluxDB), else from the registry."""
    return {
        "site": site.id,
        "site_name": row.get("site_name") or site.name,
        "site_kind": row.get("site_kind") or site.kind.value,
        "kelurahan": site.kelurahan,
        "kecamatan": registry.kecamatan_of_kelurahan[site.kelurahan].code,
    }


def _times(row: dict[str, Any], *, now: int, after: float) -> dict[str, Any]:
    oldest, newest = as_int(row.get("oldest_ms")), as_int(row.get("newest_ms"))
    return {
        "observed_at_oldest": iso_ms(oldest),
        "observed_at_oldest_ms": oldest,
        "observed_at": iso_ms(newest),
        "observed_at_ms": newest,
        "stale": is_stale(oldest, now=now, stale_after_s=after),
    }


def _crowd(
    registry: Registry, site: Site, row: dict[str, Any], now: int, after: float
) -> CrowdSite:
    occupancy = as_int(row.get("occupancy"))
    capacity = as_int(row.get("capacity")) or site.capacity
    ratio = as_float(row.get("ratio"))
    if ratio is None and occupancy is not None and capacity:
        ratio = occupancy / capacity
    return CrowdSite(
        **_site_meta(registry, site, row),
        occupancy=occupancy,
        capacity=capacity,
        entries=as_int(row.get("entries")),
        exits=as_int(row.get("exits")),
        gates=as_int(row.get("gates")),
        ratio=ratio,
        percent=None if ratio is None else ratio * 100.0,
        status=crowd_status(ratio),
        **_times(row, now=now, after=after),
    )


def _queue(
    registry: Registry, site: Site, row: dict[str, Any], now: int, after: float
) -> QueueSite:
    return QueueSite(
        **_site_meta(registry, site, row),
        waiting=as_int(row.get("waiting")),
        issued=as_int(row.get("issued")),
        served=as_int(row.get("served")),
        counters_open=as_int(row.get("counters_open")),
        kiosks=as_int(row.get("kiosks")),
        wait_s=as_float(row.get("wait_s")),
        **_times(row, now=now, after=after),
    )


_ERRORS: dict[int | str, dict[str, Any]] = {503: {"model": ErrorBody}}


def crowd_list(settings: ApiSettings, registry: Registry, influx: InfluxHTTP) -> CrowdList:
    """Every crowd site, from the latest ``crowd_site`` point of each."""
    after = settings.stale_after_s
    rows = {
        str(r["site"]): r for r in latest_rows(influx, Measurement.CROWD_SITE, group_by=["site"])
    }
    now = now_ms()
    items = [
        _crowd(registry, site, rows.get(site.id, {}), now, after)
        for site in _sites_with(registry, SensorKind.CROWD)
    ]
    return CrowdList(stale_after_s=after, generated_at=now_iso(), items=items)


def queue_list(settings: ApiSettings, registry: Registry, influx: InfluxHTTP) -> QueueList:
    """Every queue site, from the latest ``queue_site`` point of each."""
    after = settings.stale_after_s
    rows = {
        str(r["site"]): r for r in latest_rows(influx, Measurement.QUEUE_SITE, group_by=["site"])
    }
    now = now_ms()
    items = [
        _queue(registry, site, rows.get(site.id, {}), now, after)
        for site in _sites_with(registry, SensorKind.QUEUE)
    ]
    return QueueList(stale_after_s=after, generated_at=now_iso(), items=items)


@router.get("/v1/conditions", response_model=Conditions, responses=_ERRORS)
def conditions(settings: SettingsDep, registry: RegistryDep, influx: InfluxDep) -> Conditions:
    """Crowd against health-protocol capacity at every crowd site, and the queue at every
    kiosk site, from the latest per-site aggregates: the lists of ``/v1/conditions/crowd``
    and ``/v1/conditions/queues`` in one response. Sites without data are listed with nulls
    and ``stale: true``; ``stale`` means the oldest contributing reading is too old."""
    return Conditions(
        stale_after_s=settings.stale_after_s,
        generated_at=now_iso(),
        crowd=crowd_list(settings, registry, influx),
        queues=queue_list(settings, registry, influx),
    )


@router.get("/v1/conditions/crowd", response_model=CrowdList, responses=_ERRORS)
def crowd(settings: SettingsDep, registry: RegistryDep, influx: InfluxDep) -> CrowdList:
    """People at every crowd site against its health-protocol capacity."""
    return crowd_list(settings, registry, influx)


@router.get("/v1/conditions/queues", response_model=QueueList, responses=_ERRORS)
def queues(settings: SettingsDep, registry: RegistryDep, influx: InfluxDep) -> QueueList:
    """The queue at every kiosk site, with its estimated wait."""
    return queue_list(settings, registry, influx)
