"""Crowds (``/v1/crowds``, ``/v1/crowds/history``): people at every market and public space
against its health-protocol capacity, now from the ingester's ``crowd_sites`` of the in-memory
state, and over time from the ``crowd_site`` points (daily buckets at local midnight)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status

from cloud.api.auth import require
from cloud.api.auth_roles import Role
from cloud.api.deps import InfluxDep, LiveDep, NowDep, RegistryDep, SettingsDep
from cloud.api.localtime import zone_of_province
from cloud.api.models import CrowdList, CrowdSite, ErrorBody
from cloud.api.models_history import CrowdBucket, CrowdHistory
from cloud.api.queries import format_ms, is_stale, iso_ms, nan_to_none, now_iso
from cloud.api.routes.beds_history import MAX_BUCKETS, interval_ms, parse_time
from cloud.api.routes.conditions import crowd_status
from cloud.influx import ident, where_clause
from cloud.storage_schema import Measurement
from contract.clock import now_ms
from contract.errors import StorageError
from contract.payload import SensorKind
from contract.secrets import bounded_echo

router = APIRouter(tags=["crowds"], dependencies=[require(Role.PUBLIC)])
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "unknown crowd site"},
    422: {"model": ErrorBody, "description": "bad time range or interval"},
    503: {"model": ErrorBody, "description": "InfluxDB unreachable (history, or no state yet)"},
}


@router.get("/v1/crowds", response_model=CrowdList, responses=_ERRORS)
async def crowds(
    settings: SettingsDep, registry: RegistryDep, live: LiveDep, snap: NowDep
) -> CrowdList:
    """Every crowd site: occupancy (gates summed), health-protocol capacity, ``ratio`` =
    occupancy / capacity, ``status`` (``high`` from 80 %, ``over`` from 100 %). Sites whose
    gates never reported are listed with nulls and ``stale: true``."""
    after = settings.stale_after_s
    now = now_ms()
    c = snap.crowds
    index = live.index
    items = []
    seen = dict.fromkeys(s.site for s in registry if s.kind is SensorKind.CROWD)
    for site_id in seen:
        site = registry.sites[site_id]
        row = snap.crowd_row.get(index.site_pos[site_id])
        vals: dict[str, Any] = {}
        oldest = newest = None
        if row is not None:
            ratio = nan_to_none(float(c.ratio[row]))
            vals = {
                "occupancy": int(c.occupancy[row]),
                "entries": int(c.entries[row]),
                "exits": int(c.exits[row]),
                "gates": int(c.gates[row]),
                "ratio": ratio,
                "percent": None if ratio is None else ratio * 100.0,
            }
            oldest, newest = int(c.oldest_ms[row]), int(c.newest_ms[row])
        ratio = vals.get("ratio")
        items.append(
            CrowdSite(
                site=site.id,
                site_name=site.name,
                site_kind=site.kind.value,
                kelurahan=site.kelurahan,
                kecamatan=registry.kecamatan_of_kelurahan[site.kelurahan].code,
                occupancy=vals.get("occupancy"),
                capacity=site.capacity,
                entries=vals.get("entries"),
                exits=vals.get("exits"),
                gates=vals.get("gates"),
                ratio=ratio,
                percent=vals.get("percent"),
                status=crowd_status(ratio),
                observed_at_oldest=iso_ms(oldest),
                observed_at_oldest_ms=oldest,
                observed_at=iso_ms(newest),
                observed_at_ms=newest,
                stale=is_stale(oldest, now=now, stale_after_s=after),
            )
        )
    return CrowdList(stale_after_s=after, generated_at=now_iso(), items=items)


@router.get("/v1/crowds/history", response_model=CrowdHistory, responses=_ERRORS)
async def crowd_history(
    registry: RegistryDep,
    influx: InfluxDep,
    site: str,
    from_: Annotated[
        str | None, Query(alias="from", description="default: 7 days before to")
    ] = None,
    to: Annotated[str | None, Query(description="default: now")] = None,
    interval: Annotated[str, Query(description="bucket: 15m, 1h, 1d, ...")] = "1h",
) -> CrowdHistory:
    """One crowd site per time bucket: the last occupancy in the bucket and its peak, against
    the capacity. Daily buckets start at the city's local midnight."""
    where_site = registry.sites.get(site)
    if where_site is None or where_site.capacity is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"no crowd site {bounded_echo(site)} in {registry.city.name}",
        )
    step = interval_ms(interval)
    end = parse_time(to, default=now_ms(), name="to")
    start = parse_time(from_, default=end - 7 * 86_400_000, name="from")
    if end <= start or (end - start) // step > MAX_BUCKETS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"from must be before to, with at most {MAX_BUCKETS} buckets of {interval}",
        )
    zone = zone_of_province(registry.city.province.code)
    offset = (-zone.hours * 3_600_000) % step
    occ = ident("occupancy")
    q = (
        f"SELECT last({occ}) AS {occ}, max({occ}) AS {ident('occupancy_max')}, "  # noqa: S608
        f"last({ident('ratio')}) AS {ident('ratio')}, max({ident('ratio')}) AS "
        f"{ident('ratio_max')} "
        f"FROM {ident(Measurement.CROWD_SITE)}{where_clause({'site': site})} "
        f"AND time >= {start}ms AND time < {end}ms "
        f"GROUP BY time({step}ms, {offset}ms) fill(none)"
    )
    try:
        rows = [r for s in influx.query(q) for r in s.rows()]
    except StorageError as exc:
        if "database not found" not in str(exc):
            raise
        rows = []
    capacity = where_site.capacity
    items = [
        CrowdBucket(
            start=format_ms(int(r["time"])),
            start_ms=int(r["time"]),
            start_local=zone.local(int(r["time"])).isoformat(),
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
        timezone=zone.name,
        from_ms=start,
        to_ms=end,
        generated_at=now_iso(),
        items=items,
    )
