"""Hospitals and isolation centres (``/v1/hospitals``, ``/v1/hospitals/{site_id}``,
``/v1/isolation-centres``): the registry's data (address, phone and coordinates when it has
them) with each site's beds now, from the ingester's site rollups in memory."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Response, status

from city import Registry, Site, SiteKind
from cloud.api.auth import Caller, require
from cloud.api.auth_roles import Role
from cloud.api.deps import LiveDep, NowDep, RegistryDep, SettingsDep, check_region
from cloud.api.models import ErrorBody, list_envelope
from cloud.api.models_places import BedPlace, BedPlaceList
from cloud.api.now_cache import AnswerDep
from cloud.api.queries import is_stale, iso_ms, nan_to_none, now_iso
from cloud.api.registry_views import sensors_by_site
from cloud.api.rollups import ALL_BED_TYPES, rollup_rows, sum_rows
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
#: a site's ward count, its row's registry fields, and (group, its codes at the site)
_Static = tuple[int, dict[str, Any], tuple[tuple[str, list[int]], ...]]


@lru_cache(maxsize=4)
def _static(registry: Registry) -> Mapping[str, _Static]:
    """Per bed site: its ward count, the registry fields of its row, and per bed group it has
    wards of, the group's codes it has. Made once per registry."""
    out: dict[str, _Static] = {}
    for site in registry.sites.values():
        beds = [s for s in sensors_by_site(registry).get(site.id, ()) if s.kind is SensorKind.BED]
        codes = {s.bed_type for s in beds if s.bed_type is not None}
        kel = registry.kelurahan[site.kelurahan]
        kec = registry.kecamatan_of_kelurahan[site.kelurahan]
        row = {
            "id": site.id,
            "name": site.name,
            "kind": site.kind.value,
            "address": site.address,
            "phone": site.phone,
            "lat": site.lat,
            "lon": site.lon,
            "kelurahan": {"code": kel.code, "name": kel.name},
            "kecamatan": {"code": kec.code, "name": kec.name},
            "rw": site.rw,
        }
        groups = tuple(
            (name, sorted(codes & members))
            for name, members in BED_GROUPS.items()
            if codes & members
        )
        out[site.id] = (len(beds), row, groups)
    return out


def place(site: Site, live: LiveState, snap: Snapshot, *, now: int, after: float) -> dict[str, Any]:
    """One bed site from the registry and the current rollups (all bed types, facility all,
    and per bed group the sum of its types' rollups), as ``BedPlace``'s JSON object (plain
    dicts: a province lists hundreds of places)."""
    wards, static, bed_groups = _static(live.index.registry)[site.id]
    total_rows = rollup_rows(live, snap, "site", site.id, [ALL_BED_TYPES])
    total = sum_rows(snap, total_rows, _SUMS)
    groups = []
    for name, codes in bed_groups:
        sums = sum_rows(snap, rollup_rows(live, snap, "site", site.id, codes), _SUMS)
        groups.append({"group": name, **(sums or dict.fromkeys(_SUMS))})
    b = snap.beds
    bor = None
    oldest = newest = None
    if total_rows and total is not None:
        bor = nan_to_none(float(b.bor[total_rows[0]]))
        oldest, newest = int(b.oldest_ms[total_rows[0]]), int(b.newest_ms[total_rows[0]])
    return {
        **static,
        "wards": wards,
        **(total or dict.fromkeys(_SUMS)),
        "bor": bor,
        "band": bor_band(bor),
        "groups": groups,
        "observed_at_newest": iso_ms(newest),
        "observed_at_newest_ms": newest,
        "stale": is_stale(oldest, now=now, stale_after_s=after),
    }


def _place_list(
    kind: SiteKind,
    caller: Caller,
    live: LiveState,
    snap: Snapshot,
    *,
    after: float,
    kecamatan: str | None,
    kelurahan: str | None,
) -> bytes:
    registry = live.index.registry
    now = now_ms()
    items = [
        place(site, live, snap, now=now, after=after)
        for site in registry.sites.values()
        if site.kind is kind
        and (kelurahan is None or site.kelurahan == kelurahan)
        and (kecamatan is None or registry.kecamatan_of_kelurahan[site.kelurahan].code == kecamatan)
        and caller.sees(site.id)
    ]
    return orjson.dumps(list_envelope(items, stale_after_s=after, generated_at=now_iso()))


def _list_route(kind: SiteKind, path: str, title: str, description: str) -> None:
    """``path`` lists the sites of ``kind`` (filters: ``kecamatan``, ``kelurahan``), each with
    registry data and its beds now; a scoped key sees those in its regions."""

    @router.get(
        path,
        response_model=BedPlaceList,
        responses=_ERRORS,
        summary=title,
        description=description,
        name=title,
    )
    async def place_list(
        caller: Annotated[Caller, require(Role.HEALTH_OFFICER)],
        settings: SettingsDep,
        registry: RegistryDep,
        live: LiveDep,
        snap: NowDep,
        answer: AnswerDep,
        kecamatan: str | None = None,
        kelurahan: str | None = None,
    ) -> Response:
        check_region(registry, kecamatan=kecamatan, kelurahan=kelurahan)
        return answer(
            lambda: _place_list(
                kind,
                caller,
                live,
                snap,
                after=settings.stale_after_s,
                kecamatan=kecamatan,
                kelurahan=kelurahan,
            )
        )


_list_route(
    SiteKind.HOSPITAL,
    "/v1/hospitals",
    "Hospitals",
    "Every hospital (filters: ``kecamatan``, ``kelurahan``), with address, phone and "
    "coordinates when the registry has them, and its beds now, in total and per bed group.",
)
_list_route(
    SiteKind.ISOLATION_CENTRE,
    "/v1/isolation-centres",
    "Isolation Centres",
    "Every isolation centre (a converted RW or kelurahan hall, hotel or dorm), as "
    "``/v1/hospitals`` lists hospitals.",
)


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
    return BedPlace.model_validate(
        place(site, live, snap, now=now_ms(), after=settings.stale_after_s)
    )
