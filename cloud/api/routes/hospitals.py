"""Hospitals and isolation centres (``/v1/hospitals``, ``/v1/hospitals/{site_id}``,
``/v1/isolation-centres``): the registry's data (address, phone and coordinates when it has
them) with each site's beds now, from the ingester's site rollups in memory."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, status

from city import Registry, Site, SiteKind
from cloud.api.auth import Caller, require
from cloud.api.auth_roles import Role
from cloud.api.deps import LiveDep, NowDep, RegistryDep, SettingsDep, check_region
from cloud.api.models import ErrorBody, NamedRegion
from cloud.api.models_places import BedPlace, BedPlaceList, GroupBeds
from cloud.api.queries import is_stale, iso_ms, nan_to_none, now_iso
from cloud.api.state import LiveState, Snapshot
from contract.beds import BED_GROUPS, bor_band
from contract.clock import now_ms
from contract.payload import SensorKind
from contract.secrets import bounded_echo

router = APIRouter(tags=["hospitals"], dependencies=[require(Role.HEALTH_OFFICER)])

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "unknown site, kecamatan or kelurahan"},
    503: {"model": ErrorBody, "description": "state not loaded and InfluxDB unreachable"},
}
_SUMS = ("capacity", "occupied", "free", "waiting")


def _sum_rows(snap: Snapshot, rows: list[int]) -> dict[str, int] | None:
    if not rows:
        return None
    b = snap.beds
    return {name: int(sum(getattr(b, name)[r] for r in rows)) for name in _SUMS}


def place(site: Site, live: LiveState, snap: Snapshot, *, after: float) -> BedPlace:
    """One bed site from the registry and the current rollups (all bed types, facility all,
    and per bed group the sum of its types' rollups)."""
    registry = live.index.registry
    codes = {
        s.bed_type
        for s in registry.sensors_of(site=site.id)
        if s.kind is SensorKind.BED and s.bed_type is not None
    }
    wards = sum(1 for s in registry.sensors_of(site=site.id) if s.kind is SensorKind.BED)
    gid = live.group_ids.get(("site", site.id))
    get = snap.bed_row.get
    total_row = None if gid is None else get((gid, 0, 0))
    total = _sum_rows(snap, [] if total_row is None else [total_row])
    groups = []
    for name, members in BED_GROUPS.items():
        if not codes & members:
            continue
        found = [] if gid is None else [get((gid, c, 0)) for c in sorted(codes & members)]
        sums = _sum_rows(snap, [r for r in found if r is not None])
        groups.append(GroupBeds(group=name, **(sums or dict.fromkeys(_SUMS))))
    b = snap.beds
    bor = None
    oldest = newest = None
    if total_row is not None and total is not None:
        bor = nan_to_none(float(b.bor[total_row]))
        oldest, newest = int(b.oldest_ms[total_row]), int(b.newest_ms[total_row])
    kel = next(k for c in registry.city.kecamatan for k in c.kelurahan if k.code == site.kelurahan)
    kec = registry.kecamatan_of_kelurahan[site.kelurahan]
    return BedPlace(
        id=site.id,
        name=site.name,
        kind=site.kind.value,
        address=site.address,
        phone=site.phone,
        lat=site.lat,
        lon=site.lon,
        kelurahan=NamedRegion(code=kel.code, name=kel.name),
        kecamatan=NamedRegion(code=kec.code, name=kec.name),
        rw=site.rw,
        wards=wards,
        bor=bor,
        band=bor_band(bor),
        groups=groups,
        observed_at_newest=iso_ms(newest),
        observed_at_newest_ms=newest,
        stale=is_stale(oldest, now=now_ms(), stale_after_s=after),
        **(total or dict.fromkeys(_SUMS)),
    )


def _places(
    kind: SiteKind,
    registry: Registry,
    live: LiveState,
    snap: Snapshot,
    *,
    after: float,
    kecamatan: str | None,
    kelurahan: str | None,
) -> list[BedPlace]:
    check_region(registry, kecamatan=kecamatan, kelurahan=kelurahan)
    return [
        place(site, live, snap, after=after)
        for site in registry.sites.values()
        if site.kind is kind
        and (kelurahan is None or site.kelurahan == kelurahan)
        and (kecamatan is None or registry.kecamatan_of_kelurahan[site.kelurahan].code == kecamatan)
    ]


@router.get("/v1/hospitals", response_model=BedPlaceList, responses=_ERRORS)
async def hospitals(
    caller: Annotated[Caller, require(Role.HEALTH_OFFICER)],
    settings: SettingsDep,
    registry: RegistryDep,
    live: LiveDep,
    snap: NowDep,
    kecamatan: str | None = None,
    kelurahan: str | None = None,
) -> BedPlaceList:
    """Every hospital (filters: ``kecamatan``, ``kelurahan``), with address, phone and
    coordinates when the registry has them, and its beds now, in total and per bed group."""
    after = settings.stale_after_s
    items = _places(
        SiteKind.HOSPITAL,
        registry,
        live,
        snap,
        after=after,
        kecamatan=kecamatan,
        kelurahan=kelurahan,
    )
    items = [place for place in items if caller.sees(place.id)]
    return BedPlaceList(stale_after_s=after, generated_at=now_iso(), items=items)


@router.get("/v1/isolation-centres", response_model=BedPlaceList, responses=_ERRORS)
async def isolation_centres(
    caller: Annotated[Caller, require(Role.HEALTH_OFFICER)],
    settings: SettingsDep,
    registry: RegistryDep,
    live: LiveDep,
    snap: NowDep,
    kecamatan: str | None = None,
    kelurahan: str | None = None,
) -> BedPlaceList:
    """Every isolation centre (a converted RW or kelurahan hall, hotel or dorm), as
    ``/v1/hospitals`` lists hospitals."""
    after = settings.stale_after_s
    items = _places(
        SiteKind.ISOLATION_CENTRE,
        registry,
        live,
        snap,
        after=after,
        kecamatan=kecamatan,
        kelurahan=kelurahan,
    )
    items = [place for place in items if caller.sees(place.id)]
    return BedPlaceList(stale_after_s=after, generated_at=now_iso(), items=items)


@router.get(
    "/v1/hospitals/{site_id}",
    response_model=BedPlace,
    responses=_ERRORS,
    dependencies=[require(Role.HEALTH_OFFICER, region=("site_id",))],
)
async def hospital(
    site_id: str, settings: SettingsDep, registry: RegistryDep, live: LiveDep, snap: NowDep
) -> BedPlace:
    """One hospital or isolation centre by id."""
    site = registry.sites.get(site_id)
    if site is None or site.kind not in (SiteKind.HOSPITAL, SiteKind.ISOLATION_CENTRE):
        detail = (
            f"no site {bounded_echo(site_id)} in {registry.city.name}"
            if site is None
            else f"site {site_id!r} ({site.name}) is a {site.kind.value}, which has no beds"
        )
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail)
    return place(site, live, snap, after=settings.stale_after_s)
