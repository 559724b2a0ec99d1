"""Crowds (``/v1/crowds``, ``/v1/crowds/history``): people at every market and public space
against its health-protocol capacity, now from the ingester's ``crowd_sites`` of the in-memory
state, and over time from the ``crowd_site`` points (daily buckets at local midnight)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response, status

from cloud.api.auth import require
from cloud.api.auth_roles import Role
from cloud.api.deps import InfluxDep, LiveDep, NowDep, RegistryDep, SettingsDep
from cloud.api.history import (
    FromQuery,
    IntervalQuery,
    ToQuery,
    history_series,
    time_range,
)
from cloud.api.models import ErrorBody
from cloud.api.models_history import CrowdBucket, CrowdHistory
from cloud.api.models_sites import CrowdList
from cloud.api.now_cache import AnswerDep
from cloud.api.now_sites import crowd_list
from cloud.api.queries import format_ms, now_iso
from cloud.influx import ident, where_clause
from cloud.storage_schema import Measurement
from contract.secrets import bounded_echo

router = APIRouter(tags=["crowds"], dependencies=[require(Role.PUBLIC)])
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "unknown crowd site"},
    422: {"model": ErrorBody, "description": "bad time range or interval"},
    503: {"model": ErrorBody, "description": "InfluxDB unreachable (history, or no state yet)"},
}


@router.get("/v1/crowds", response_model=CrowdList, responses=_ERRORS)
async def crowds(settings: SettingsDep, live: LiveDep, snap: NowDep, answer: AnswerDep) -> Response:
    """Every crowd site: occupancy (gates summed), health-protocol capacity, ``ratio`` =
    occupancy / capacity, ``status`` (``high`` from 80 %, ``over`` from 100 %). Sites whose
    gates never reported are listed with nulls and ``stale: true``."""
    return answer(lambda: crowd_list(settings, live, snap))


@router.get("/v1/crowds/history", response_model=CrowdHistory, responses=_ERRORS)
async def crowd_history(
    registry: RegistryDep,
    influx: InfluxDep,
    site: str,
    from_: FromQuery = None,
    to: ToQuery = None,
    interval: IntervalQuery = "1h",
) -> CrowdHistory:
    """One crowd site per time bucket: the last occupancy in the bucket and its peak, against
    the capacity. Daily buckets start at the city's local midnight."""
    where_site = registry.sites.get(site)
    if where_site is None or where_site.capacity is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"no crowd site {bounded_echo(site)} in {registry.city.name}",
        )
    span = time_range(registry, from_=from_, to=to, interval=interval)
    occ = ident("occupancy")
    q = (
        f"SELECT last({occ}) AS {occ}, max({occ}) AS {ident('occupancy_max')}, "  # noqa: S608
        f"last({ident('ratio')}) AS {ident('ratio')}, max({ident('ratio')}) AS "
        f"{ident('ratio_max')} "
        f"FROM {ident(Measurement.CROWD_SITE)}{where_clause({'site': site})} "
        f"AND {span.where()} GROUP BY {span.group_by()} fill(none)"
    )
    rows = [r for s in history_series(influx, q) for r in s.rows()]
    capacity = where_site.capacity
    items = [
        CrowdBucket(
            start=format_ms(int(r["time"])),
            start_ms=int(r["time"]),
            start_local=span.zone.local(int(r["time"])).isoformat(),
            occupancy=int(r["occupancy"]),
            occupancy_max=int(r["occupancy_max"]),
            capacity=capacity,
            # the ingester's ratio (occupancy / capacity), as it stored it
            ratio=r.get("ratio"),
            ratio_max=r.get("ratio_max"),
        )
        for r in rows
        if r.get("occupancy") is not None
    ]
    return CrowdHistory(
        site=site,
        site_name=where_site.name,
        interval=interval,
        timezone=span.zone.name,
        from_ms=span.start_ms,
        to_ms=span.end_ms,
        generated_at=now_iso(),
        items=items,
    )
