"""Beds: per ward (``/v1/beds``), per site (``/v1/beds/{site_id}``) and rolled up
(``/v1/beds/summary``), from the ``bed`` and ``bed_rollup`` measurements of docs/schema.md."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, HTTPException, Response, status

from city import Registry, Site, SiteKind
from cloud.api.auth import Caller, Role, require
from cloud.api.auth_roles import FINE_LEVELS
from cloud.api.deps import (
    LiveDep,
    NowDep,
    RegistryDep,
    SettingsDep,
    bed_type_codes,
    check_region,
)
from cloud.api.models import (
    BedGroup,
    BedList,
    BedSummary,
    BedSummaryRow,
    BedTotals,
    ErrorBody,
    Facility,
    SiteBeds,
    SummaryLevel,
    list_envelope,
)
from cloud.api.now_cache import AnswerDep
from cloud.api.queries import is_stale, iso_ms, nan_to_none, now_iso
from cloud.api.registry_views import regions_with_beds
from cloud.api.rollups import ALL_BED_TYPES, rollup_rows, sum_rows
from cloud.api.routes.beds_free import router as free_router
from cloud.api.routes.beds_history import router as history_router
from cloud.api.state import LiveState, Snapshot
from cloud.api.ward_rows import ward_rows
from cloud.ingest.topology import FACILITIES
from cloud.ingest.wards import bor_percent
from contract.beds import bor_band
from contract.clock import now_ms
from contract.secrets import bounded_echo

router = APIRouter(tags=["beds"])

BED_SITE_KINDS = frozenset({SiteKind.HOSPITAL, SiteKind.ISOLATION_CENTRE})
COUNT_FIELDS = ("capacity", "occupied", "free", "suspect", "confirmed", "waiting", "sensors")
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "bed_type and group given together"},
    404: {"model": ErrorBody, "description": "unknown site, kecamatan or kelurahan"},
    422: {"model": ErrorBody, "description": "unknown bed type code or bad parameter"},
    503: {"model": ErrorBody, "description": "InfluxDB unreachable"},
}


def bed_site(registry: Registry, site_id: str) -> Site:
    """The hospital or isolation centre ``site_id``; 404 naming it otherwise."""
    site = registry.sites.get(site_id)
    if site is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no site {bounded_echo(site_id)} in {registry.city.name}"
        )
    if site.kind not in BED_SITE_KINDS:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"site {site_id!r} ({site.name}) is a {site.kind.value}, which has no beds",
        )
    return site


@dataclass(frozen=True, slots=True)
class _Filter:
    site: str | None = None
    kecamatan: str | None = None
    kelurahan: str | None = None
    codes: list[int] | None = None
    facility: Facility = Facility.ALL

    def conditions(self) -> dict[str, str | list[str] | None]:
        return {
            "site": self.site,
            "kecamatan": self.kecamatan,
            "kelurahan": self.kelurahan,
            "bed_type": None if self.codes is None else [str(c) for c in self.codes],
            "site_kind": None if self.facility is Facility.ALL else self.facility.value,
        }

    def matches(self, meta: Mapping[str, Any]) -> bool:
        """Whether a ward (registry or tag metadata) passes the filter."""
        return (
            (self.site is None or meta["site"] == self.site)
            and (self.kecamatan is None or meta["kecamatan"] == self.kecamatan)
            and (self.kelurahan is None or meta["kelurahan"] == self.kelurahan)
            and (self.codes is None or meta["bed_type"] in self.codes)
            and (self.facility is Facility.ALL or meta["site_kind"] == self.facility.value)
        )


@router.get("/v1/beds", response_model=BedList, responses=_ERRORS)
async def list_beds(
    caller: Annotated[
        Caller, require(Role.HEALTH_OFFICER, region=("site", "kecamatan", "kelurahan"))
    ],
    settings: SettingsDep,
    registry: RegistryDep,
    live: LiveDep,
    snap: NowDep,
    answer: AnswerDep,
    site: str | None = None,
    kecamatan: str | None = None,
    kelurahan: str | None = None,
    bed_type: str | None = None,
    group: BedGroup | None = None,
    facility: Facility = Facility.ALL,
) -> Response:
    """Every ward of every hospital and isolation centre (one row per bed sensor), from its
    latest reading (held in memory, see docs/api.md "Current values"). Sensors that never
    reported are listed with nulls and ``stale: true``."""
    codes = bed_type_codes(bed_type, group, allow_all=False)
    check_region(registry, kecamatan=kecamatan, kelurahan=kelurahan)
    if site is not None:
        bed_site(registry, site)
    flt = _Filter(
        site=site, kecamatan=kecamatan, kelurahan=kelurahan, codes=codes, facility=facility
    )

    def build() -> bytes:
        items = ward_rows(
            registry,
            snap,
            lambda meta: flt.matches(meta) and caller.sees(meta["kelurahan"]),
            now=now_ms(),
            after=settings.stale_after_s,
        )
        return orjson.dumps(
            list_envelope(items, stale_after_s=settings.stale_after_s, generated_at=now_iso())
        )

    return answer(build)


def _summary(
    caller: Caller,
    live: LiveState,
    snap: Snapshot,
    level: SummaryLevel,
    codes: list[int] | None,
    group: BedGroup | None,
    facility: Facility,
    *,
    after: float,
) -> BedSummary:
    slots = [ALL_BED_TYPES] if codes is None else codes
    fac = FACILITIES.index(facility.value)
    expected = regions_with_beds(
        live.index.registry,
        level.value,
        None if codes is None else tuple(codes),
        None if facility is Facility.ALL else facility.value,
    )
    b = snap.beds
    now = now_ms()
    items = []
    for code in sorted(expected):
        found = rollup_rows(live, snap, level.value, code, slots, fac)
        c: dict[str, int | None] = dict.fromkeys(COUNT_FIELDS)
        bor = oldest = newest = None
        if found:
            c = dict(sum_rows(snap, found, COUNT_FIELDS) or {})
            oldest = int(min(b.oldest_ms[r] for r in found))
            newest = int(max(b.newest_ms[r] for r in found))
            if len(found) == 1:
                bor = nan_to_none(float(b.bor[found[0]]))
            else:  # the group's sum, through the one BOR formula
                bor = nan_to_none(
                    float(bor_percent(np.array([c["occupied"]]), np.array([c["capacity"]]))[0])
                )
        items.append(
            BedSummaryRow(
                code=code,
                name=expected[code],
                capacity=c["capacity"],
                occupied=c["occupied"],
                free=c["free"],
                suspect=c["suspect"],
                confirmed=c["confirmed"],
                waiting=c["waiting"],
                sensors=c["sensors"],
                bor=bor,
                band=bor_band(bor),
                observed_at_oldest=iso_ms(oldest),
                observed_at_oldest_ms=oldest,
                observed_at_newest=iso_ms(newest),
                observed_at_newest_ms=newest,
                stale=not found or is_stale(oldest, now=now, stale_after_s=after),
            )
        )
    if level.value in FINE_LEVELS:
        items = [row for row in items if caller.sees(row.code)]
    return BedSummary(
        level=level,
        bed_type=None if group is not None else ("all" if codes is None else str(codes[0])),
        group=group,
        bed_types=codes,
        facility=facility,
        stale_after_s=after,
        generated_at=now_iso(),
        items=items,
    )


@router.get("/v1/beds/summary", response_model=BedSummary, responses=_ERRORS)
async def beds_summary(
    caller: Annotated[Caller, require(Role.PUBLIC, level="level")],
    settings: SettingsDep,
    live: LiveDep,
    snap: NowDep,
    answer: AnswerDep,
    level: SummaryLevel = SummaryLevel.KOTA,
    bed_type: str | None = None,
    group: BedGroup | None = None,
    facility: Facility = Facility.ALL,
) -> Response:
    """BOR per region (or site) at ``level``, from the ingester's rollups of the current state
    (exactly what it writes to ``bed_rollup``). With ``group``, the per-bed-type rollups of the
    group's codes are summed. A region whose oldest contributing reading is older than the
    stale limit is ``stale``; regions with bed sensors but no reading yet are listed with
    nulls."""
    codes = bed_type_codes(bed_type, group, allow_all=True)
    return answer(
        lambda: _summary(
            caller, live, snap, level, codes, group, facility, after=settings.stale_after_s
        )
    )


# Before /v1/beds/{site_id}, which would otherwise take "history" or "free" for a site id.
router.include_router(history_router)
router.include_router(free_router)


@router.get(
    "/v1/beds/{site_id}",
    response_model=SiteBeds,
    responses=_ERRORS,
    dependencies=[require(Role.HEALTH_OFFICER, region=("site_id",))],
)
async def site_beds(
    site_id: str,
    settings: SettingsDep,
    registry: RegistryDep,
    live: LiveDep,
    snap: NowDep,
    answer: AnswerDep,
) -> Response:
    """One hospital's or isolation centre's wards, with totals over the wards that reported
    (the ingester's site rollup over all bed types)."""
    site = bed_site(registry, site_id)
    return answer(lambda: _site_beds(site, live, snap, after=settings.stale_after_s))


def _site_beds(site: Site, live: LiveState, snap: Snapshot, *, after: float) -> bytes:
    registry = live.index.registry
    site_id = site.id
    wards = ward_rows(
        registry, snap, lambda meta: meta["site"] == site_id, now=now_ms(), after=after
    )
    rows = rollup_rows(live, snap, "site", site_id, [ALL_BED_TYPES])
    row = rows[0] if rows else None
    b = snap.beds
    if row is None:
        capacity = occupied = free = 0
        bor = None
    else:
        capacity, occupied, free = int(b.capacity[row]), int(b.occupied[row]), int(b.free[row])
        bor = nan_to_none(float(b.bor[row]))
    totals = BedTotals(capacity=capacity, occupied=occupied, free=free, bor=bor, band=bor_band(bor))
    return orjson.dumps(
        list_envelope(
            wards,
            site=site.id,
            site_name=site.name,
            site_kind=site.kind.value,
            kelurahan=site.kelurahan,
            kecamatan=registry.kecamatan_of_kelurahan[site.kelurahan].code,
            stale_after_s=after,
            generated_at=now_iso(),
            totals=totals.model_dump(mode="json"),
        )
    )
